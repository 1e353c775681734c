// Test operator: fails on purpose, to check that JavaScript errors reach the host typed.
// Value `raise`: a thrown Error (an `internal` error with the message and the stack);
// `invalid`: OperatorError("invalid-input", ...); anything else is emitted as it is, on
// the main output and on side output `copies`.
import * as sluice from "sluice";

function explode(value: string): never {
  throw new RangeError(`cannot handle '${value}'`);
}

class Faults extends sluice.Operator {
  process(event: sluice.Event, out: sluice.Emitter): void {
    const text = new TextDecoder().decode(event.value);
    if (text === "raise") explode(text);
    if (text === "invalid") throw new sluice.OperatorError("invalid-input", "the value is 'invalid'");
    out.emit(event.timestamp, event.key, event.value);
    out.emitSide("copies", event.timestamp, event.key, event.value);
  }
}

export const operator = sluice.exportOperator(Faults);
