//! Test operator for event headers: emits each event with its value replaced by its
//! headers as text, `name=<value as hex>` (or `name=~` for a null value), joined by `;`.
//!
//! With config `timers: true` (a keyed input), it also registers an event-time timer at
//! each event's time, so that watermarks inside a batch split it into several `process`
//! calls: the headers must still be the right row's.

use sluice_guest::{Config, Emitter, Error, Event, Operator};
use std::fmt::Write;

struct Headers {
    timers: bool,
}

impl Operator for Headers {
    fn init(config: &Config) -> Result<Self, Error> {
        Ok(Headers {
            timers: config.get("timers") == Some("true"),
        })
    }

    fn process(&mut self, event: Event<'_>, out: &mut Emitter) -> Result<(), Error> {
        let mut text = String::new();
        for (i, (name, value)) in event.headers()?.into_iter().enumerate() {
            if i > 0 {
                text.push(';');
            }
            text.push_str(&name);
            text.push('=');
            match value {
                Some(v) => v.iter().for_each(|b| write!(text, "{b:02x}").unwrap()),
                None => text.push('~'),
            }
        }
        out.emit(event.timestamp, event.key, text.as_bytes());
        if self.timers {
            event.timers().register_event_time(event.timestamp)?;
        }
        Ok(())
    }
}

sluice_guest::export_operator!(Headers);
