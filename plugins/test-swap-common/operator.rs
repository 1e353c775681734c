// The operator of the hot-swap tests, included by test-swap-a, -b and -bad, which differ
// only in `VERSION`: each event of a key (keyed input) counts in value state `n`, and is
// emitted as `{"version": VERSION, "n": <the key's count>, "in": <the event's value>}`.
// Version `bad` panics on every event (a new version that fails its first batches).

use sluice_guest::{Config, Emitter, Error, Event, Operator, ValueState};

struct Versioned {
    n: ValueState<u64>,
}

impl Operator for Versioned {
    fn init(_config: &Config) -> Result<Self, Error> {
        Ok(Versioned {
            n: ValueState::declare("n")?,
        })
    }

    fn process(&mut self, event: Event<'_>, out: &mut Emitter) -> Result<(), Error> {
        if VERSION == "bad" {
            panic!("version bad cannot handle {}", String::from_utf8_lossy(event.value));
        }
        let n = self.n.get_or_default(&event)? + 1;
        self.n.set(&event, &n)?;
        let value = format!(
            "{{\"version\":\"{VERSION}\",\"n\":{n},\"in\":{}}}",
            String::from_utf8_lossy(event.value)
        );
        out.emit(event.timestamp, event.key, value.as_bytes());
        Ok(())
    }
}

sluice_guest::export_operator!(Versioned);
