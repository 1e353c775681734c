//! The `keyed-state` and `timers` imports over [`KeyedStateStore`], and the *scope* of
//! the running guest call that they resolve rows against.
//!
//! While `process` or `on-timers` runs, the host keeps the call's batch (of events or
//! of timers) in [`Scope`]; an import's `row` is an index into it, resolved here to the
//! row's key, which becomes the store's current key. Keys never cross the boundary
//! twice.
//!
//! The scope also holds the call's *limit* (see `wit/operator.wit`): event-time timers
//! fire between rows, where the watermark passes them, so when the guest registers a
//! timer that a watermark mark later in the same batch passes, the limit drops to that
//! mark's row and the guest stops there; the operator fires the timer and passes the
//! remaining rows again. During `on-timers`, a timer registered or deleted that sorts
//! before timers still to be delivered lowers the limit to the first of those, which
//! are put back into the store so that they fire again, in order, after it.

use crate::bindings::sluice::operator::{keyed_state, timers, types};
use crate::operator::HostState;
use sluice_core::batch::{Headers, WatermarkMark};
use sluice_core::state::{KeyedStateStore, StateDescriptor, StateId, StateKind, TimeDomain};
use std::sync::Arc;
use types::{StateError, StateErrorCode};

/// Which kind of call is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    /// No call, or `init`: no key is current.
    Outside,
    /// `process` of a batch of events.
    Batch,
    /// `on-timers` of a batch of due timers.
    Timers,
}

/// What the running guest call is about. Kept in the store and updated in place around
/// each call (no allocation, nothing large moved: the stateless path stays as cheap as
/// before).
pub(crate) struct Scope {
    /// The kind of call.
    pub(crate) kind: CallKind,
    /// Rows (or timers) in the call's batch.
    pub(crate) len: u32,
    /// Rows (or timers) the guest may handle in this call (`<= len`; lowered by timer
    /// calls).
    pub(crate) limit: u32,
    /// `process`: the watermark marks between the call's rows (rows relative to it).
    pub(crate) marks: Vec<WatermarkMark>,
    /// `process`: the watermark before the call's first row (and before its marks).
    pub(crate) base_watermark: i64,
    /// `process` of a keyed operator: the call's batch, whose keys scope state calls.
    pub(crate) batch: Option<Arc<types::EventBatch>>,
    /// `on-timers`: the timers being delivered.
    pub(crate) timers: Option<Arc<types::TimerBatch>>,
    /// `process`: the headers column of the batch the call's rows come from, if it has
    /// one, and the index in it of the call's row 0 (a keyed batch is passed in
    /// segments).
    pub(crate) headers: Option<Arc<Headers>>,
    /// See `headers`.
    pub(crate) headers_base: u32,
}

impl Scope {
    /// No call running.
    pub(crate) fn outside() -> Scope {
        Scope {
            kind: CallKind::Outside,
            len: 0,
            limit: 0,
            marks: Vec::new(),
            base_watermark: i64::MIN,
            batch: None,
            timers: None,
            headers: None,
            headers_base: 0,
        }
    }
}

pub(crate) fn state_error(code: StateErrorCode, message: impl Into<String>) -> StateError {
    StateError {
        code,
        message: message.into(),
    }
}

fn not_keyed() -> StateError {
    state_error(
        StateErrorCode::NotKeyed,
        "this operator's input is not keyed (no key_by edge leads into it), so it has no \
         keyed state or timers",
    )
}

fn backend(e: sluice_core::state::StateError) -> StateError {
    state_error(StateErrorCode::Backend, e.0)
}

pub(crate) fn domain(d: types::TimeDomain) -> TimeDomain {
    match d {
        types::TimeDomain::EventTime => TimeDomain::EventTime,
        types::TimeDomain::ProcessingTime => TimeDomain::ProcessingTime,
    }
}

fn kind_name(k: StateKind) -> &'static str {
    match k {
        StateKind::Value => "value",
        StateKind::Map => "map",
        StateKind::List => "list",
    }
}

