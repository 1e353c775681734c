// The flights operator of the hot-swap test, included by test-flights-v1 and -v2 (which
// define `VERSION` and the module `flights`, flight-delays' operator): flight-delays'
// main output, and for each event a `trace` side output event (same timestamp and key)
// whose value is `VERSION`, so that which version handled each flight is visible.

use flights::FlightDelays;
use sluice_guest::{Config, Emitter, Error, Event, Operator};

struct Traced(FlightDelays);

impl Operator for Traced {
    fn init(config: &Config) -> Result<Self, Error> {
        FlightDelays::init(config).map(Traced)
    }

    fn process(&mut self, event: Event<'_>, out: &mut Emitter) -> Result<(), Error> {
        out.emit_side("trace", event.timestamp, event.key, VERSION.as_bytes());
        self.0.process(event, out)
    }
}

sluice_guest::export_operator!(Traced);
