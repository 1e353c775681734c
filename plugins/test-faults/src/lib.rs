//! Misbehaves on purpose, for the host's tests. Config `mode`:
//!
//! - `trap-on`: panics with `poison record: <value>` on an event whose value equals
//!   config `poison` (several values separated by `|`); passes other events through.
//! - `count-trap-on` (keyed input): counts the events of each key in value state `n`,
//!   then panics on a poison event as `trap-on` does (after counting it, so that a
//!   host that does not roll the call's state back counts it), else emits the event
//!   with the key's count as its value (decimal text).
//! - `memory-bomb`: allocates until memory runs out.
//! - `flood`: emits each event 1,000 times.
//! - `infinite-loop`: never returns from `process`.
//! - `error`: returns an `invalid-input` error.
//! - `init-error`: `init` returns `invalid-config`.
//! - `side`: passes events through and copies each to side output `copy`.
//! - `clock`: emits each event with its value replaced by the wall clock's time (ms since
//!   the epoch, i64 little-endian).
//! - `sleep`: sleeps for a minute in `process` (the host must refuse to block).

use sluice_guest::{Config, Emitter, Error, Event, Operator, ValueState};

enum Mode {
    TrapOn(Vec<Vec<u8>>),
    CountTrapOn(Vec<Vec<u8>>, ValueState<u64>),
    MemoryBomb,
    Flood,
    InfiniteLoop,
    Error,
    Side,
    Sleep,
    Clock,
}

struct Faults {
    mode: Mode,
    hoard: Vec<Vec<u8>>,
}

impl Operator for Faults {
    fn init(config: &Config) -> Result<Self, Error> {
        let mode = match config.require("mode")? {
            "trap-on" => Mode::TrapOn(poison(config)?),
            "count-trap-on" => Mode::CountTrapOn(poison(config)?, ValueState::declare("n")?),
            "memory-bomb" => Mode::MemoryBomb,
            "flood" => Mode::Flood,
            "infinite-loop" => Mode::InfiniteLoop,
            "error" => Mode::Error,
            "side" => Mode::Side,
            "sleep" => Mode::Sleep,
            "clock" => Mode::Clock,
            "init-error" => {
                return Err(Error::invalid_config("init-error mode: refusing to start"));
            }
            other => return Err(Error::invalid_config(format!("unknown mode '{other}'"))),
        };
        // Exercise both ways a guest's text reaches the host's log.
        sluice_guest::log(
            sluice_guest::LogLevel::Debug,
            &format!("test-faults starting in mode {}", config.require("mode")?),
        );
        println!("test-faults: init done");
        Ok(Faults {
            mode,
            hoard: Vec::new(),
        })
    }

    fn process(&mut self, event: Event<'_>, out: &mut Emitter) -> Result<(), Error> {
        match &self.mode {
            Mode::TrapOn(poison) => {
                if poison.iter().any(|p| event.value == p.as_slice()) {
                    panic!("poison record: {}", String::from_utf8_lossy(event.value));
                }
            }
            Mode::CountTrapOn(poison, n) => {
                let count = n.get_or_default(&event)? + 1;
                n.set(&event, &count)?;
                if poison.iter().any(|p| event.value == p.as_slice()) {
                    panic!("poison record: {}", String::from_utf8_lossy(event.value));
                }
                out.emit(event.timestamp, event.key, count.to_string().as_bytes());
                return Ok(());
            }
            Mode::MemoryBomb => loop {
                let mut chunk = vec![0u8; 1 << 20];
                chunk[0] = 1;
                self.hoard.push(chunk);
            },
            Mode::Flood => {
                for _ in 0..999 {
                    out.emit(event.timestamp, event.key, event.value);
                }
            }
            Mode::InfiniteLoop => {
                let mut i: u64 = 0;
                loop {
                    i = std::hint::black_box(i.wrapping_add(1));
                }
            }
            Mode::Error => {
                return Err(Error::invalid_input(format!(
                    "cannot handle value {:?}",
                    String::from_utf8_lossy(event.value)
                )));
            }
            Mode::Clock => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(-1, |d| d.as_millis() as i64);
                out.emit(event.timestamp, event.key, &now.to_le_bytes());
                return Ok(());
            }
            Mode::Sleep => std::thread::sleep(std::time::Duration::from_secs(60)),
            Mode::Side => out.emit_side("copy", event.timestamp, event.key, event.value),
        }
        out.emit(event.timestamp, event.key, event.value);
        Ok(())
    }
}

/// Config `poison`: values separated by `|`.
fn poison(config: &Config) -> Result<Vec<Vec<u8>>, Error> {
    Ok(config
        .require("poison")?
        .split('|')
        .map(|p| p.as_bytes().to_vec())
        .collect())
}

sluice_guest::export_operator!(Faults);
