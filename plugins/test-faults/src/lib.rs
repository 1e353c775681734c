//! Misbehaves on purpose, for the host's tests. Config `mode`:
//!
//! - `trap-on`: panics with `poison record: <value>` on the event whose value equals
//!   config `poison`; passes other events through.
//! - `memory-bomb`: allocates until memory runs out.
//! - `infinite-loop`: never returns from `process`.
//! - `error`: returns an `invalid-input` error.
//! - `init-error`: `init` returns `invalid-config`.
//! - `side`: passes events through and copies each to side output `copy`.
//! - `clock`: emits each event with its value replaced by the wall clock's time (ms since
//!   the epoch, i64 little-endian).
//! - `sleep`: sleeps for a minute in `process` (the host must refuse to block).

use sluice_guest::{Config, Emitter, Error, Event, Operator};

enum Mode {
    TrapOn(Vec<u8>),
    MemoryBomb,
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
            "trap-on" => Mode::TrapOn(config.require("poison")?.as_bytes().to_vec()),
            "memory-bomb" => Mode::MemoryBomb,
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
                if event.value == poison.as_slice() {
                    panic!("poison record: {}", String::from_utf8_lossy(event.value));
                }
            }
            Mode::MemoryBomb => loop {
                let mut chunk = vec![0u8; 1 << 20];
                chunk[0] = 1;
                self.hoard.push(chunk);
            },
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

sluice_guest::export_operator!(Faults);
