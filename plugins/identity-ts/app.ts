// Emits every event unchanged: the SDK benchmark's operator (TypeScript).
import * as sluice from "sluice";

class Identity extends sluice.Operator {
  process(event: sluice.Event, out: sluice.Emitter): void {
    out.emit(event.timestamp, event.key, event.value);
  }
}

export const operator = sluice.exportOperator(Identity);
