//! A Sluice operator that also imports `sluice-test:extra/secret`, which no host
//! provides: loading it must fail with an error naming that import.

wit_bindgen::generate!({
    inline: "
        package sluice-test:extra@0.1.0;
        interface secret {
            knock: func() -> u32;
        }
        world extra {
            import secret;
        }
    ",
    world: "extra",
    type_section_suffix: "extra",
});

use sluice_guest::{Config, Emitter, Error, Event, Operator};

struct Extra(u32);

impl Operator for Extra {
    fn init(_config: &Config) -> Result<Self, Error> {
        Ok(Extra(sluice_test::extra::secret::knock()))
    }

    fn process(&mut self, event: Event<'_>, out: &mut Emitter) -> Result<(), Error> {
        out.emit(event.timestamp + self.0 as i64, event.key, event.value);
        Ok(())
    }
}

sluice_guest::export_operator!(Extra);
