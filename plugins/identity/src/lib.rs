//! Emits every event unchanged: the boundary benchmark's operator.

use sluice_guest::{Config, Emitter, Error, Event, Operator};

struct Identity;

impl Operator for Identity {
    fn init(_config: &Config) -> Result<Self, Error> {
        Ok(Identity)
    }

    #[inline]
    fn process(&mut self, event: Event<'_>, out: &mut Emitter) -> Result<(), Error> {
        out.emit(event.timestamp, event.key, event.value);
        Ok(())
    }
}

sluice_guest::export_operator!(Identity);
