//! Keyed state primitives over a [`KvBackend`]: value, map and list state declared by
//! name, scoped to the current key, with optional time-to-live; and event-time and
//! processing-time timers per key. This is what a keyed operator (a WASM one through
//! host imports, or a native one) sees; the backend under it is heap or RocksDB.
//!
//! Semantics follow Flink's `ValueState`/`MapState`/`ListState` and `StateTtlConfig`
//! with `OnCreateAndWrite` updates and `NeverReturnExpired` visibility: an entry's
//! expiry is its last write's processing time plus the TTL; an expired entry is never
//! returned, is removed when it is next touched, and is removed in the background by an
//! incremental cleanup ([`KeyedStateStore::cleanup_expired`], Flink's
//! `cleanupIncrementally`) and left out of savepoints. List elements expire one by one.

use super::backend::{KvBackend, StateError};
use super::journal::Journaled;
use super::layout::{key_groups_range, parse, prefix_end, write_prefix};
use crate::keygroup::key_group;
use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::Arc;

/// The kind of a declared state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateKind {
    /// One value per key.
    Value,
    /// A map from user keys to values, per key.
    Map,
    /// A list of values per key, appended to.
    List,
}

/// A state declared by an operator: its name (stable across versions and restores), kind
/// and time-to-live.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StateDescriptor {
    /// The name, unique within the operator.
    pub name: String,
    /// Value, map or list.
    pub kind: StateKind,
    /// Time-to-live in milliseconds of processing time, if entries expire.
    pub ttl_ms: Option<i64>,
}

/// The handle of a declared state, returned by [`KeyedStateStore::declare`].
pub type StateId = u16;

/// Event time or processing time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeDomain {
    /// Fires when the watermark reaches the time.
    EventTime,
    /// Fires when the wall clock reaches the time.
    ProcessingTime,
}

/// A timer that is due: the key it was registered for and its time (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timer {
    /// When it fires.
    pub time: i64,
    /// The key it belongs to.
    pub key: Vec<u8>,
}

/// State ids at and above this are reserved for the store's own use.
const RESERVED: u16 = 0xfff0;
const EVENT_TIMERS: u16 = 0xfffe;
const PROCESSING_TIMERS: u16 = 0xffff;
/// No expiry.
const NEVER: i64 = i64::MAX;

/// A map state's entries: `(user key, value)` pairs.
pub type MapEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// A stored list's live elements `(expiry, payload)`, and whether any had expired.
type LiveElements<'a> = (Vec<(i64, &'a [u8])>, bool);

/// A source of processing time in ms since the epoch (the wall clock, or a test's).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(crate::time::now_ms)
}

/// One operator subtask's keyed state and timers. See the module docs.
///
/// Errors: every method fails when the backend does (the message names the backend's
/// file or directory); one that takes a [`StateId`] also when no state was declared with
/// it or it is of another kind than the method's; reading a stored list that is not in
/// the store's encoding fails too.
pub struct KeyedStateStore {
    backend: Journaled,
    max_parallelism: usize,
    key_groups: Range<usize>,
    states: Vec<StateDescriptor>,
    /// Per state: declared in this run (`false`: only restored, not yet declared).
    declared: Vec<bool>,
    clock: Clock,
    key: Vec<u8>,
    key_group: u16,
    /// Scratch for building backend keys.
    buf: Vec<u8>,
    /// Due-order indexes of the timers, mirrored in the backend (which is what snapshots
    /// hold); rebuilt from it on restore.
    event_timers: BTreeSet<(i64, Vec<u8>)>,
    processing_timers: BTreeSet<(i64, Vec<u8>)>,
    /// Where the incremental TTL cleanup resumes.
    cleanup_cursor: Option<Vec<u8>>,
}

