//! Write [Sluice](../../../README.md) stream operators in Rust.
//!
//! An operator is a type implementing [`Operator`], exported with
//! [`export_operator!`] from a `cdylib` crate built for `wasm32-wasip2`. The host calls
//! it once per batch of events; this crate turns the batch (flat columns, see
//! `wit/operator.wit`) into one [`Event`] at a time and collects what the operator
//! emits through an [`Emitter`] back into columns, with no allocation per event.
//!
//! An operator whose input is keyed also has keyed state held by the host
//! ([`ValueState`], [`MapState`], [`ListState`], typed through [`Codec`]) and timers
//! ([`Event::timers`], [`Operator::on_timer`]).
//!
//! ```ignore
//! use sluice_guest::{Config, Emitter, Error, Event, Operator};
//!
//! struct Upper;
//!
//! impl Operator for Upper {
//!     fn init(_config: &Config) -> Result<Self, Error> {
//!         Ok(Upper)
//!     }
//!     fn process(&mut self, event: Event<'_>, out: &mut Emitter) -> Result<(), Error> {
//!         out.emit_with(event.timestamp, event.key, |buf| {
//!             buf.extend(event.value.iter().map(u8::to_ascii_uppercase))
//!         });
//!         Ok(())
//!     }
//! }
//!
//! sluice_guest::export_operator!(Upper);
//! ```

#![warn(missing_docs)]

// The generated bindings name this crate by its path, as user crates see it.
extern crate self as sluice_guest;

mod codec;
mod config;
mod emitter;
mod error;
mod state;

pub use codec::Codec;
pub use config::Config;
pub use emitter::Emitter;
pub use error::{Error, ErrorCode, StateErrorCode};
/// The `packed` value format (re-exported `sluice-packed`): [`packed::Reader`] and
/// [`packed::Writer`] read and write the compact records the host's sources, built-in
/// aggregates and sinks understand.
pub use sluice_packed as packed;
pub use state::{
    KeyContext, ListState, MapState, TimeDomain, TimerBatch, TimerContext, Timers, ValueState,
    batch_limit, processing_time,
};

/// One input event, borrowed from the batch being processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// Event time, milliseconds since the Unix epoch (UTC).
    pub timestamp: i64,
    /// The key (empty for unkeyed streams).
    pub key: &'a [u8],
    /// The value, in the stream's value format.
    pub value: &'a [u8],
    /// The event's index in its input batch.
    pub index: usize,
}

impl<'a> Event<'a> {
    /// A reader over the value as a `packed` record: read its fields in schema order.
    pub fn packed(&self) -> packed::Reader<'a> {
        packed::Reader::new(self.value)
    }

    /// The value as UTF-8 text, or an `invalid-input` error.
    pub fn value_str(&self) -> Result<&'a str, Error> {
        std::str::from_utf8(self.value)
            .map_err(|e| Error::invalid_input(format!("value is not UTF-8: {e}")))
    }

    /// Timers of this event's key (keyed operators only).
    pub fn timers(&self) -> Timers {
        Timers::for_row(self.index as u32)
    }

    /// The watermark this event met: the highest event time the stream promises to be
    /// past (`i64::MIN` before any watermark).
    pub fn watermark(&self) -> Result<i64, Error> {
        self.timers().current_watermark()
    }

    /// The event's headers (a Kafka record's), as `(name, value)` pairs in record order
    /// (`None`: a null value); empty when the event has none. Each call asks the host
    /// (one copy of this event's headers): call it for the events that need them.
    ///
    /// Errors: a `state` error outside `process` or for an event past the call's limit.
    pub fn headers(&self) -> Result<Vec<(String, Option<Vec<u8>>)>, Error> {
        state::row_headers(self.index as u32)
    }
}

/// A batch of input events, for operators that want the whole batch at once (see
/// [`Operator::process_batch`]).
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    timestamps: &'a [i64],
    key_offsets: &'a [u32],
    key_data: &'a [u8],
    value_offsets: &'a [u32],
    value_data: &'a [u8],
}

