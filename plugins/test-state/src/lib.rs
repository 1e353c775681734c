//! Drives the keyed-state and timer imports from commands, for the host's tests.
//!
//! Each input event's value is a command (UTF-8, words separated by spaces) about the
//! event's key; the operator emits one event with the same timestamp and key whose value
//! is the command's result (`ok`, a value, or `err <code>: <message>` when the host
//! refused a call: errors are reported, not returned, except by `fail-*` commands).
//!
//! States (declared in `init` unless config `declare` is `none`): value state `v`
//! (strings), value state `t` (strings, time-to-live config `ttl_ms`, default 1000), map
//! state `m` (string -> string), list state `l` (strings), list state `script`.
//!
//! Commands:
//! `vget`, `vset X`, `vclear`, `tget`, `tset X`, `mget K`, `mput K V`, `mdel K`,
//! `mentries` (`k=v,k=v`), `mkeys`, `mclear`, `lget` (`a,b`), `lappend X`, `lset a,b`
//! (`-` for empty), `lclear`; `timer T` / `untimer T` (event time), `ptimer T` /
//! `unptimer T` (processing time); `wm` (the watermark this row met); `now` (processing
//! time); `onfire ACTION` (appends to the key's script: when a timer of the key fires,
//! the first action runs: `reg T`, `preg T`, `del T`, `vset X`); `raw-vget ROW HANDLE`,
//! `raw-mget ROW HANDLE`, `raw-timer ROW T` (raw imports; `ROW` `-` is this row);
//! `declare NAME KIND TTL` (KIND value/map/list, TTL `-` for none); `fail-vget ROW`
//! (returns the error instead of reporting it); `stop` (processes no more rows of this
//! call: outputs nothing for it).
//!
//! Timers emit `fired <e|p> <time> wm=<watermark>[ <action result>]` at the timer's
//! time, with the timer's key.
//!
//! Config `probe_in_init` (`true`): `init` calls `value-get` and fails with its error.

use sluice_guest::bindings::sluice::operator::{keyed_state as ks, timers as tm};
use sluice_guest::{
    Config, Emitter, Error, Event, KeyContext, ListState, MapState, Operator, TimeDomain,
    TimerContext, ValueState,
};

struct States {
    v: ValueState<String>,
    t: ValueState<String>,
    m: MapState<String, String>,
    l: ListState<String>,
    script: ListState<String>,
}

struct TestState {
    states: Option<States>,
    stopped: bool,
}

/// A raw import's error, with its WIT code name.
fn raw_err(e: sluice_guest::bindings::sluice::operator::types::StateError) -> String {
    use sluice_guest::bindings::sluice::operator::types::StateErrorCode as C;
    let code = match e.code {
        C::NotKeyed => "not-keyed",
        C::NoCurrentKey => "no-current-key",
        C::BadIndex => "bad-index",
        C::BadHandle => "bad-handle",
        C::BadDeclaration => "bad-declaration",
        C::BadArgument => "bad-argument",
        C::Backend => "backend",
    };
    format!("err {code}: {}", e.message)
}

fn report<T>(r: Result<T, Error>, ok: impl FnOnce(T) -> String) -> String {
    match r {
        Ok(v) => ok(v),
        Err(e) => format!("err {}", e.message()),
    }
}

fn row_arg(arg: Option<&str>, own: u32) -> Result<u32, Error> {
    match arg {
        None | Some("-") => Ok(own),
        Some(a) => a
            .parse()
            .map_err(|_| Error::invalid_input(format!("bad row '{a}'"))),
    }
}

fn num(arg: Option<&str>) -> Result<i64, Error> {
    let a = arg.ok_or_else(|| Error::invalid_input("missing number"))?;
    a.parse()
        .map_err(|_| Error::invalid_input(format!("bad number '{a}'")))
}

impl TestState {
    fn states(&self) -> Result<&States, Error> {
        self.states
            .as_ref()
            .ok_or_else(|| Error::invalid_input("no states declared (config declare=none)"))
    }