impl KeyedStateStore {
    /// A store over `backend` (empty, or restored: the timers of `key_groups` are
    /// re-indexed) for a subtask owning `key_groups` of `max_parallelism`. Errors: the
    /// backend cannot be read, or holds a timer entry not in Sluice's key layout.
    pub fn new(
        backend: Box<dyn KvBackend>,
        max_parallelism: usize,
        key_groups: Range<usize>,
        clock: Clock,
    ) -> Result<Self, StateError> {
        let mut store = KeyedStateStore {
            backend: Journaled::new(backend),
            max_parallelism,
            key_groups,
            states: Vec::new(),
            declared: Vec::new(),
            clock,
            key: Vec::new(),
            // The current key starts empty; `set_current_key(b"")` changes nothing, so
            // the empty key's key group must be right from the start.
            key_group: key_group(&[], max_parallelism) as u16,
            buf: Vec::new(),
            event_timers: BTreeSet::new(),
            processing_timers: BTreeSet::new(),
            cleanup_cursor: None,
        };
        store.index_timers()?;
        Ok(store)
    }

    /// The backend (for snapshots).
    pub fn backend_mut(&mut self) -> &mut dyn KvBackend {
        &mut self.backend
    }

    /// Starts journaling writes (state, timers), unless it is on, so that
    /// [`KeyedStateStore::rollback_to`] can undo them: around guest calls that a failure
    /// policy may retry on part of their input or skip. Each write then reads the value
    /// it replaces first.
    pub fn begin(&mut self) {
        self.backend.begin();
    }

    /// A point to roll back to (see [`KeyedStateStore::rollback_to`]).
    pub fn savepoint(&self) -> usize {
        self.backend.savepoint()
    }

    /// Keeps every write and stops journaling.
    pub fn commit(&mut self) {
        self.backend.commit();
    }

    /// Undoes the writes since `savepoint` (timers registered, deleted or fired
    /// included); journaling goes on.
    ///
    /// Errors: the backend failed while restoring (the state is then unusable).
    pub fn rollback_to(&mut self, savepoint: usize) -> Result<(), StateError> {
        if !self.backend.is_open() || self.backend.savepoint() == savepoint {
            return Ok(());
        }
        self.backend.rollback_to(savepoint)?;
        self.index_timers()
    }

    /// The states declared so far, indexed by [`StateId`].
    pub fn states(&self) -> &[StateDescriptor] {
        &self.states
    }

    /// The key groups this store owns.
    pub fn key_groups(&self) -> Range<usize> {
        self.key_groups.clone()
    }

    /// Declares a state (idempotent for the same descriptor) and returns its handle.
    ///
    /// Errors: an empty name; a name declared before with another kind or TTL; a TTL
    /// that is not positive; too many states.
    pub fn declare(&mut self, desc: StateDescriptor) -> Result<StateId, StateError> {
        if desc.name.is_empty() {
            return Err(StateError("a state name must not be empty".into()));
        }
        if let Some(ttl) = desc.ttl_ms
            && ttl <= 0
        {
            return Err(StateError(format!(
                "state '{}': the time-to-live must be positive, got {ttl} ms",
                desc.name
            )));
        }
        if let Some(i) = self.states.iter().position(|s| s.name == desc.name) {
            if !self.declared[i] {
                // A state restored from a snapshot: same kind, and values written with
                // an expiry only if it still has a TTL (its length may change).
                let old = &self.states[i];
                if old.kind != desc.kind || old.ttl_ms.is_some() != desc.ttl_ms.is_some() {
                    return Err(StateError(format!(
                        "state '{}' was restored as {:?} state {} a time-to-live, but is now declared as {:?} state {} one: the snapshot's state cannot be used",
                        desc.name,
                        old.kind,
                        if old.ttl_ms.is_some() {
                            "with"
                        } else {
                            "without"
                        },
                        desc.kind,
                        if desc.ttl_ms.is_some() {
                            "with"
                        } else {
                            "without"
                        },
                    )));
                }
                self.states[i] = desc;
                self.declared[i] = true;
                return Ok(i as StateId);
            }
            let old = &self.states[i];
            if *old != desc {
                return Err(StateError(format!(
                    "state '{}' is declared twice, as {:?} (ttl {:?} ms) and as {:?} (ttl {:?} ms)",
                    desc.name, old.kind, old.ttl_ms, desc.kind, desc.ttl_ms
                )));
            }
            return Ok(i as StateId);
        }
        if self.states.len() >= RESERVED as usize {
            return Err(StateError("too many states declared".into()));
        }
        self.states.push(desc);
        self.declared.push(true);
        Ok((self.states.len() - 1) as StateId)
    }

