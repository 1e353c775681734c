"""The Python twin of plugins/test-headers: emits each event with its value replaced by
its headers as text, `name=<value as hex>` (or `name=~` for a null value), joined by `;`.
With config `timers: true` (a keyed input) it registers an event-time timer at each
event's time, so that watermarks inside a batch split it into several calls."""

import sluice


class TestHeaders(sluice.Operator):
    def init(self, config):
        self.timers = config.get("timers") == "true"

    def process(self, event, out):
        text = ";".join(
            f"{name}=" + ("~" if value is None else value.hex()) for name, value in event.headers()
        )
        out.emit(event.timestamp, event.key, text.encode())
        if self.timers:
            event.register_timer(event.timestamp)


Operator = sluice.export(TestHeaders)
