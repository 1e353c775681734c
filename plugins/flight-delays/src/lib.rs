//! Flags delayed flights.
//!
//! Input value: a packed record of the flights columns, in this order:
//! `date: i64` (ms since the epoch, UTC), `delay: i64` (minutes), `distance: i64` (miles),
//! `origin: str`, `destination: str`.
//!
//! Output: one event per input, same timestamp, key = the origin airport, value = packed
//! `delay: i32, delayed: i32`, where `delayed` is 1 if `delay` is above the threshold
//! (config `delayed_threshold_minutes`, default 15), else 0.

use sluice_guest::{Config, Emitter, Error, Event, Operator};

struct FlightDelays {
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

sluice_guest::export_operator!(FlightDelays);