    /// Adopts the state table of a restored snapshot, so that state ids (part of every
    /// stored key) keep their meaning: a later [`KeyedStateStore::declare`] of a restored
    /// name gets its old id back; its kind must match, and its TTL may change only in
    /// length (values stored with an expiry keep it).
    pub fn adopt_states(&mut self, states: Vec<StateDescriptor>) {
        self.declared = vec![false; states.len()];
        self.states = states;
    }

    /// Makes `key` the current key: state access and timers apply to it.
    #[inline]
    pub fn set_current_key(&mut self, key: &[u8]) {
        if key != self.key.as_slice() {
            self.key.clear();
            self.key.extend_from_slice(key);
            self.key_group = key_group(key, self.max_parallelism) as u16;
        }
    }

    /// The current key.
    pub fn current_key(&self) -> &[u8] {
        &self.key
    }

    fn declared(&self, id: StateId) -> Result<&StateDescriptor, StateError> {
        self.states
            .get(id as usize)
            .ok_or_else(|| StateError(format!("no state with handle {id} was declared")))
    }

    fn desc(&self, id: StateId, kind: StateKind) -> Result<&StateDescriptor, StateError> {
        let d = self.declared(id)?;
        if d.kind != kind {
            return Err(StateError(format!(
                "state '{}' is {:?} state, used as {kind:?} state",
                d.name, d.kind
            )));
        }
        Ok(d)
    }

    /// Calls `f` with the backend key of state `id` for the current key, followed by
    /// `suffix` (built in a buffer reused from call to call).
    fn with_key<R>(
        &mut self,
        id: StateId,
        suffix: &[u8],
        f: impl FnOnce(&mut Self, &[u8]) -> Result<R, StateError>,
    ) -> Result<R, StateError> {
        let mut key = std::mem::take(&mut self.buf);
        key.clear();
        write_prefix(&mut key, self.key_group, id, &self.key);
        key.extend_from_slice(suffix);
        let r = f(self, &key);
        self.buf = key;
        r
    }

    /// The expiry of an entry written now, when the state has a TTL.
    fn fresh_expiry(&self, ttl: Option<i64>) -> Option<i64> {
        ttl.map(|t| (self.clock)().saturating_add(t))
    }

    /// The live payload of a stored value, or `None` when it expired at `now`.
    fn decode(ttl: Option<i64>, stored: &[u8], now: i64) -> Option<&[u8]> {
        if ttl.is_none() {
            return Some(stored);
        }
        let expiry = i64::from_le_bytes(stored.get(..8)?.try_into().ok()?);
        (expiry > now).then(|| &stored[8..])
    }

    /// The live value of state `id` (a `kind` state) under the current key and `suffix`.
    fn get_entry(
        &mut self,
        id: StateId,
        kind: StateKind,
        suffix: &[u8],
    ) -> Result<Option<Vec<u8>>, StateError> {
        let ttl = self.desc(id, kind)?.ttl_ms;
        self.with_key(id, suffix, |s, k| s.get_live(k, ttl))
    }

    /// Writes `value` (with its expiry when the state has a TTL) to state `id` (a `kind`
    /// state) under the current key and `suffix`.
    fn put_entry(
        &mut self,
        id: StateId,
        kind: StateKind,
        suffix: &[u8],
        value: &[u8],
    ) -> Result<(), StateError> {
        let ttl = self.desc(id, kind)?.ttl_ms;
        match self.fresh_expiry(ttl) {
            None => self.with_key(id, suffix, |s, k| s.backend.put(k, value)),
            Some(expiry) => {
                let mut v = Vec::with_capacity(value.len() + 8);
                v.extend_from_slice(&expiry.to_le_bytes());
                v.extend_from_slice(value);
                self.with_key(id, suffix, |s, k| s.backend.put(k, &v))
            }
        }
    }

