//! Keyed state and timers: typed handles over the host's `keyed-state` and `timers`
//! imports (see `wit/operator.wit`).
//!
//! Every call is scoped to a key by a [`KeyContext`]: the [`Event`](crate::Event) being
//! processed or the [`TimerContext`] being handled. Neither copies the key: they carry
//! their row's index, which the host resolves to the key of that row.

use crate::codec::Codec;
use crate::error::Error;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};

/// The call's limit (see [`batch_limit`]).
static LIMIT: AtomicU32 = AtomicU32::new(u32::MAX);

/// How many rows (or timers) of the current batch this call may still handle.
///
/// Event-time timers fire between rows, where the watermark passes them. When the
/// operator registers a timer that a watermark later in the same batch passes, the host
/// lowers this limit to that row: the call must stop there, the host fires the timer and
/// passes the remaining rows again in a new call. The default
/// [`Operator::process_batch`](crate::Operator::process_batch) and
/// [`Operator::on_timers`](crate::Operator::on_timers) stop at it; an override must too
/// (`while i < batch.len().min(batch_limit())`). State calls for rows at or after it
/// are refused (`bad-index`).
#[inline]
pub fn batch_limit() -> usize {
    LIMIT.load(Ordering::Relaxed) as usize
}

/// Sets the limit at the start of a call.
#[cfg_attr(not(target_family = "wasm"), allow(dead_code))] // used by the wasm glue
pub(crate) fn begin_call(len: usize) {
    LIMIT.store(len.min(u32::MAX as usize) as u32, Ordering::Relaxed);
}

#[cfg_attr(not(target_family = "wasm"), allow(dead_code))] // used by the wasm imports
fn lower_limit(limit: u32) {
    LIMIT.fetch_min(limit, Ordering::Relaxed);
}

/// The key that state and timer calls apply to: implemented by
/// [`Event`](crate::Event) (its index in the batch) and [`TimerContext`] (its index in
/// the batch of timers).
pub trait KeyContext {
    /// The index the host resolves to the key (a row, or a timer).
    fn row(&self) -> u32;
}

impl KeyContext for crate::Event<'_> {
    #[inline]
    fn row(&self) -> u32 {
        self.index as u32
    }
}

impl KeyContext for TimerContext<'_> {
    #[inline]
    fn row(&self) -> u32 {
        self.index as u32
    }
}

/// The clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeDomain {
    /// Fires when the watermark reaches the timer's time.
    EventTime,
    /// Fires when the host's processing-time clock reaches the timer's time.
    ProcessingTime,
}

/// A due timer, handed to [`Operator::on_timer`](crate::Operator::on_timer). It is a
/// [`KeyContext`]: state calls with it apply to the timer's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerContext<'a> {
    /// The time the timer was registered for (ms since the epoch).
    pub time: i64,
    /// The key it was registered for.
    pub key: &'a [u8],
    /// Event time or processing time.
    pub domain: TimeDomain,
    /// Its index in the batch of timers being delivered.
    pub index: usize,
}

impl TimerContext<'_> {
    /// Timers of this timer's key (to register the next one, say).
    pub fn timers(&self) -> Timers {
        Timers { row: self.row() }
    }
}

/// A batch of due timers, for operators that override
/// [`Operator::on_timers`](crate::Operator::on_timers).
#[derive(Debug, Clone, Copy)]
pub struct TimerBatch<'a> {
    pub(crate) domain: TimeDomain,
    pub(crate) times: &'a [i64],
    pub(crate) key_offsets: &'a [u32],
    pub(crate) key_data: &'a [u8],
}

impl<'a> TimerBatch<'a> {
    /// Wraps raw columns, checking the key offsets as [`Batch::new`](crate::Batch::new)
    /// does.
    pub fn new(
        domain: TimeDomain,
        times: &'a [i64],
        key_offsets: &'a [u32],
        key_data: &'a [u8],
    ) -> Result<Self, Error> {
        crate::check_offsets("timer key", key_offsets, times.len(), key_data.len())?;
        Ok(TimerBatch {
            domain,
            times,
            key_offsets,
            key_data,
        })
    }

