//! Tries what an untrusted operator should not be able to do, for the host's isolation
//! tests. Config `mode`:
//!
//! - `probe`: each event's value is a command (the text, or a JSON object's `cmd`
//!   string member); the operator emits an event with the
//!   same timestamp and key whose value is the outcome, `ok <data>` or `err <message>`:
//!   `read PATH` (a file's text), `write PATH` (creates the file), `list PATH` (a
//!   directory's entries), `env NAME`, `connect HOST:PORT` (TCP), `random` (8 bytes
//!   from the system's randomness, hex), `clock` (the wall clock, ms since the epoch).
//! - `recursion`: recurses on every event, without bound (the stack must overflow), or
//!   config `depth` calls deep, then emits the event.
//! - `chatty`: prints a line to stdout for every event, and passes it on.
//! - `init-panic`: panics in `init`.

use sluice_guest::{Config, Emitter, Error, Event, Operator};
use std::io::Read;

enum Mode {
    Probe,
    Recursion(u64),
    Chatty,
}

struct Hostile {
    mode: Mode,
}

fn outcome<T: std::fmt::Display, E: std::fmt::Display>(r: Result<T, E>) -> String {
    match r {
        Ok(v) => format!("ok {v}"),
        Err(e) => format!("err {e}"),
    }
}

fn probe(cmd: &str) -> String {
    let (op, arg) = cmd.split_once(' ').unwrap_or((cmd, ""));
    match op {
        "read" => outcome(std::fs::File::open(arg).and_then(|mut f| {
            let mut s = String::new();
            f.read_to_string(&mut s).map(|_| s)
        })),
        "write" => outcome(std::fs::write(arg, b"written by a guest").map(|_| "written")),
        "list" => outcome(std::fs::read_dir(arg).map(|d| {
            let mut names: Vec<String> = d
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names.join(",")
        })),
        "env" => outcome(std::env::var(arg)),
        "connect" => outcome(std::net::TcpStream::connect(arg).map(|_| "connected")),
        "random" => {
            let mut buf = [0u8; 8];
            outcome(getrandom(&mut buf).map(|_| {
                buf.iter().map(|b| format!("{b:02x}")).collect::<String>()
            }))
        }
        "clock" => outcome(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis()),
        ),
        other => format!("err unknown command '{other}'"),
    }
}

/// Bytes from the system's randomness (`wasi:random`), as std's hash maps seed themselves.
fn getrandom(buf: &mut [u8]) -> Result<(), String> {
    let bytes = wasi_random(buf.len());
    buf.copy_from_slice(&bytes);
    Ok(())
}

fn wasi_random(n: usize) -> Vec<u8> {
    // std's RandomState draws its keys from the system's randomness; two maps built from
    // fresh RandomStates hash the same key differently unless the randomness repeats.
    use std::hash::{BuildHasher, Hasher};
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(out.len());
        out.extend_from_slice(&h.finish().to_le_bytes());
    }
    out.truncate(n);
    out
}

/// The command in a value: a JSON object's `"cmd":"..."` member (no escapes), or the
/// text itself.
fn command(text: &str) -> &str {
    match text.split_once("\"cmd\":\"") {
        Some((_, rest)) => rest.split('"').next().unwrap_or(""),
        None => text,
    }
}

/// Recursion on the wasm call stack (no frame in linear memory), `left` calls deep.
#[inline(never)]
fn recurse(left: u64) -> u64 {
    if std::hint::black_box(left) == 0 {
        return 0;
    }
    std::hint::black_box(recurse(std::hint::black_box(left - 1))).wrapping_add(left)
}

impl Operator for Hostile {
    fn init(config: &Config) -> Result<Self, Error> {
        let mode = match config.require("mode")? {
            "probe" => Mode::Probe,
            "recursion" => Mode::Recursion(match config.get("depth") {
                Some(d) => d
                    .parse()
                    .map_err(|_| Error::invalid_config(format!("depth '{d}' is not a number")))?,
                None => u64::MAX,
            }),
            "chatty" => Mode::Chatty,
            "init-panic" => panic!("test-hostile refuses to start"),
            other => return Err(Error::invalid_config(format!("unknown mode '{other}'"))),
        };
        Ok(Hostile { mode })
    }

    fn process(&mut self, event: Event<'_>, out: &mut Emitter) -> Result<(), Error> {
        match self.mode {
            Mode::Probe => {
                let text = String::from_utf8_lossy(event.value).into_owned();
                let cmd = command(&text);
                out.emit(event.timestamp, event.key, probe(cmd.trim()).as_bytes());
            }
            Mode::Chatty => {
                println!("chatty guest line {}", event.timestamp);
                out.emit(event.timestamp, event.key, event.value);
            }
            Mode::Recursion(depth) => {
                let n = recurse(depth);
                out.emit(event.timestamp, event.key, n.to_string().as_bytes());
            }
        }
        Ok(())
    }
}

sluice_guest::export_operator!(Hostile);