/// Item `i` of flat `(offsets, data)` columns; empty when out of range (the host built
/// or validated them, so it never is).
#[inline]
pub(crate) fn item<'a>(offsets: &[u32], data: &'a [u8], i: usize) -> &'a [u8] {
    match (offsets.get(i), offsets.get(i + 1)) {
        (Some(&a), Some(&b)) => data.get(a as usize..b as usize).unwrap_or_default(),
        _ => &[],
    }
}

/// Checks that `row` may be named in the current call, and returns the key it scopes.
fn row_key(scope: &Scope, row: u32) -> Result<&[u8], StateError> {
    let bad = |what: String| Err(state_error(StateErrorCode::BadIndex, what));
    match scope.kind {
        CallKind::Outside => Err(state_error(
            StateErrorCode::NoCurrentKey,
            "keyed state and timers are only available during process and on-timers, \
             where a row names the key (not in init)",
        )),
        CallKind::Batch => {
            if row >= scope.len {
                return bad(format!(
                    "row {row} is not in the batch being processed ({} rows)",
                    scope.len
                ));
            }
            if row >= scope.limit {
                return bad(format!(
                    "row {row} is at or after this call's limit of {} rows: an event-time \
                     timer registered in this call is due before it, so the call must stop \
                     there (the rows come again after the timer fired)",
                    scope.limit
                ));
            }
            let batch = scope
                .batch
                .as_ref()
                .expect("a keyed operator's batch scope holds its batch");
            Ok(item(&batch.key_offsets, &batch.key_data, row as usize))
        }
        CallKind::Timers => {
            if row >= scope.len {
                return bad(format!(
                    "timer {row} is not in the batch of timers being delivered ({} timers)",
                    scope.len
                ));
            }
            if row >= scope.limit {
                return bad(format!(
                    "timer {row} is at or after this call's limit of {} timers: a timer \
                     registered or deleted in this call sorts before it, so it comes again \
                     in a later call",
                    scope.limit
                ));
            }
            let timers = scope
                .timers
                .as_ref()
                .expect("a timer scope holds its timers");
            Ok(item(&timers.key_offsets, &timers.key_data, row as usize))
        }
    }
}

impl HostState {
    /// The store with `row`'s key current, after checking the handle's kind (`None`: any
    /// declared state).
    fn scoped(
        &mut self,
        row: u32,
        handle: u32,
        kind: Option<StateKind>,
    ) -> Result<(&mut KeyedStateStore, StateId), StateError> {
        let store = self.keyed.as_mut().ok_or_else(not_keyed)?;
        let key = row_key(&self.scope, row)?;
        let declared = store.states();
        let id = match declared.get(handle as usize) {
            Some(d) if kind.is_none_or(|k| k == d.kind) => handle as StateId,
            Some(d) => {
                return Err(state_error(
                    StateErrorCode::BadHandle,
                    format!(
                        "state '{}' (handle {handle}) is {} state, used as {} state",
                        d.name,
                        kind_name(d.kind),
                        kind_name(kind.expect("checked above"))
                    ),
                ));
            }
            None => {
                return Err(state_error(
                    StateErrorCode::BadHandle,
                    format!(
                        "handle {handle} names no declared state ({} declared)",
                        declared.len()
                    ),
                ));
            }
        };
        store.set_current_key(key);
        Ok((store, id))
    }