    /// Number of timers.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Which clock these timers follow.
    pub fn domain(&self) -> TimeDomain {
        self.domain
    }

    /// Timer `i`. Panics if `i >= len()`.
    pub fn get(&self, i: usize) -> TimerContext<'a> {
        let (a, b) = (
            self.key_offsets[i] as usize,
            self.key_offsets[i + 1] as usize,
        );
        TimerContext {
            time: self.times[i],
            key: &self.key_data[a..b],
            domain: self.domain,
            index: i,
        }
    }
}

/// Timers of one key (the key of the [`KeyContext`] it came from): see
/// [`Event::timers`](crate::Event::timers) and [`TimerContext::timers`].
///
/// One timer per key, domain and time: registering it again keeps one. An event-time
/// timer fires once the watermark reaches its time (one at or before the current
/// watermark fires at the next watermark); a processing-time timer once the host's
/// clock does. Due timers come to [`Operator::on_timer`](crate::Operator::on_timer) in
/// order of time, then key.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    row: u32,
}

impl Timers {
    pub(crate) fn for_row(row: u32) -> Timers {
        Timers { row }
    }

    /// Registers an event-time timer at `time` (ms since the epoch).
    pub fn register_event_time(&self, time: i64) -> Result<(), Error> {
        sys::register_timer(self.row, TimeDomain::EventTime, time)
    }
    /// Deletes the event-time timer at `time`, if there is one.
    pub fn delete_event_time(&self, time: i64) -> Result<(), Error> {
        sys::delete_timer(self.row, TimeDomain::EventTime, time)
    }
    /// Registers a processing-time timer at `time` (ms since the epoch, host clock).
    pub fn register_processing_time(&self, time: i64) -> Result<(), Error> {
        sys::register_timer(self.row, TimeDomain::ProcessingTime, time)
    }
    /// Deletes the processing-time timer at `time`, if there is one.
    pub fn delete_processing_time(&self, time: i64) -> Result<(), Error> {
        sys::delete_timer(self.row, TimeDomain::ProcessingTime, time)
    }
    /// The watermark this row met (during `on_timer`: the operator's watermark, for an
    /// event-time timer the one that fired it). `i64::MIN` before any watermark.
    pub fn current_watermark(&self) -> Result<i64, Error> {
        sys::current_watermark(self.row)
    }
    /// The host's processing time (ms since the epoch), the clock of processing-time
    /// timers.
    pub fn current_processing_time(&self) -> i64 {
        processing_time()
    }
}

/// The headers of row `row` of the batch being processed (Kafka record headers), as
/// `(name, value)` pairs in record order (`None`: a null value). See [`Event::headers`].
pub(crate) fn row_headers(row: u32) -> Result<Vec<(String, Option<Vec<u8>>)>, Error> {
    sys::headers(row)
}

/// The host's processing time (ms since the epoch): the clock processing-time timers and
/// state time-to-live follow. (The WASI clocks stay frozen unless the job grants them.)
pub fn processing_time() -> i64 {
    sys::processing_time()
}

thread_local! {
    /// Scratch for encoding arguments (WASM instances are single-threaded).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Encodes `a` and `b` into the scratch buffer and calls `f` with their bytes.
fn encoded2<A: Codec, B: Codec, R>(a: &A, b: &B, f: impl FnOnce(&[u8], &[u8]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut buf = s.take();
        buf.clear();
        a.encode(&mut buf);
        let split = buf.len();
        b.encode(&mut buf);
        let r = f(&buf[..split], &buf[split..]);
        s.replace(buf);
        r
    })
}

/// Encodes `a` into the scratch buffer and calls `f` with its bytes.
fn encoded<A: Codec, R>(a: &A, f: impl FnOnce(&[u8]) -> R) -> R {
    encoded2(a, &(), |a, _| f(a))
}

/// The kind of a declared state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Value,
    Map,
    List,
}

fn declare(name: &str, kind: Kind, ttl_ms: Option<i64>) -> Result<u32, Error> {
    sys::declare(name, kind, ttl_ms)
        .map_err(|e| e.with_context(format_args!("declaring state '{name}'")))
}

