"""Sluice guest SDK for Python: write a Sluice operator as a Python class, built into a
WebAssembly component of the world `sluice:operator/operator-world` with componentize-py.

    import sluice

    class Upper(sluice.Operator):
        def init(self, config):
            self.suffix = config.get("suffix", "")

        def process(self, event, out):
            out.emit(event.timestamp, event.key, event.value.upper() + self.suffix.encode())

    Operator = sluice.export(Upper)

`process` is called once per event of each batch the host hands over (the host calls the
component once per batch); `out` collects what the operator emits, each output event
remembering the input row it came from (so the host carries watermarks over exactly).
Errors: raise `sluice.OperatorError(code, message)` for a typed error (`invalid-config`,
`invalid-input`, `internal`, `state`); any other exception becomes an `internal` error
carrying its message and Python traceback. Keyed state (`ValueState`, `MapState`,
`ListState`) and timers are scoped to an event's or a timer's key.
"""

from .operator import (
    Config,
    Emitter,
    Event,
    Operator,
    OperatorError,
    Timer,
    TimeDomain,
    export,
    log,
)
from .packed import PackedError, PackedReader, PackedWriter
from .state import ListState, MapState, ValueState

__all__ = [
    "Config",
    "Emitter",
    "Event",
    "ListState",
    "MapState",
    "Operator",
    "OperatorError",
    "PackedError",
    "PackedReader",
    "PackedWriter",
    "TimeDomain",
    "Timer",
    "ValueState",
    "export",
    "log",
]