    fn run(
        &mut self,
        cmd: &str,
        ctx: &impl KeyContext,
        timers: sluice_guest::Timers,
    ) -> Result<String, Error> {
        let mut words = cmd.split(' ');
        let op = words.next().unwrap_or_default();
        let a = words.next();
        let b = words.next();
        let c = words.next();
        let row = ctx.row();
        let ok = |_| "ok".to_string();
        Ok(match op {
            "vget" => report(self.states()?.v.get(ctx), |v| {
                format!("v={}", v.as_deref().unwrap_or("none"))
            }),
            "vset" => report(
                self.states()?
                    .v
                    .set(ctx, &a.unwrap_or_default().to_string()),
                ok,
            ),
            "vclear" => report(self.states()?.v.clear(ctx), ok),
            "tget" => report(self.states()?.t.get(ctx), |v| {
                format!("t={}", v.as_deref().unwrap_or("none"))
            }),
            "tset" => report(
                self.states()?
                    .t
                    .set(ctx, &a.unwrap_or_default().to_string()),
                ok,
            ),
            "mget" => report(
                self.states()?
                    .m
                    .get(ctx, &a.unwrap_or_default().to_string()),
                |v| format!("m={}", v.as_deref().unwrap_or("none")),
            ),
            "mput" => report(
                self.states()?.m.put(
                    ctx,
                    &a.unwrap_or_default().to_string(),
                    &b.unwrap_or_default().to_string(),
                ),
                ok,
            ),
            "mdel" => report(
                self.states()?
                    .m
                    .remove(ctx, &a.unwrap_or_default().to_string()),
                ok,
            ),
            "mentries" => report(self.states()?.m.entries(ctx), |e| {
                e.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            }),
            "mkeys" => report(self.states()?.m.keys(ctx), |k| k.join(",")),
            "mclear" => report(self.states()?.m.clear(ctx), ok),
            "lget" => report(self.states()?.l.get(ctx), |l| l.join(",")),
            "lappend" => report(
                self.states()?
                    .l
                    .append(ctx, &a.unwrap_or_default().to_string()),
                ok,
            ),
            "lset" => {
                let items: Vec<String> = match a {
                    None | Some("-") => Vec::new(),
                    Some(a) => a.split(',').map(str::to_string).collect(),
                };
                report(self.states()?.l.set(ctx, &items), ok)
            }
            "lclear" => report(self.states()?.l.clear(ctx), ok),
            "timer" => report(timers.register_event_time(num(a)?), ok),
            "untimer" => report(timers.delete_event_time(num(a)?), ok),
            "ptimer" => report(timers.register_processing_time(num(a)?), ok),
            "unptimer" => report(timers.delete_processing_time(num(a)?), ok),
            "wm" => report(timers.current_watermark(), |w| format!("wm={w}")),
            "now" => format!("now={}", timers.current_processing_time()),
            "onfire" => {
                let action = cmd.split_once(' ').map(|(_, r)| r).unwrap_or_default();
                report(self.states()?.script.append(ctx, &action.to_string()), ok)
            }
            "raw-vget" => match ks::value_get(row_arg(a, row)?, num(b)? as u32) {
                Ok(v) => format!(
                    "ok {:?}",
                    v.map(|v| String::from_utf8_lossy(&v).into_owned())
                ),
                Err(e) => raw_err(e),
            },
            "raw-mget" => match ks::map_get(row_arg(a, row)?, num(b)? as u32, b"x") {
                Ok(v) => format!("ok {v:?}"),
                Err(e) => raw_err(e),
            },
            "raw-timer" => match tm::register_timer(
                row_arg(a, row)?,
                sluice_guest::bindings::sluice::operator::types::TimeDomain::EventTime,
                num(b)?,
            ) {
                Ok(limit) => format!("ok limit={limit}"),
                Err(e) => raw_err(e),
            },
            "declare" => {
                let kind = match b {
                    Some("value") => ks::StateKind::Value,
                    Some("map") => ks::StateKind::Map,
                    _ => ks::StateKind::List,
                };
                let ttl = match c {
                    None | Some("-") => None,
                    Some(t) => Some(num(Some(t))?),
                };
                match ks::declare(a.unwrap_or_default(), kind, ttl) {
                    Ok(h) => format!("handle={h}"),
                    Err(e) => raw_err(e),
                }
            }
            "fail-vget" => {
                // The SDK's error, returned: the host reports it as operator error `state`.
                let r = row_arg(a, row)?;
                let v = self.states()?.v.get(&Row(r))?;
                format!("v={v:?}")
            }
            other => return Err(Error::invalid_input(format!("unknown command '{other}'"))),
        })
    }
}