/// Value state: one value of type `T` per key (Flink's `ValueState`).
///
/// Declare it in [`Operator::init`](crate::Operator::init), keep it in the operator, and
/// use it with the [`Event`](crate::Event) or [`TimerContext`] whose key it is about.
#[derive(Debug)]
pub struct ValueState<T> {
    handle: u32,
    _t: PhantomData<fn() -> T>,
}

impl<T: Codec> ValueState<T> {
    /// Declares value state `name` (stable across restarts: restored state is found by
    /// it). Fails with `not-keyed` when the operator's input is not keyed.
    pub fn declare(name: &str) -> Result<Self, Error> {
        Self::declare_opt(name, None)
    }

    /// Declares value state `name` whose values expire `ttl_ms` ms (processing time)
    /// after they were last written; an expired value reads as unset.
    pub fn declare_with_ttl(name: &str, ttl_ms: i64) -> Result<Self, Error> {
        Self::declare_opt(name, Some(ttl_ms))
    }

    fn declare_opt(name: &str, ttl_ms: Option<i64>) -> Result<Self, Error> {
        Ok(ValueState {
            handle: declare(name, Kind::Value, ttl_ms)?,
            _t: PhantomData,
        })
    }

    /// The host's handle of this state.
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// The key's value, if set.
    pub fn get(&self, ctx: &impl KeyContext) -> Result<Option<T>, Error> {
        sys::value_get(ctx.row(), self.handle)?
            .map(|b| T::decode(&b))
            .transpose()
    }

    /// The key's value, or `T::default()` if unset.
    pub fn get_or_default(&self, ctx: &impl KeyContext) -> Result<T, Error>
    where
        T: Default,
    {
        Ok(self.get(ctx)?.unwrap_or_default())
    }

    /// Sets the key's value.
    pub fn set(&self, ctx: &impl KeyContext, value: &T) -> Result<(), Error> {
        encoded(value, |v| sys::value_set(ctx.row(), self.handle, v))
    }

    /// Unsets the key's value.
    pub fn clear(&self, ctx: &impl KeyContext) -> Result<(), Error> {
        sys::clear(ctx.row(), self.handle)
    }
}

