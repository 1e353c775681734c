// Flags delayed flights: the TypeScript twin of plugins/flight-delays (same events out).
// Input value: packed `date: i64, delay: i64, distance: i64, origin: str, destination: str`.
// Output: one event per input, same timestamp, key = the origin airport, value = packed
// `delay: i32, delayed: i32` (1 if `delay` is above `delayed_threshold_minutes`, default 15).
import * as sluice from "sluice";

class FlightDelays extends sluice.Operator {
  threshold = 15n;

  init(config: sluice.Config): void {
    this.threshold = BigInt(config.int("delayed_threshold_minutes", 15));
  }

  process(event: sluice.Event, out: sluice.Emitter): void {
    const r = event.packed();
    r.i64(); // date
    const delay = r.i64();
    r.i64(); // distance
    const origin = r.bytes(); // the origin airport, as UTF-8 bytes
    if (delay < -2147483648n || delay > 2147483647n) {
      throw new sluice.OperatorError("invalid-input", `delay ${delay} does not fit in an i32`);
    }
    const value = new sluice.PackedWriter()
      .i32(Number(delay))
      .i32(delay > this.threshold ? 1 : 0)
      .value();
    out.emit(event.timestamp, origin, value);
  }
}

export const operator = sluice.exportOperator(FlightDelays);