    /// Reads `key`, removing it if it expired.
    fn get_live(&mut self, key: &[u8], ttl: Option<i64>) -> Result<Option<Vec<u8>>, StateError> {
        let Some(stored) = self.backend.get(key)? else {
            return Ok(None);
        };
        let now = if ttl.is_some() { (self.clock)() } else { 0 };
        match Self::decode(ttl, &stored, now) {
            Some(v) => Ok(Some(v.to_vec())),
            None => {
                self.backend.delete(key)?;
                Ok(None)
            }
        }
    }

    // ---- value state ----

    /// The current key's value of value state `id`.
    pub fn value_get(&mut self, id: StateId) -> Result<Option<Vec<u8>>, StateError> {
        self.get_entry(id, StateKind::Value, &[])
    }

    /// Sets the current key's value of value state `id`.
    pub fn value_set(&mut self, id: StateId, value: &[u8]) -> Result<(), StateError> {
        self.put_entry(id, StateKind::Value, &[], value)
    }

    /// Removes the current key's entries of state `id` (any kind).
    pub fn clear(&mut self, id: StateId) -> Result<(), StateError> {
        let kind = self.declared(id)?.kind;
        self.with_key(id, &[], |s, k| match kind {
            StateKind::Map => s.backend.delete_range(k, &prefix_end(k)),
            _ => s.backend.delete(k),
        })
    }

    // ---- map state ----

    /// The value under `user_key` in the current key's map state `id`.
    pub fn map_get(&mut self, id: StateId, user_key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.get_entry(id, StateKind::Map, user_key)
    }

    /// Puts `user_key -> value` into the current key's map state `id`.
    pub fn map_put(
        &mut self,
        id: StateId,
        user_key: &[u8],
        value: &[u8],
    ) -> Result<(), StateError> {
        self.put_entry(id, StateKind::Map, user_key, value)
    }

    /// Removes `user_key` from the current key's map state `id`.
    pub fn map_remove(&mut self, id: StateId, user_key: &[u8]) -> Result<(), StateError> {
        self.desc(id, StateKind::Map)?;
        self.with_key(id, user_key, |s, k| s.backend.delete(k))
    }

    /// The live entries of the current key's map state `id`, in user-key byte order.
    pub fn map_entries(&mut self, id: StateId) -> Result<MapEntries, StateError> {
        let ttl = self.desc(id, StateKind::Map)?.ttl_ms;
        let now = if ttl.is_some() { (self.clock)() } else { 0 };
        self.with_key(id, &[], |s, prefix| {
            let (mut live, mut expired) = (Vec::new(), Vec::new());
            let n = prefix.len();
            s.backend.scan(prefix, &prefix_end(prefix), &mut |k, v| {
                match Self::decode(ttl, v, now) {
                    Some(v) => live.push((k[n..].to_vec(), v.to_vec())),
                    None => expired.push(k.to_vec()),
                }
                true
            })?;
            for k in expired {
                s.backend.delete(&k)?;
            }
            Ok(live)
        })
    }

    // ---- list state ----

    /// The live elements of the current key's list state `id`, oldest first.
    pub fn list_get(&mut self, id: StateId) -> Result<Vec<Vec<u8>>, StateError> {
        let ttl = self.desc(id, StateKind::List)?.ttl_ms;
        self.with_key(id, &[], |s, k| {
            let Some(stored) = s.backend.get(k)? else {
                return Ok(Vec::new());
            };
            let now = if ttl.is_some() { (s.clock)() } else { 0 };
            let (live, dropped) = Self::live_elements(ttl, &stored, now)?;
            if dropped {
                s.write_list(k, ttl, &live, true)?;
            }
            Ok(live.into_iter().map(|(_, v)| v.to_vec()).collect())
        })
    }