impl<'a> Batch<'a> {
    /// Wraps raw columns (Arrow binary layout), checking that offsets have `n + 1`
    /// entries, start at 0, never decrease and end at their buffer's length.
    pub fn new(
        timestamps: &'a [i64],
        key_offsets: &'a [u32],
        key_data: &'a [u8],
        value_offsets: &'a [u32],
        value_data: &'a [u8],
    ) -> Result<Batch<'a>, Error> {
        let n = timestamps.len();
        check_offsets("key", key_offsets, n, key_data.len())?;
        check_offsets("value", value_offsets, n, value_data.len())?;
        Ok(Batch {
            timestamps,
            key_offsets,
            key_data,
            value_offsets,
            value_data,
        })
    }

    /// Number of events.
    #[inline]
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether the batch has no events.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// Event `i`. Panics if `i >= len()`.
    #[inline]
    pub fn get(&self, i: usize) -> Event<'a> {
        assert!(i < self.len(), "event {i} of a batch of {}", self.len());
        // SAFETY: `new` checked that both offset arrays have `len + 1` entries, never
        // decrease and end at their buffer's length, so for `i < len` the four offsets
        // exist and each slice lies inside its buffer.
        unsafe {
            let k0 = *self.key_offsets.get_unchecked(i) as usize;
            let k1 = *self.key_offsets.get_unchecked(i + 1) as usize;
            let v0 = *self.value_offsets.get_unchecked(i) as usize;
            let v1 = *self.value_offsets.get_unchecked(i + 1) as usize;
            Event {
                timestamp: *self.timestamps.get_unchecked(i),
                key: self.key_data.get_unchecked(k0..k1),
                value: self.value_data.get_unchecked(v0..v1),
                index: i,
            }
        }
    }

    /// The events in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Event<'a>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

pub(crate) fn check_offsets(
    name: &str,
    offsets: &[u32],
    n: usize,
    data_len: usize,
) -> Result<(), Error> {
    let bad = |what: String| Error::invalid_input(format!("{name} offsets {what}"));
    if offsets.len() != n + 1 {
        return Err(bad(format!(
            "have {} entries for {n} events",
            offsets.len()
        )));
    }
    if offsets[0] != 0 {
        return Err(bad(format!("start at {}", offsets[0])));
    }
    if offsets.windows(2).any(|w| w[1] < w[0]) {
        return Err(bad("decrease".into()));
    }
    if offsets[n] as usize != data_len {
        return Err(bad(format!(
            "end at {} but the data has {data_len} bytes",
            offsets[n]
        )));
    }
    Ok(())
}

/// A stream operator. One value of the type lives per operator instance (per subtask),
/// created by [`Operator::init`] and fed every batch in stream order.
///
/// Keep reusable buffers in `self`; nothing in the instance is checkpointed. Durable
/// data goes in keyed state ([`ValueState`], [`MapState`], [`ListState`], declared in
/// `init`), which the host keeps and checkpoints, when the operator's input is keyed.
pub trait Operator: Sized + 'static {
    /// Creates the operator from its configuration (the `config` map of the job spec).
    /// Return [`Error::invalid_config`] for a missing or bad key. Declare keyed state
    /// here.
    fn init(config: &Config) -> Result<Self, Error>;

    /// Processes one event, emitting zero or more events to `out`. Each event emitted
    /// is recorded as coming from this input event (so it gets its watermark).
    fn process(&mut self, event: Event<'_>, out: &mut Emitter) -> Result<(), Error>;

    /// Processes a whole batch. The default calls [`Operator::process`] for each event
    /// in order, up to [`batch_limit`], prefixing an error's message with the event's
    /// index. Override it to work on the batch at once; call [`Emitter::set_origin`]
    /// before emitting so each output names the input event it came from, and stop at
    /// [`batch_limit`] (which registering an event-time timer may lower).
    fn process_batch(&mut self, batch: Batch<'_>, out: &mut Emitter) -> Result<(), Error> {
        let mut i = 0;
        while i < batch.len().min(batch_limit()) {
            let event = batch.get(i);
            out.set_origin(i);
            if let Err(e) = self.process(event, out) {
                return Err(
                    e.with_context(format_args!("event {i} (timestamp {})", event.timestamp))
                );
            }
            i += 1;
        }
        Ok(())
    }

    /// Handles a due timer (keyed operators), emitting zero or more events to `out`.
    /// `timer` is a [`KeyContext`]: state calls with it apply to the timer's key. The
    /// default does nothing.
    fn on_timer(&mut self, timer: TimerContext<'_>, out: &mut Emitter) -> Result<(), Error> {
        let _ = (timer, out);
        Ok(())
    }

    /// Handles a batch of due timers, in firing order. The default calls
    /// [`Operator::on_timer`] for each, up to [`batch_limit`], with the timer's index as
    /// the origin of what it emits.
    fn on_timers(&mut self, timers: TimerBatch<'_>, out: &mut Emitter) -> Result<(), Error> {
        let mut i = 0;
        while i < timers.len().min(batch_limit()) {
            let timer = timers.get(i);
            out.set_origin(i);
            if let Err(e) = self.on_timer(timer, out) {
                return Err(
                    e.with_context(format_args!("timer at {} ({:?})", timer.time, timer.domain))
                );
            }
            i += 1;
        }
        Ok(())
    }
}

