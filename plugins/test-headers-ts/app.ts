// The TypeScript twin of plugins/test-headers: emits each event with its value replaced
// by its headers as text, `name=<value as hex>` (or `name=~` for a null value), joined by
// `;`. With config `timers: true` (a keyed input) it registers an event-time timer at
// each event's time, so that watermarks inside a batch split it into several calls.

import * as sluice from "sluice";

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

class TestHeaders extends sluice.Operator {
  timers = false;

  init(config: sluice.Config): void {
    this.timers = config.get("timers") === "true";
  }

  process(event: sluice.Event, out: sluice.Emitter): void {
    const text = event
      .headers()
      .map(([name, value]) => `${name}=${value === undefined ? "~" : hex(value)}`)
      .join(";");
    out.emit(event.timestamp, event.key, text);
    if (this.timers) event.registerTimer(event.timestamp);
  }
}

export const operator = sluice.exportOperator(TestHeaders);