/// Map state: a map from `K` to `V` per key (Flink's `MapState`). Entries come in byte
/// order of the encoded keys: numeric order for integer keys (see [`Codec`]).
#[derive(Debug)]
pub struct MapState<K, V> {
    handle: u32,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K: Codec, V: Codec> MapState<K, V> {
    /// Declares map state `name`.
    pub fn declare(name: &str) -> Result<Self, Error> {
        Self::declare_opt(name, None)
    }

    /// Declares map state `name` whose entries expire `ttl_ms` ms (processing time) after
    /// they were last written.
    pub fn declare_with_ttl(name: &str, ttl_ms: i64) -> Result<Self, Error> {
        Self::declare_opt(name, Some(ttl_ms))
    }

    fn declare_opt(name: &str, ttl_ms: Option<i64>) -> Result<Self, Error> {
        Ok(MapState {
            handle: declare(name, Kind::Map, ttl_ms)?,
            _t: PhantomData,
        })
    }

    /// The host's handle of this state.
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// The value under `key` in the key's map.
    pub fn get(&self, ctx: &impl KeyContext, key: &K) -> Result<Option<V>, Error> {
        encoded(key, |k| sys::map_get(ctx.row(), self.handle, k))?
            .map(|b| V::decode(&b))
            .transpose()
    }

    /// Whether `key` is in the key's map.
    pub fn contains(&self, ctx: &impl KeyContext, key: &K) -> Result<bool, Error> {
        Ok(encoded(key, |k| sys::map_get(ctx.row(), self.handle, k))?.is_some())
    }

    /// Puts `key -> value` into the key's map.
    pub fn put(&self, ctx: &impl KeyContext, key: &K, value: &V) -> Result<(), Error> {
        encoded2(key, value, |k, v| {
            sys::map_put(ctx.row(), self.handle, k, v)
        })
    }

    /// Removes `key` from the key's map.
    pub fn remove(&self, ctx: &impl KeyContext, key: &K) -> Result<(), Error> {
        encoded(key, |k| sys::map_remove(ctx.row(), self.handle, k))
    }

    /// The key's map entries, in key order.
    pub fn entries(&self, ctx: &impl KeyContext) -> Result<Vec<(K, V)>, Error> {
        let (ko, kd, vo, vd) = sys::map_entries(ctx.row(), self.handle)?;
        (0..ko.len().saturating_sub(1))
            .map(|i| {
                Ok((
                    K::decode(&kd[ko[i] as usize..ko[i + 1] as usize])?,
                    V::decode(&vd[vo[i] as usize..vo[i + 1] as usize])?,
                ))
            })
            .collect()
    }

    /// The keys of the key's map, in order.
    pub fn keys(&self, ctx: &impl KeyContext) -> Result<Vec<K>, Error> {
        decode_list(sys::map_keys(ctx.row(), self.handle)?)
    }

    /// Whether the key's map is empty.
    pub fn is_empty(&self, ctx: &impl KeyContext) -> Result<bool, Error> {
        Ok(sys::map_keys(ctx.row(), self.handle)?.0.len() <= 1)
    }

    /// Removes every entry of the key's map.
    pub fn clear(&self, ctx: &impl KeyContext) -> Result<(), Error> {
        sys::clear(ctx.row(), self.handle)
    }
}

fn decode_list<T: Codec>((offsets, data): (Vec<u32>, Vec<u8>)) -> Result<Vec<T>, Error> {
    (0..offsets.len().saturating_sub(1))
        .map(|i| T::decode(&data[offsets[i] as usize..offsets[i + 1] as usize]))
        .collect()
}

/// List state: a list of `T` per key, appended to (Flink's `ListState`). With a
/// time-to-live, each element expires on its own.
#[derive(Debug)]
pub struct ListState<T> {
    handle: u32,
    _t: PhantomData<fn() -> T>,
}

impl<T: Codec> ListState<T> {
    /// Declares list state `name`.
    pub fn declare(name: &str) -> Result<Self, Error> {
        Self::declare_opt(name, None)
    }

    /// Declares list state `name` whose elements expire `ttl_ms` ms (processing time)
    /// after they were written.
    pub fn declare_with_ttl(name: &str, ttl_ms: i64) -> Result<Self, Error> {
        Self::declare_opt(name, Some(ttl_ms))
    }

    fn declare_opt(name: &str, ttl_ms: Option<i64>) -> Result<Self, Error> {
        Ok(ListState {
            handle: declare(name, Kind::List, ttl_ms)?,
            _t: PhantomData,
        })
    }

    /// The host's handle of this state.
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// The key's elements, oldest first.
    pub fn get(&self, ctx: &impl KeyContext) -> Result<Vec<T>, Error> {
        decode_list(sys::list_get(ctx.row(), self.handle)?)
    }

    /// Appends `value` to the key's list.
    pub fn append(&self, ctx: &impl KeyContext, value: &T) -> Result<(), Error> {
        encoded(value, |v| sys::list_append(ctx.row(), self.handle, v))
    }

    /// Replaces the key's list with `values` (empty: clears it).
    pub fn set(&self, ctx: &impl KeyContext, values: &[T]) -> Result<(), Error> {
        let mut offsets = Vec::with_capacity(values.len() + 1);
        offsets.push(0u32);
        let mut data = Vec::new();
        for v in values {
            v.encode(&mut data);
            offsets.push(data.len() as u32);
        }
        sys::list_set(ctx.row(), self.handle, &offsets, &data)
    }

    /// Removes every element of the key's list.
    pub fn clear(&self, ctx: &impl KeyContext) -> Result<(), Error> {
        sys::clear(ctx.row(), self.handle)
    }
}

/// The raw imports, as `Result<_, Error>`.
#[cfg(target_family = "wasm")]
mod sys {
    use super::{Kind, TimeDomain, lower_limit};
    use crate::bindings::sluice::operator::{keyed_state as ks, timers as tm, types};
    use crate::error::{Error, StateErrorCode};