    /// Registers (`register`) or deletes a timer for `row`'s key, lowering the call's
    /// limit where the timer changes what must fire before later rows or timers.
    fn timer_call(
        &mut self,
        row: u32,
        d: types::TimeDomain,
        time: i64,
        register: bool,
    ) -> Result<u32, StateError> {
        let store = self.keyed.as_mut().ok_or_else(not_keyed)?;
        row_key(&self.scope, row)?;
        let dom = domain(d);
        let scope = &mut self.scope;
        match scope.kind {
            CallKind::Outside => unreachable!("row_key refuses calls outside"),
            CallKind::Batch => {
                let batch = scope.batch.as_ref().expect("checked by row_key");
                store.set_current_key(item(&batch.key_offsets, &batch.key_data, row as usize));
                let r = if register {
                    store.register_timer(dom, time)
                } else {
                    store.delete_timer(dom, time)
                };
                r.map_err(backend)?;
                if register
                    && dom == TimeDomain::EventTime
                    && let Some(m) = scope
                        .marks
                        .iter()
                        .find(|m| m.row > row && m.watermark >= time)
                {
                    scope.limit = scope.limit.min(m.row);
                }
                Ok(scope.limit)
            }
            CallKind::Timers => {
                let timers = scope.timers.clone().expect("checked by row_key");
                let key_at = |i: usize| item(&timers.key_offsets, &timers.key_data, i);
                let key = key_at(row as usize);
                if domain(timers.domain) == dom {
                    // The first undelivered timer this one sorts at or before (register),
                    // or is (delete): from there on, the batch no longer holds what must
                    // fire next.
                    let this = (time, key);
                    let cut = (row as usize + 1..scope.limit as usize).find(|&j| {
                        let other = (timers.times[j], key_at(j));
                        if register {
                            other >= this
                        } else {
                            other == this
                        }
                    });
                    if let Some(j) = cut {
                        for i in j..scope.limit as usize {
                            store.set_current_key(key_at(i));
                            store
                                .register_timer(dom, timers.times[i])
                                .map_err(backend)?;
                        }
                        scope.limit = j as u32;
                    }
                }
                store.set_current_key(key);
                let r = if register {
                    store.register_timer(dom, time)
                } else {
                    store.delete_timer(dom, time)
                };
                r.map_err(backend)?;
                Ok(scope.limit)
            }
        }
    }
}

fn byte_list(items: impl ExactSizeIterator<Item = Vec<u8>>) -> keyed_state::ByteList {
    let mut offsets = Vec::with_capacity(items.len() + 1);
    offsets.push(0);
    let mut data = Vec::new();
    for v in items {
        data.extend_from_slice(&v);
        offsets.push(data.len() as u32);
    }
    keyed_state::ByteList { offsets, data }
}

impl keyed_state::Host for HostState {
    fn declare(
        &mut self,
        name: String,
        kind: keyed_state::StateKind,
        ttl_ms: Option<i64>,
    ) -> Result<keyed_state::StateHandle, StateError> {
        let store = self.keyed.as_mut().ok_or_else(not_keyed)?;
        let kind = match kind {
            keyed_state::StateKind::Value => StateKind::Value,
            keyed_state::StateKind::Map => StateKind::Map,
            keyed_state::StateKind::List => StateKind::List,
        };
        store
            .declare(StateDescriptor { name, kind, ttl_ms })
            .map(u32::from)
            .map_err(|e| state_error(StateErrorCode::BadDeclaration, e.0))
    }

    fn value_get(&mut self, row: u32, handle: u32) -> Result<Option<Vec<u8>>, StateError> {
        let (store, id) = self.scoped(row, handle, Some(StateKind::Value))?;
        store.value_get(id).map_err(backend)
    }

    fn value_set(&mut self, row: u32, handle: u32, value: Vec<u8>) -> Result<(), StateError> {
        let (store, id) = self.scoped(row, handle, Some(StateKind::Value))?;
        store.value_set(id, &value).map_err(backend)
    }

    fn clear(&mut self, row: u32, handle: u32) -> Result<(), StateError> {
        let (store, id) = self.scoped(row, handle, None)?;
        store.clear(id).map_err(backend)
    }

