"""Emits every event unchanged: the SDK benchmark's operator (Python)."""

import sluice


class Identity(sluice.Operator):
    def process(self, event, out):
        out.emit(event.timestamp, event.key, event.value)


Operator = sluice.export(Identity)