/// Log levels for [`log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something looks wrong.
    Warn,
    /// Something failed.
    Error,
}

/// Writes `message` to the host's log, tagged with the operator and subtask. (Anything
/// printed to stdout or stderr reaches the host's log too, bounded.)
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_family = "wasm")]
    {
        use bindings::sluice::operator::host::{LogLevel as L, log};
        let level = match level {
            LogLevel::Trace => L::Trace,
            LogLevel::Debug => L::Debug,
            LogLevel::Info => L::Info,
            LogLevel::Warn => L::Warn,
            LogLevel::Error => L::Error,
        };
        log(level, message);
    }
    #[cfg(not(target_family = "wasm"))]
    eprintln!("[{level:?}] {message}");
}

/// Generated WIT bindings; used by [`export_operator!`], not part of the API.
#[cfg(target_family = "wasm")]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "operator-world",
        pub_export_macro: true,
        export_macro_name: "__sluice_export_world",
        default_bindings_module: "::sluice_guest::bindings",
        runtime_path: "::sluice_guest::__private::wit_bindgen::rt",
    });
}

/// Glue called by [`export_operator!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    #[cfg(target_family = "wasm")]
    pub use wasm::*;

    #[cfg(target_family = "wasm")]
    mod wasm {
        use crate::bindings::sluice::operator::types as wit;
        use crate::{Batch, Config, Emitter, Error, ErrorCode, Operator};
        use std::cell::RefCell;

        /// The operator instance and its reusable emitter.
        pub struct State<T> {
            op: Option<T>,
            emitter: Emitter,
        }

        /// Per-instance storage for the operator (WASM instances are single-threaded).
        pub struct Slot<T>(RefCell<Option<State<T>>>);

        // SAFETY: a WASM component instance runs on one thread; the slot is never shared.
        unsafe impl<T> Sync for Slot<T> {}

        impl<T> Slot<T> {
            /// An empty slot.
            pub const fn new() -> Self {
                Slot(RefCell::new(None))
            }
        }

        impl<T> Default for Slot<T> {
            fn default() -> Self {
                Self::new()
            }
        }

        fn to_wit(e: Error) -> wit::OperatorError {
            wit::OperatorError {
                code: match e.code() {
                    ErrorCode::InvalidConfig => wit::ErrorCode::InvalidConfig,
                    ErrorCode::InvalidInput => wit::ErrorCode::InvalidInput,
                    ErrorCode::Internal => wit::ErrorCode::Internal,
                    ErrorCode::State => wit::ErrorCode::State,
                },
                message: e.into_message(),
            }
        }

        /// `init` export.
        pub fn init<T: Operator>(
            slot: &Slot<T>,
            config: Vec<(String, String)>,
        ) -> Result<(), wit::OperatorError> {
            let config = Config::new(config);
            let op = T::init(&config).map_err(to_wit)?;
            *slot.0.borrow_mut() = Some(State {
                op: Some(op),
                emitter: Emitter::new(),
            });
            Ok(())
        }

        fn output(cols: crate::emitter::Columns) -> wit::OutputBatch {
            wit::OutputBatch {
                events: wit::EventBatch {
                    timestamps: cols.timestamps,
                    key_offsets: cols.key_offsets,
                    key_data: cols.key_data,
                    value_offsets: cols.value_offsets,
                    value_data: cols.value_data,
                },
                origins: cols.origins,
            }
        }

        /// `process` export.
        pub fn process<T: Operator>(
            slot: &Slot<T>,
            batch: wit::EventBatch,
        ) -> Result<wit::ProcessOutput, wit::OperatorError> {
            let mut guard = slot.0.borrow_mut();
            let Some(state) = guard.as_mut() else {
                return Err(to_wit(Error::internal("process called before init")));
            };
            let Some(op) = state.op.as_mut() else {
                return Err(to_wit(Error::internal("operator is gone")));
            };
            let input = Batch::new(
                &batch.timestamps,
                &batch.key_offsets,
                &batch.key_data,
                &batch.value_offsets,
                &batch.value_data,
            )
            .map_err(to_wit)?;
            state.emitter.begin(input.len());
            crate::state::begin_call(input.len());
            let result = op.process_batch(input, &mut state.emitter);
            finish(&mut state.emitter, result)
        }

        #[inline(always)]
        fn finish(
            emitter: &mut Emitter,
            result: Result<(), Error>,
        ) -> Result<wit::ProcessOutput, wit::OperatorError> {
            let (main, side) = emitter.finish();
            result.map_err(to_wit)?;
            Ok(wit::ProcessOutput {
                main: output(main),
                side: side
                    .into_iter()
                    .map(|(name, cols)| wit::SideOutput {
                        name,
                        batch: output(cols),
                    })
                    .collect(),
            })
        }

        /// `on-timers` export.
        pub fn on_timers<T: Operator>(
            slot: &Slot<T>,
            timers: wit::TimerBatch,
        ) -> Result<wit::ProcessOutput, wit::OperatorError> {
            let mut guard = slot.0.borrow_mut();
            let Some(state) = guard.as_mut() else {
                return Err(to_wit(Error::internal("on-timers called before init")));
            };
            let Some(op) = state.op.as_mut() else {
                return Err(to_wit(Error::internal("operator is gone")));
            };
            let domain = match timers.domain {
                wit::TimeDomain::EventTime => crate::TimeDomain::EventTime,
                wit::TimeDomain::ProcessingTime => crate::TimeDomain::ProcessingTime,
            };
            let batch = crate::TimerBatch::new(
                domain,
                &timers.times,
                &timers.key_offsets,
                &timers.key_data,
            )
            .map_err(to_wit)?;
            state.emitter.begin(batch.len());
            crate::state::begin_call(batch.len());
            let result = op.on_timers(batch, &mut state.emitter);
            finish(&mut state.emitter, result)
        }
    }
}

