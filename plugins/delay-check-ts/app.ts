// Checks and re-encodes the flights operator's output: a packed `delay: i32, delayed: i32`
// whose `delayed` must be 1 exactly when `delay` is above `delayed_threshold_minutes`
// (default 15); anything else is an `invalid-input` error. The event goes on re-encoded,
// unchanged. The middle operator of the mixed-language job (plugins/mixed).
import * as sluice from "sluice";

class DelayCheck extends sluice.Operator {
  threshold = 15;

  init(config: sluice.Config): void {
    this.threshold = config.int("delayed_threshold_minutes", 15);
  }

  process(event: sluice.Event, out: sluice.Emitter): void {
    const r = event.packed();
    const delay = r.i32();
    const delayed = r.i32();
    if (delayed !== (delay > this.threshold ? 1 : 0)) {
      throw new sluice.OperatorError("invalid-input", `delay ${delay} with delayed=${delayed}`);
    }
    out.emit(event.timestamp, event.key, new sluice.PackedWriter().i32(delay).i32(delayed).value());
  }
}

export const operator = sluice.exportOperator(DelayCheck);