    fn err(e: types::StateError) -> Error {
        let code = match e.code {
            types::StateErrorCode::NotKeyed => StateErrorCode::NotKeyed,
            types::StateErrorCode::NoCurrentKey => StateErrorCode::NoCurrentKey,
            types::StateErrorCode::BadIndex => StateErrorCode::BadIndex,
            types::StateErrorCode::BadHandle => StateErrorCode::BadHandle,
            types::StateErrorCode::BadDeclaration => StateErrorCode::BadDeclaration,
            types::StateErrorCode::BadArgument => StateErrorCode::BadArgument,
            types::StateErrorCode::Backend => StateErrorCode::Backend,
        };
        Error::state(code, e.message)
    }

    fn domain(d: TimeDomain) -> types::TimeDomain {
        match d {
            TimeDomain::EventTime => types::TimeDomain::EventTime,
            TimeDomain::ProcessingTime => types::TimeDomain::ProcessingTime,
        }
    }

    pub fn declare(name: &str, kind: Kind, ttl_ms: Option<i64>) -> Result<u32, Error> {
        let kind = match kind {
            Kind::Value => ks::StateKind::Value,
            Kind::Map => ks::StateKind::Map,
            Kind::List => ks::StateKind::List,
        };
        ks::declare(name, kind, ttl_ms).map_err(err)
    }
    pub fn value_get(row: u32, h: u32) -> Result<Option<Vec<u8>>, Error> {
        ks::value_get(row, h).map_err(err)
    }
    pub fn value_set(row: u32, h: u32, v: &[u8]) -> Result<(), Error> {
        ks::value_set(row, h, v).map_err(err)
    }
    pub fn clear(row: u32, h: u32) -> Result<(), Error> {
        ks::clear(row, h).map_err(err)
    }
    pub fn map_get(row: u32, h: u32, k: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        ks::map_get(row, h, k).map_err(err)
    }
    pub fn map_put(row: u32, h: u32, k: &[u8], v: &[u8]) -> Result<(), Error> {
        ks::map_put(row, h, k, v).map_err(err)
    }
    pub fn map_remove(row: u32, h: u32, k: &[u8]) -> Result<(), Error> {
        ks::map_remove(row, h, k).map_err(err)
    }
    #[allow(clippy::type_complexity)]
    pub fn map_entries(row: u32, h: u32) -> Result<(Vec<u32>, Vec<u8>, Vec<u32>, Vec<u8>), Error> {
        let m = ks::map_entries(row, h).map_err(err)?;
        Ok((m.key_offsets, m.key_data, m.value_offsets, m.value_data))
    }
    pub fn map_keys(row: u32, h: u32) -> Result<(Vec<u32>, Vec<u8>), Error> {
        let l = ks::map_keys(row, h).map_err(err)?;
        Ok((l.offsets, l.data))
    }
    pub fn list_get(row: u32, h: u32) -> Result<(Vec<u32>, Vec<u8>), Error> {
        let l = ks::list_get(row, h).map_err(err)?;
        Ok((l.offsets, l.data))
    }
    pub fn list_append(row: u32, h: u32, v: &[u8]) -> Result<(), Error> {
        ks::list_append(row, h, v).map_err(err)
    }
    pub fn list_set(row: u32, h: u32, offsets: &[u32], data: &[u8]) -> Result<(), Error> {
        // The record owns its lists; a list state is rewritten rarely enough.
        let values = ks::ByteList {
            offsets: offsets.to_vec(),
            data: data.to_vec(),
        };
        ks::list_set(row, h, &values).map_err(err)
    }
    pub fn register_timer(row: u32, d: TimeDomain, time: i64) -> Result<(), Error> {
        lower_limit(tm::register_timer(row, domain(d), time).map_err(err)?);
        Ok(())
    }
    pub fn delete_timer(row: u32, d: TimeDomain, time: i64) -> Result<(), Error> {
        lower_limit(tm::delete_timer(row, domain(d), time).map_err(err)?);
        Ok(())
    }
    pub fn current_watermark(row: u32) -> Result<i64, Error> {
        tm::current_watermark(row).map_err(err)
    }
    pub fn headers(row: u32) -> Result<Vec<(String, Option<Vec<u8>>)>, Error> {
        let h = crate::bindings::sluice::operator::event_headers::headers(row).map_err(err)?;
        Ok(h.into_iter().map(|h| (h.name, h.value)).collect())
    }
    pub fn processing_time() -> i64 {
        tm::processing_time()
    }
}

/// Outside the host (native builds, for unit tests of pure code) there is no state:
/// every call is a `no-current-key` error.
#[cfg(not(target_family = "wasm"))]
#[allow(clippy::type_complexity)]
mod sys {
    use super::{Kind, TimeDomain};
    use crate::error::{Error, StateErrorCode};