/// Exports `$ty` (a type implementing [`Operator`]) as this component's Sluice operator.
/// Use it once, at the top level of a `cdylib` crate.
#[macro_export]
macro_rules! export_operator {
    ($ty:ty) => {
        #[cfg(target_family = "wasm")]
        const _: () = {
            static __SLUICE_SLOT: $crate::__private::Slot<$ty> = $crate::__private::Slot::new();
            struct __SluiceExport;
            impl $crate::bindings::exports::sluice::operator::operator::Guest for __SluiceExport {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<
                    (),
                    $crate::bindings::sluice::operator::types::OperatorError,
                > {
                    $crate::__private::init::<$ty>(&__SLUICE_SLOT, config)
                }
                fn process(
                    batch: $crate::bindings::sluice::operator::types::EventBatch,
                ) -> ::std::result::Result<
                    $crate::bindings::sluice::operator::types::ProcessOutput,
                    $crate::bindings::sluice::operator::types::OperatorError,
                > {
                    $crate::__private::process::<$ty>(&__SLUICE_SLOT, batch)
                }
                fn on_timers(
                    timers: $crate::bindings::sluice::operator::types::TimerBatch,
                ) -> ::std::result::Result<
                    $crate::bindings::sluice::operator::types::ProcessOutput,
                    $crate::bindings::sluice::operator::types::OperatorError,
                > {
                    $crate::__private::on_timers::<$ty>(&__SLUICE_SLOT, timers)
                }
            }
            $crate::bindings::__sluice_export_world!(__SluiceExport);
        };
    };
}
