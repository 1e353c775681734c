//! An undo journal over a [`KvBackend`]: while a journal is open, every write records
//! the value it replaces, so that the writes of a guest call that failed can be undone
//! before the call is retried on part of its batch or skipped (the failure policies of
//! `on_failure`). A transaction's undo log, as in a database; closed, it costs a branch
//! per write.

use super::backend::{BackendSnapshot, KvBackend, ScanFn, StateError};
use std::path::Path;

/// A key and the value it had before a write (`None`: absent).
type Undo = (Vec<u8>, Option<Vec<u8>>);

/// A [`KvBackend`] whose writes can be undone back to [`Journaled::begin`].
pub struct Journaled {
    inner: Box<dyn KvBackend>,
    /// While open: each write's key and the value it replaced, in write order.
    undo: Option<Vec<Undo>>,
}

impl Journaled {
    /// `inner`, with no journal open.
    pub fn new(inner: Box<dyn KvBackend>) -> Self {
        Journaled { inner, undo: None }
    }

    /// Opens a journal, unless one is open: writes from now on can be undone by
    /// [`Journaled::rollback_to`].
    pub fn begin(&mut self) {
        self.undo.get_or_insert_with(Vec::new);
    }

    /// A point to roll back to: the writes journaled so far (0 when none is open).
    pub fn savepoint(&self) -> usize {
        self.undo.as_ref().map_or(0, Vec::len)
    }

    /// Closes the journal, keeping the writes.
    pub fn commit(&mut self) {
        self.undo = None;
    }

    /// Whether a journal is open.
    pub fn is_open(&self) -> bool {
        self.undo.is_some()
    }

    /// Undoes the writes made since `savepoint` (from [`Journaled::savepoint`]), newest
    /// first; the journal stays open. Nothing happens when none is open.
    ///
    /// Errors: the backend failed while restoring a value (the state is then partly
    /// restored, and the caller must fail the job).
    pub fn rollback_to(&mut self, savepoint: usize) -> Result<(), StateError> {
        let Some(undo) = self.undo.as_mut() else {
            return Ok(());
        };
        let undone = undo.split_off(savepoint.min(undo.len()));
        for (key, old) in undone.into_iter().rev() {
            match old {
                Some(v) => self.inner.put(&key, &v)?,
                None => self.inner.delete(&key)?,
            }
        }
        Ok(())
    }

    /// Records `key`'s current value, when a journal is open.
    fn remember(&mut self, key: &[u8]) -> Result<(), StateError> {
        if self.undo.is_some() {
            let old = self.inner.get(key)?;
            if let Some(undo) = self.undo.as_mut() {
                undo.push((key.to_vec(), old));
            }
        }
        Ok(())
    }
}

impl KvBackend for Journaled {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.inner.get(key)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.remember(key)?;
        self.inner.put(key, value)
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StateError> {
        self.remember(key)?;
        self.inner.delete(key)
    }

    fn delete_range(&mut self, start: &[u8], end: &[u8]) -> Result<(), StateError> {
        if let Some(undo) = self.undo.as_mut() {
            self.inner.scan(start, end, &mut |k, v| {
                undo.push((k.to_vec(), Some(v.to_vec())));
                true
            })?;
        }
        self.inner.delete_range(start, end)
    }

    fn scan(&mut self, start: &[u8], end: &[u8], f: &mut ScanFn<'_>) -> Result<(), StateError> {
        self.inner.scan(start, end, f)
    }

    fn snapshot(&mut self, dir: &Path) -> Result<BackendSnapshot, StateError> {
        self.inner.snapshot(dir)
    }

    fn approximate_bytes(&self) -> u64 {
        self.inner.approximate_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::HeapKvBackend;

    fn all(b: &mut Journaled) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        b.scan(b"", &[0xff; 4], &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn rollback_restores_every_write_since_begin_and_commit_keeps_them() {
        let mut b = Journaled::new(Box::new(HeapKvBackend::default()));
        b.put(b"a", b"1").unwrap();
        b.put(b"b", b"2").unwrap();
        b.put(b"c1", b"3").unwrap();
        b.put(b"c2", b"4").unwrap();
        let before = all(&mut b);

        b.begin();
        b.put(b"a", b"changed").unwrap();
        b.put(b"a", b"twice").unwrap();
        b.delete(b"b").unwrap();
        b.put(b"new", b"x").unwrap();
        let middle = b.savepoint();
        let at_middle = all(&mut b);
        b.delete_range(b"c", b"d").unwrap();
        b.put(b"c1", b"back").unwrap();
        assert_ne!(all(&mut b), at_middle);
        b.rollback_to(middle).unwrap();
        assert_eq!(all(&mut b), at_middle);
        b.rollback_to(0).unwrap();
        assert_eq!(all(&mut b), before);
        assert!(b.is_open());
        b.commit();

        b.begin();
        b.put(b"a", b"kept").unwrap();
        b.commit();
        b.rollback_to(0).unwrap();
        assert_eq!(b.get(b"a").unwrap().as_deref(), Some(&b"kept"[..]));
    }
}