    fn map_get(
        &mut self,
        row: u32,
        handle: u32,
        key: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, StateError> {
        let (store, id) = self.scoped(row, handle, Some(StateKind::Map))?;
        store.map_get(id, &key).map_err(backend)
    }

    fn map_put(
        &mut self,
        row: u32,
        handle: u32,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<(), StateError> {
        let (store, id) = self.scoped(row, handle, Some(StateKind::Map))?;
        store.map_put(id, &key, &value).map_err(backend)
    }

    fn map_remove(&mut self, row: u32, handle: u32, key: Vec<u8>) -> Result<(), StateError> {
        let (store, id) = self.scoped(row, handle, Some(StateKind::Map))?;
        store.map_remove(id, &key).map_err(backend)
    }

    fn map_entries(&mut self, row: u32, handle: u32) -> Result<keyed_state::ByteMap, StateError> {
        let (store, id) = self.scoped(row, handle, Some(StateKind::Map))?;
        let entries = store.map_entries(id).map_err(backend)?;
        let mut m = keyed_state::ByteMap {
            key_offsets: Vec::with_capacity(entries.len() + 1),
            key_data: Vec::new(),
            value_offsets: Vec::with_capacity(entries.len() + 1),
            value_data: Vec::new(),
        };
        m.key_offsets.push(0);
        m.value_offsets.push(0);
        for (k, v) in entries {
            m.key_data.extend_from_slice(&k);
            m.key_offsets.push(m.key_data.len() as u32);
            m.value_data.extend_from_slice(&v);
            m.value_offsets.push(m.value_data.len() as u32);
        }
        Ok(m)
    }

    fn map_keys(&mut self, row: u32, handle: u32) -> Result<keyed_state::ByteList, StateError> {
        let (store, id) = self.scoped(row, handle, Some(StateKind::Map))?;
        let entries = store.map_entries(id).map_err(backend)?;
        Ok(byte_list(entries.into_iter().map(|(k, _)| k)))
    }

    fn list_get(&mut self, row: u32, handle: u32) -> Result<keyed_state::ByteList, StateError> {
        let (store, id) = self.scoped(row, handle, Some(StateKind::List))?;
        Ok(byte_list(store.list_get(id).map_err(backend)?.into_iter()))
    }

    fn list_append(&mut self, row: u32, handle: u32, value: Vec<u8>) -> Result<(), StateError> {
        let (store, id) = self.scoped(row, handle, Some(StateKind::List))?;
        store.list_append(id, &value).map_err(backend)
    }

    fn list_set(
        &mut self,
        row: u32,
        handle: u32,
        values: keyed_state::ByteList,
    ) -> Result<(), StateError> {
        let o = &values.offsets;
        let valid = o.first() == Some(&0)
            && o.windows(2).all(|w| w[0] <= w[1])
            && o.last().is_some_and(|&e| e as usize == values.data.len());
        if !valid {
            return Err(state_error(
                StateErrorCode::BadArgument,
                format!(
                    "list-set: the byte-list's offsets ({} entries) must start at 0, never \
                     decrease and end at the data's length ({} bytes)",
                    o.len(),
                    values.data.len()
                ),
            ));
        }
        let items: Vec<&[u8]> = (0..o.len() - 1).map(|i| item(o, &values.data, i)).collect();
        let (store, id) = self.scoped(row, handle, Some(StateKind::List))?;
        store.list_set(id, &items).map_err(backend)
    }
}

impl timers::Host for HostState {
    fn register_timer(
        &mut self,
        row: u32,
        domain: types::TimeDomain,
        time: i64,
    ) -> Result<u32, StateError> {
        self.timer_call(row, domain, time, true)
    }

    fn delete_timer(
        &mut self,
        row: u32,
        domain: types::TimeDomain,
        time: i64,
    ) -> Result<u32, StateError> {
        self.timer_call(row, domain, time, false)
    }

    fn current_watermark(&mut self, row: u32) -> Result<i64, StateError> {
        let s = &self.scope;
        match s.kind {
            CallKind::Batch => {
                if row >= s.limit {
                    return Err(state_error(
                        StateErrorCode::BadIndex,
                        format!(
                            "row {row} is not in the batch being processed ({} rows, limit {})",
                            s.len, s.limit
                        ),
                    ));
                }
                let k = s.marks.partition_point(|m| m.row <= row);
                Ok(if k == 0 {
                    s.base_watermark
                } else {
                    s.marks[k - 1].watermark
                })
            }
            CallKind::Timers | CallKind::Outside => Ok(self.watermark),
        }
    }

    fn processing_time(&mut self) -> i64 {
        (self.clock)()
    }
}