    /// Splits a stored list into its live elements `(expiry, payload)`; also says whether
    /// any expired.
    fn live_elements(
        ttl: Option<i64>,
        stored: &[u8],
        now: i64,
    ) -> Result<LiveElements<'_>, StateError> {
        let bad = || StateError("a stored list is malformed".into());
        let (mut at, mut out, mut dropped) = (0, Vec::new(), false);
        while at < stored.len() {
            let expiry = if ttl.is_some() {
                let e = i64::from_le_bytes(
                    stored
                        .get(at..at + 8)
                        .ok_or_else(bad)?
                        .try_into()
                        .expect("8"),
                );
                at += 8;
                e
            } else {
                NEVER
            };
            let len = u32::from_le_bytes(
                stored
                    .get(at..at + 4)
                    .ok_or_else(bad)?
                    .try_into()
                    .expect("4"),
            ) as usize;
            let v = stored.get(at + 4..at + 4 + len).ok_or_else(bad)?;
            at += 4 + len;
            if expiry > now {
                out.push((expiry, v));
            } else {
                dropped = true;
            }
        }
        Ok((out, dropped))
    }

    /// Appends one list element as stored: its expiry (when the state has a TTL), its
    /// length (u32 LE) and its bytes. [`KeyedStateStore::live_elements`] reads them.
    fn push_element(out: &mut Vec<u8>, expiry: Option<i64>, value: &[u8]) {
        if let Some(e) = expiry {
            out.extend_from_slice(&e.to_le_bytes());
        }
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }

    /// Stores `elements` as the list under `k` (none: removes it), each with its own
    /// expiry if `keep_expiry`, else all written fresh.
    fn write_list(
        &mut self,
        k: &[u8],
        ttl: Option<i64>,
        elements: &[(i64, &[u8])],
        keep_expiry: bool,
    ) -> Result<(), StateError> {
        if elements.is_empty() {
            return self.backend.delete(k);
        }
        let fresh = self.fresh_expiry(ttl);
        let mut out = Vec::new();
        for (expiry, v) in elements {
            Self::push_element(
                &mut out,
                fresh.map(|f| if keep_expiry { *expiry } else { f }),
                v,
            );
        }
        self.backend.put(k, &out)
    }

    /// Appends `value` to the current key's list state `id`.
    pub fn list_append(&mut self, id: StateId, value: &[u8]) -> Result<(), StateError> {
        let ttl = self.desc(id, StateKind::List)?.ttl_ms;
        let expiry = self.fresh_expiry(ttl);
        self.with_key(id, &[], |s, k| {
            let mut stored = s.backend.get(k)?.unwrap_or_default();
            Self::push_element(&mut stored, expiry, value);
            s.backend.put(k, &stored)
        })
    }

    /// Replaces the current key's list state `id` with `values` (all freshly written).
    pub fn list_set(&mut self, id: StateId, values: &[&[u8]]) -> Result<(), StateError> {
        let ttl = self.desc(id, StateKind::List)?.ttl_ms;
        let elements: Vec<(i64, &[u8])> = values.iter().map(|v| (0, *v)).collect();
        self.with_key(id, &[], |s, k| s.write_list(k, ttl, &elements, false))
    }

    // ---- timers ----

    fn timer_state(domain: TimeDomain) -> u16 {
        match domain {
            TimeDomain::EventTime => EVENT_TIMERS,
            TimeDomain::ProcessingTime => PROCESSING_TIMERS,
        }
    }

    /// The due-order index of `domain`'s timers.
    fn timers(&mut self, domain: TimeDomain) -> &mut BTreeSet<(i64, Vec<u8>)> {
        match domain {
            TimeDomain::EventTime => &mut self.event_timers,
            TimeDomain::ProcessingTime => &mut self.processing_timers,
        }
    }

    /// Order-preserving encoding of a time (sign bit flipped, big-endian).
    fn time_bytes(time: i64) -> [u8; 8] {
        ((time as u64) ^ (1 << 63)).to_be_bytes()
    }

    /// Registers a timer for the current key at `time` (ms); registering the same timer
    /// twice keeps one, as in Flink.
    pub fn register_timer(&mut self, domain: TimeDomain, time: i64) -> Result<(), StateError> {
        self.with_key(
            Self::timer_state(domain),
            &Self::time_bytes(time),
            |s, k| s.backend.put(k, &[]),
        )?;
        let entry = (time, self.key.clone());
        self.timers(domain).insert(entry);
        Ok(())
    }

    /// Deletes the current key's timer at `time`, if there is one.
    pub fn delete_timer(&mut self, domain: TimeDomain, time: i64) -> Result<(), StateError> {
        self.with_key(
            Self::timer_state(domain),
            &Self::time_bytes(time),
            |s, k| s.backend.delete(k),
        )?;
        let entry = (time, self.key.clone());
        self.timers(domain).remove(&entry);
        Ok(())
    }

    /// The time of the earliest timer of `domain`, if any.
    pub fn next_timer(&self, domain: TimeDomain) -> Option<i64> {
        match domain {
            TimeDomain::EventTime => self.event_timers.first(),
            TimeDomain::ProcessingTime => self.processing_timers.first(),
        }
        .map(|(t, _)| *t)
    }

    /// Removes and returns the timers of `domain` due at `time` (those `<= time`), in
    /// time order (then key order), at most `max` of them. Each fires once: it is gone
    /// from the store, so a snapshot taken after this does not hold it.
    pub fn pop_due_timers(
        &mut self,
        domain: TimeDomain,
        time: i64,
        max: usize,
    ) -> Result<Vec<Timer>, StateError> {
        let mut due = Vec::new();
        while due.len() < max {
            let set = self.timers(domain);
            if set.first().is_none_or(|(t, _)| *t > time) {
                break;
            }
            let (t, key) = set.pop_first().expect("checked");
            let mut k = Vec::with_capacity(key.len() + 16);
            let kg = key_group(&key, self.max_parallelism) as u16;
            write_prefix(&mut k, kg, Self::timer_state(domain), &key);
            k.extend_from_slice(&Self::time_bytes(t));
            self.backend.delete(&k)?;
            due.push(Timer { time: t, key });
        }
        Ok(due)
    }

    /// Rebuilds the timer indexes from the backend: the timers of the key groups this
    /// store owns. Timer entries sort after every user state within a key group (their
    /// state ids are the largest), so this reads one short key range per key group, not
    /// the whole state (which, on RocksDB, may be far larger than memory).
    fn index_timers(&mut self) -> Result<(), StateError> {
        let (mut event, mut processing) = (BTreeSet::new(), BTreeSet::new());
        let mut bad = false;
        for kg in self.key_groups.clone() {
            let Ok(kg) = u16::try_from(kg) else { break };
            let mut start = kg.to_be_bytes().to_vec();
            let end = prefix_end(&start);
            start.extend_from_slice(&EVENT_TIMERS.to_be_bytes());
            self.backend.scan(&start, &end, &mut |k, _| {
                match parse(k) {
                    Some((_, id, key, suffix)) if id == EVENT_TIMERS || id == PROCESSING_TIMERS => {
                        match <[u8; 8]>::try_from(suffix) {
                            Ok(b) => {
                                let t = (u64::from_be_bytes(b) ^ (1 << 63)) as i64;
                                let set = if id == EVENT_TIMERS {
                                    &mut event
                                } else {
                                    &mut processing
                                };
                                set.insert((t, key.to_vec()));
                            }
                            Err(_) => bad = true,
                        }
                    }
                    _ => bad = true,
                }
                true
            })?;
        }
        if bad {
            return Err(StateError(
                "restored state: a timer entry is malformed (not in Sluice's key layout)".into(),
            ));
        }
        self.event_timers = event;
        self.processing_timers = processing;
        Ok(())
    }

    /// Number of timers registered.
    pub fn timer_count(&self) -> usize {
        self.event_timers.len() + self.processing_timers.len()
    }

    // ---- whole-state access (snapshots of operators that keep a working copy) ----

    /// Removes every entry of state `id`, for all keys of this store's key groups.
    pub fn clear_all_keys(&mut self, id: StateId) -> Result<(), StateError> {
        for kg in self.key_groups.clone() {
            let (start, end) = Self::state_range(kg, id);
            self.backend.delete_range(&start, &end)?;
        }
        Ok(())
    }

    /// Calls `f(key, suffix, stored value)` for every entry of state `id` in this store's
    /// key groups (the suffix is a map entry's user key; values are as stored, with the
    /// expiry prefix of TTL states).
    pub fn for_each_entry(
        &mut self,
        id: StateId,
        mut f: impl FnMut(&[u8], &[u8], &[u8]),
    ) -> Result<(), StateError> {
        for kg in self.key_groups.clone() {
            let (start, end) = Self::state_range(kg, id);
            self.backend.scan(&start, &end, &mut |k, v| {
                if let Some((_, _, key, suffix)) = parse(k) {
                    f(key, suffix, v);
                }
                true
            })?;
        }
        Ok(())
    }

    fn state_range(kg: usize, id: StateId) -> (Vec<u8>, Vec<u8>) {
        let mut start = (kg as u16).to_be_bytes().to_vec();
        start.extend_from_slice(&id.to_be_bytes());
        let end = prefix_end(&start);
        (start, end)
    }

    // ---- TTL cleanup ----

    /// Examines up to `budget` entries after where the last call stopped (wrapping
    /// around), removing expired values and map entries and dropping expired list
    /// elements. Returns how many entries were removed or rewritten.
    pub fn cleanup_expired(&mut self, budget: usize) -> Result<usize, StateError> {
        if budget == 0 || !self.states.iter().any(|s| s.ttl_ms.is_some()) {
            return Ok(0);
        }
        let (start, end) = key_groups_range(self.key_groups.clone());
        let from = self.cleanup_cursor.take().unwrap_or_else(|| start.clone());
        let now = (self.clock)();
        let states = &self.states;
        let (mut seen, mut last) = (0usize, None::<Vec<u8>>);
        let mut rewrites: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        self.backend.scan(&from, &end, &mut |k, v| {
            seen += 1;
            last = Some(k.to_vec());
            if let Some((_, id, _, _)) = parse(k)
                && let Some(d) = states.get(id as usize)
                && d.ttl_ms.is_some()
            {
                match d.kind {
                    StateKind::List => {
                        if let Ok((live, true)) = Self::live_elements(d.ttl_ms, v, now) {
                            let mut out = Vec::new();
                            for (e, v) in &live {
                                Self::push_element(&mut out, Some(*e), v);
                            }
                            rewrites.push((k.to_vec(), (!live.is_empty()).then_some(out)));
                        }
                    }
                    _ => {
                        if Self::decode(d.ttl_ms, v, now).is_none() {
                            rewrites.push((k.to_vec(), None));
                        }
                    }
                }
            }
            seen < budget
        })?;
        // Resume after the last key seen, or from the start once the end was reached.
        self.cleanup_cursor = match last {
            Some(mut k) if seen >= budget => {
                k.push(0);
                Some(k)
            }
            _ => None,
        };
        let n = rewrites.len();
        for (k, v) in rewrites {
            match v {
                Some(v) => self.backend.put(&k, &v)?,
                None => self.backend.delete(&k)?,
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{HeapKvBackend, KvBackendFactory};

    fn store() -> KeyedStateStore {
        KeyedStateStore::new(Box::new(HeapKvBackend::new()), 16, 0..16, Arc::new(|| 0)).unwrap()
    }

    fn desc(name: &str, kind: StateKind, ttl_ms: Option<i64>) -> StateDescriptor {
        StateDescriptor {
            name: name.into(),
            kind,
            ttl_ms,
        }
    }

    /// A rollback undoes the state writes and the timers registered, deleted and fired
    /// since `begin`; a commit keeps them.
    #[test]
    fn rollback_undoes_state_and_timers_since_begin() {
        let mut s = store();
        let v = s.declare(desc("v", StateKind::Value, None)).unwrap();
        let l = s.declare(desc("l", StateKind::List, None)).unwrap();
        s.set_current_key(b"k1");
        s.value_set(v, b"one").unwrap();
        s.register_timer(TimeDomain::EventTime, 10).unwrap();
        s.register_timer(TimeDomain::EventTime, 20).unwrap();

        s.begin();
        s.value_set(v, b"two").unwrap();
        s.list_append(l, b"x").unwrap();
        s.delete_timer(TimeDomain::EventTime, 20).unwrap();
        s.register_timer(TimeDomain::EventTime, 5).unwrap();
        let fired = s.pop_due_timers(TimeDomain::EventTime, 10, 10).unwrap();
        assert_eq!(fired.len(), 2);
        s.set_current_key(b"k2");
        s.value_set(v, b"other").unwrap();
        s.rollback_to(0).unwrap();
        s.commit();

        assert_eq!(s.value_get(v).unwrap(), None);
        s.set_current_key(b"k1");
        assert_eq!(s.value_get(v).unwrap().as_deref(), Some(&b"one"[..]));
        assert!(s.list_get(l).unwrap().is_empty());
        assert_eq!(s.timer_count(), 2);
        assert_eq!(s.next_timer(TimeDomain::EventTime), Some(10));
        let due: Vec<i64> = s
            .pop_due_timers(TimeDomain::EventTime, 100, 10)
            .unwrap()
            .iter()
            .map(|t| t.time)
            .collect();
        assert_eq!(due, [10, 20]);

        s.begin();
        s.value_set(v, b"three").unwrap();
        s.commit();
        s.rollback_to(0).unwrap();
        assert_eq!(s.value_get(v).unwrap().as_deref(), Some(&b"three"[..]));
    }

    /// A new version of an operator declares the restored states in another order: each
    /// name gets its old id (part of every stored key), so the values are found.
    #[test]
    fn restored_states_keep_their_ids_whatever_the_declaration_order() {
        let mut old = store();
        let a = old.declare(desc("a", StateKind::Value, None)).unwrap();
        let b = old
            .declare(desc("b", StateKind::Value, Some(1000)))
            .unwrap();
        old.set_current_key(b"k");
        old.value_set(a, b"va").unwrap();
        old.value_set(b, b"vb").unwrap();
        let table = old.states().to_vec();
        let dir = tempfile::tempdir().unwrap();
        let snap = old.backend_mut().snapshot(dir.path()).unwrap();
        let files: Vec<_> = snap
            .files
            .iter()
            .map(|f| (f.name.clone(), f.path.clone()))
            .collect();
        let backend = crate::state::HeapKvBackendFactory
            .restore(dir.path(), &files)
            .unwrap();
        let mut new = KeyedStateStore::new(backend, 16, 0..16, Arc::new(|| 0)).unwrap();
        new.adopt_states(table.clone());
        let c = new.declare(desc("c", StateKind::List, None)).unwrap();
        // The TTL's length may change; its presence may not.
        let b2 = new
            .declare(desc("b", StateKind::Value, Some(5000)))
            .unwrap();
        let a2 = new.declare(desc("a", StateKind::Value, None)).unwrap();
        assert_eq!((a2, b2, c), (a, b, 2));
        new.set_current_key(b"k");
        assert_eq!(new.value_get(a2).unwrap().as_deref(), Some(&b"va"[..]));
        assert_eq!(new.value_get(b2).unwrap().as_deref(), Some(&b"vb"[..]));

        let mut other =
            KeyedStateStore::new(Box::new(HeapKvBackend::new()), 16, 0..16, Arc::new(|| 0))
                .unwrap();
        other.adopt_states(table);
        let e = other.declare(desc("a", StateKind::Map, None)).unwrap_err();
        assert!(
            e.0.contains("state 'a' was restored as Value state") && e.0.contains("Map"),
            "{e}"
        );
        let e = other
            .declare(desc("b", StateKind::Value, None))
            .unwrap_err();
        assert!(e.0.contains("with a time-to-live"), "{e}");
    }
}