/// A key context naming any row (to test the host's checks).
struct Row(u32);

impl KeyContext for Row {
    fn row(&self) -> u32 {
        self.0
    }
}

impl Operator for TestState {
    fn init(config: &Config) -> Result<Self, Error> {
        if config.parse_or("probe_in_init", false)? {
            return match ks::value_get(0, 0) {
                Ok(_) => Err(Error::internal("value-get in init succeeded")),
                Err(e) => Err(Error::internal(raw_err(e))),
            };
        }
        let ttl: i64 = config.parse_or("ttl_ms", 1000)?;
        let states = match config.get("declare") {
            Some("none") => None,
            _ => Some(States {
                v: ValueState::declare("v")?,
                t: ValueState::declare_with_ttl("t", ttl)?,
                m: MapState::declare("m")?,
                l: ListState::declare("l")?,
                script: ListState::declare("script")?,
            }),
        };
        Ok(TestState {
            states,
            stopped: false,
        })
    }

    fn process(&mut self, event: Event<'_>, out: &mut Emitter) -> Result<(), Error> {
        let cmd = event.value_str()?;
        if cmd == "stop" {
            self.stopped = true;
            return Ok(());
        }
        let result = self.run(cmd, &event, event.timers())?;
        out.emit(event.timestamp, event.key, result.as_bytes());
        Ok(())
    }

    fn process_batch(
        &mut self,
        batch: sluice_guest::Batch<'_>,
        out: &mut Emitter,
    ) -> Result<(), Error> {
        // The default loop, plus `stop`.
        self.stopped = false;
        let mut i = 0;
        while i < batch.len().min(sluice_guest::batch_limit()) && !self.stopped {
            out.set_origin(i);
            self.process(batch.get(i), out)
                .map_err(|e| e.with_context(format_args!("event {i}")))?;
            i += 1;
        }
        Ok(())
    }

    fn on_timer(&mut self, timer: TimerContext<'_>, out: &mut Emitter) -> Result<(), Error> {
        let d = match timer.domain {
            TimeDomain::EventTime => 'e',
            TimeDomain::ProcessingTime => 'p',
        };
        let wm = timer.timers().current_watermark()?;
        let mut line = format!("fired {d} {} wm={wm}", timer.time);
        if let Some(states) = &self.states {
            let mut script = states.script.get(&timer)?;
            if !script.is_empty() {
                let action = script.remove(0);
                states.script.set(&timer, &script)?;
                let mut words = action.split(' ');
                let verb = words.next().unwrap_or_default();
                let arg = words.next();
                let timers = timer.timers();
                let r = match verb {
                    "reg" => report(timers.register_event_time(num(arg)?), |_| "ok".into()),
                    "preg" => report(timers.register_processing_time(num(arg)?), |_| "ok".into()),
                    "del" => report(timers.delete_event_time(num(arg)?), |_| "ok".into()),
                    "vset" => report(
                        states.v.set(&timer, &arg.unwrap_or_default().to_string()),
                        |_| "ok".into(),
                    ),
                    other => format!("unknown action '{other}'"),
                };
                line.push_str(&format!(" {action}: {r}"));
            }
        }
        out.emit(timer.time, timer.key, line.as_bytes());
        Ok(())
    }
}

sluice_guest::export_operator!(TestState);