    fn none<T>() -> Result<T, Error> {
        Err(Error::state(
            StateErrorCode::NoCurrentKey,
            "keyed state and timers exist only inside the Sluice host (wasm32-wasip2)",
        ))
    }
    pub fn declare(_: &str, _: Kind, _: Option<i64>) -> Result<u32, Error> {
        none()
    }
    pub fn value_get(_: u32, _: u32) -> Result<Option<Vec<u8>>, Error> {
        none()
    }
    pub fn value_set(_: u32, _: u32, _: &[u8]) -> Result<(), Error> {
        none()
    }
    pub fn clear(_: u32, _: u32) -> Result<(), Error> {
        none()
    }
    pub fn map_get(_: u32, _: u32, _: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        none()
    }
    pub fn map_put(_: u32, _: u32, _: &[u8], _: &[u8]) -> Result<(), Error> {
        none()
    }
    pub fn map_remove(_: u32, _: u32, _: &[u8]) -> Result<(), Error> {
        none()
    }
    pub fn map_entries(_: u32, _: u32) -> Result<(Vec<u32>, Vec<u8>, Vec<u32>, Vec<u8>), Error> {
        none()
    }
    pub fn map_keys(_: u32, _: u32) -> Result<(Vec<u32>, Vec<u8>), Error> {
        none()
    }
    pub fn list_get(_: u32, _: u32) -> Result<(Vec<u32>, Vec<u8>), Error> {
        none()
    }
    pub fn list_append(_: u32, _: u32, _: &[u8]) -> Result<(), Error> {
        none()
    }
    pub fn list_set(_: u32, _: u32, _: &[u32], _: &[u8]) -> Result<(), Error> {
        none()
    }
    pub fn register_timer(_: u32, _: TimeDomain, _: i64) -> Result<(), Error> {
        none()
    }
    pub fn delete_timer(_: u32, _: TimeDomain, _: i64) -> Result<(), Error> {
        none()
    }
    pub fn current_watermark(_: u32) -> Result<i64, Error> {
        none()
    }
    pub fn headers(_: u32) -> Result<Vec<(String, Option<Vec<u8>>)>, Error> {
        none()
    }
    pub fn processing_time() -> i64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, StateErrorCode};

    #[test]
    fn outside_the_host_state_calls_are_typed_errors() {
        let e = ValueState::<i64>::declare("count").unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::State);
        assert_eq!(e.state_code(), Some(StateErrorCode::NoCurrentKey));
        assert!(e.message().contains("declaring state 'count'"), "{e}");
        let ev = Event {
            timestamp: 1,
            key: b"k",
            value: b"",
            index: 0,
        };
        assert!(ev.timers().register_event_time(5).is_err());
    }

    #[test]
    fn timer_batches_check_offsets_and_give_contexts() {
        let times = [5, 7];
        let b = TimerBatch::new(TimeDomain::EventTime, &times, &[0, 1, 3], b"abc").unwrap();
        assert_eq!(b.len(), 2);
        let t = b.get(1);
        assert_eq!((t.time, t.key, t.index), (7, &b"bc"[..], 1));
        assert_eq!(t.row(), 1);
        assert!(TimerBatch::new(TimeDomain::EventTime, &times, &[0, 1], b"abc").is_err());
    }
}
