"""Test operator: fails on purpose, to check that Python errors reach the host typed.

Value `raise`: a ValueError (an `internal` error with the message and the traceback);
`invalid`: `OperatorError("invalid-input", ...)`; `state`: keyed state used by a non-keyed
operator (a `state` error); anything else is emitted as it is.
"""

import sluice


def explode(value):
    raise ValueError(f"cannot handle {value!r}")


class Faults(sluice.Operator):
    def process(self, event, out):
        if event.value == b"raise":
            explode(event.value)
        if event.value == b"invalid":
            raise sluice.OperatorError("invalid-input", "the value is 'invalid'")
        if event.value == b"state":
            sluice.ValueState("count")
        out.emit(event.timestamp, event.key, event.value)
        out.emit_side("copies", event.timestamp, event.key, event.value)


Operator = sluice.export(Faults)
