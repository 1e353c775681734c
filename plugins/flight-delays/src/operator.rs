// The operator of flight-delays (see lib.rs), in a file of its own so that the hot-swap
// test's operators (plugins/test-flights-v1, -v2) build on the same code.

use sluice_guest::{Config, Emitter, Error, Event, Operator};

/// The operator (public for operators that build on it, such as the hot-swap test's).
pub struct FlightDelays {
    threshold: i64,
}

impl Operator for FlightDelays {
    fn init(config: &Config) -> Result<Self, Error> {
        Ok(FlightDelays {
            threshold: config.parse_or("delayed_threshold_minutes", 15)?,
        })
    }

    fn process(&mut self, event: Event<'_>, out: &mut Emitter) -> Result<(), Error> {
        let mut r = event.packed();
        let _date = r.i64()?;
        let delay = r.i64()?;
        let _distance = r.i64()?;
        let origin = r.str()?;
        let _destination = r.str()?;
        let delayed = delay > self.threshold;
        let delay = i32::try_from(delay)
            .map_err(|_| Error::invalid_input(format!("delay {delay} does not fit in an i32")))?;
        out.emit_with(event.timestamp, origin.as_bytes(), |buf| {
            sluice_guest::packed::Writer::new(buf)
                .i32(delay)
                .i32(delayed as i32);
        });
        Ok(())
    }
}
