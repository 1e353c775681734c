"""Flags delayed flights: the Python twin of plugins/flight-delays (same events out).

Input value: packed `date: i64, delay: i64, distance: i64, origin: str, destination: str`.
Output: one event per input, same timestamp, key = the origin airport, value = packed
`delay: i32, delayed: i32` (1 if `delay` is above `delayed_threshold_minutes`, default 15).
"""

import sluice


class FlightDelays(sluice.Operator):
    def init(self, config):
        self.threshold = config.int("delayed_threshold_minutes", 15)

    def process(self, event, out):
        r = event.packed()
        r.i64()  # date
        delay = r.i64()
        r.i64()  # distance
        origin = r.str()
        if not -(2**31) <= delay < 2**31:
            raise sluice.OperatorError("invalid-input", f"delay {delay} does not fit in an i32")
        value = sluice.PackedWriter().i32(delay).i32(1 if delay > self.threshold else 0).value()
        out.emit(event.timestamp, origin.encode(), value)


Operator = sluice.export(FlightDelays)
