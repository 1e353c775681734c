//! Failure policies: what a failed guest call (a trap, a limit hit, a returned error, a
//! broken output) leads to.
//!
//! - `fail` (the default): the error fails the job, and its restart strategy applies.
//! - `skip`: the call's input (the rows of the batch it was given, or the timers) is
//!   dropped and counted; the job goes on.
//! - `dead-letter`: the call's input is bisected to find the records that make it fail,
//!   and exactly those go to the `dead-letter` side output with the error, while the rest
//!   are processed (Kafka Connect's `errors.tolerance=all` with a dead-letter queue, made
//!   exact by bisection).
//!
//! Every failed call is reported to the runtime ([`Collector::report_failure`]): counted
//! by kind, and, when handled, kept for the job's exception history.
//!
//! A failed call must leave no trace: its output is dropped (nothing is added to the
//! outputs before the whole call is checked), the keyed state it wrote is rolled back
//! (the store journals writes while a tolerant operator runs, see
//! [`KeyedStateStore::begin`](sluice_core::state::KeyedStateStore::begin)), and the
//! instance, whose memory may be corrupt, is replaced by a fresh one that `init` runs in
//! again. Bisection: the rows `pos..end` failed, so the first half is tried, then its
//! first half, until a prefix succeeds (its rows are done, and the remainder is tried
//! again as a whole) or a single row fails (that row is dead-lettered). One bad record
//! in `n` costs O(log² n) calls; each other record is processed once in the output.

use super::{Outputs, Segment, WasmOperator};
use crate::bindings::sluice::operator::types;
use sluice_core::batch::Batch;
use sluice_core::operator::{
    Collector, FailureHandling, FailureKind, OperatorError, OperatorFailure,
};
use sluice_core::state::{TimeDomain, Timer};

/// What a failed call of an operator leads to (`on_failure` in the job spec).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Fail the job (its restart strategy applies). The default.
    #[default]
    Fail,
    /// Drop the input of the failed call, count it, go on.
    Skip,
    /// Find the records that fail by bisection and send them to the `dead-letter` side
    /// output with the error; process the rest.
    DeadLetter,
}

use sluice_core::operator::DEAD_LETTER_OUTPUT as DEAD_LETTER;

impl std::str::FromStr for FailurePolicy {
    type Err = String;

    /// `fail`, `skip` or `dead-letter`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fail" => Ok(FailurePolicy::Fail),
            "skip" => Ok(FailurePolicy::Skip),
            "dead-letter" => Ok(FailurePolicy::DeadLetter),
            other => Err(format!(
                "unknown failure policy '{other}' (use fail, skip or dead-letter)"
            )),
        }
    }
}

impl WasmOperator {
    /// Counts a failed call that the operator returns (policy `fail`), once.
    pub(super) fn count_failure<T>(
        &mut self,
        result: &Result<T, OperatorError>,
        out: &mut dyn Collector,
    ) {
        if let (Err(e), Some(kind)) = (result, self.last_failure.take()) {
            out.report_failure(OperatorFailure {
                time: sluice_core::time::now_ms(),
                kind,
                handling: FailureHandling::Failed,
                message: e.to_string(),
                key: None,
            });
        }
    }

    /// Undoes what a failed call did: its keyed state writes (back to `savepoint`), and
    /// its instance (a fresh one, initialized). Errors: the state cannot be restored, or
    /// the new instance fails to start; both fail the job.
    fn recover(&mut self, savepoint: usize) -> Result<(), OperatorError> {
        if let Some(store) = self.keyed_store_mut() {
            store
                .rollback_to(savepoint)
                .map_err(|e| self.fault(format!("cannot roll back its state: {e}")))?;
        }
        self.start_instance()
    }

    /// The keyed store, wherever it is (the instance, or parked after a fault).
    fn keyed_store_mut(&mut self) -> Option<&mut sluice_core::state::KeyedStateStore> {
        match self.instance.as_mut() {
            Some(inst) if inst.store.data().keyed.is_some() => inst.store.data_mut().keyed.as_mut(),
            _ => self.parked_keyed.as_mut(),
        }
    }

    /// Opens the state journal; the savepoint to roll a failed call back to.
    fn journal(&mut self) -> usize {
        match self.keyed_store_mut() {
            Some(store) => {
                store.begin();
                store.savepoint()
            }
            None => 0,
        }
    }

    /// Closes the state journal: what is done is kept.
    pub(super) fn end_journal(&mut self) {
        if let Some(store) = self.keyed_store_mut() {
            store.commit();
        }
    }

    /// [`WasmOperator::run_segment`] under a tolerant policy: a failed call is undone,
    /// then its rows are skipped, or bisected down to the rows that fail, which are
    /// dead-lettered. Returns the rows done and the marks passed, as `run_segment`.
    pub(super) fn run_segment_tolerant(
        &mut self,
        seg: Segment<'_>,
        outs: &mut Outputs,
    ) -> Result<(usize, usize), OperatorError> {
        let mut seg = seg;
        loop {
            let savepoint = self.journal();
            let error = match self.run_segment(&seg, outs) {
                Ok(done) => return Ok(done),
                Err(e) => e,
            };
            let kind = self.last_failure.take().unwrap_or(FailureKind::Error);
            self.recover(savepoint)?;
            let rows = seg.end - seg.pos;
            match self.policy {
                FailurePolicy::Fail => return Err(error),
                FailurePolicy::Skip => {
                    // The rows are dropped; the marks among them still pass.
                    let passed = seg
                        .marks
                        .iter()
                        .take_while(|m| (m.row as usize) < seg.end)
                        .count();
                    for m in &seg.marks[..passed] {
                        self.note_watermark(m.watermark);
                        outs.push_mark(m.watermark);
                    }
                    self.report(
                        outs,
                        kind,
                        FailureHandling::Skipped {
                            records: rows as u64,
                        },
                        &error,
                        None,
                    );
                    return Ok((rows, passed));
                }
                FailurePolicy::DeadLetter if rows == 1 => {
                    let row = seg.pos;
                    let key = key_of(seg.full, row).to_vec();
                    let record = self.dead_letter_record(
                        &error,
                        seg.full.timestamps[row],
                        &key,
                        Some(value_of(seg.full, row)),
                        None,
                    );
                    outs.append_side(DEAD_LETTER.to_string(), record);
                    self.report(outs, kind, FailureHandling::DeadLettered, &error, Some(key));
                    return Ok((1, 0));
                }
                FailurePolicy::DeadLetter => seg.end = seg.pos + rows / 2,
            }
        }
    }

    /// `fire` under a tolerant policy: the timers (already taken from the store) are
    /// delivered in one call; if it fails, it is undone and, for `dead-letter`, the
    /// timers are delivered one at a time (each failing one dead-lettered); for `skip`,
    /// they are dropped.
    pub(super) fn fire_tolerant(
        &mut self,
        due: Vec<Timer>,
        domain: TimeDomain,
        outs: &mut Outputs,
    ) -> Result<(), OperatorError> {
        let savepoint = self.journal();
        let error = match self.fire_call(&due, domain, outs) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let kind = self.last_failure.take().unwrap_or(FailureKind::Error);
        self.recover(savepoint)?;
        if self.policy == FailurePolicy::Skip || due.len() == 1 {
            let handling = if self.policy == FailurePolicy::Skip {
                FailureHandling::Skipped {
                    records: due.len() as u64,
                }
            } else {
                let t = &due[0];
                let record =
                    self.dead_letter_record(&error, t.time, &t.key, None, Some((domain, t.time)));
                outs.append_side(DEAD_LETTER.to_string(), record);
                FailureHandling::DeadLettered
            };
            let key = (due.len() == 1).then(|| due[0].key.clone());
            self.report(outs, kind, handling, &error, key);
            return Ok(());
        }
        for t in due {
            self.fire_tolerant(vec![t], domain, outs)?;
        }
        Ok(())
    }

    fn note_watermark(&mut self, watermark: i64) {
        if let Some(hs) = self.live_state() {
            hs.watermark = hs.watermark.max(watermark);
        }
    }

    fn report(
        &self,
        outs: &mut Outputs,
        kind: FailureKind,
        handling: FailureHandling,
        error: &OperatorError,
        key: Option<Vec<u8>>,
    ) {
        tracing::warn!("{error} ({handling:?} under its failure policy)");
        outs.failures.push(OperatorFailure {
            time: sluice_core::time::now_ms(),
            kind,
            handling,
            message: error.to_string(),
            key,
        });
    }

    /// A one-event batch for the `dead-letter` side output: the failed record's
    /// timestamp and key, and as value a JSON object with the error and where it
    /// happened, and the record's value (as JSON when it is JSON, else as a string when
    /// it is UTF-8, else as `{"base64": ...}`) or the timer.
    fn dead_letter_record(
        &self,
        error: &OperatorError,
        timestamp: i64,
        key: &[u8],
        value: Option<&[u8]>,
        timer: Option<(TimeDomain, i64)>,
    ) -> Batch {
        let (operator, subtask) = self
            .identity
            .as_ref()
            .map_or((String::new(), 0), |c| (c.operator_id.clone(), c.subtask));
        let mut envelope = serde_json::json!({
            "error": error.to_string(),
            "operator": operator,
            "subtask": subtask,
            "timestamp": timestamp,
            "key": bytes_json(key),
        });
        if let Some(v) = value {
            envelope["value"] = bytes_json(v);
        }
        if let Some((domain, time)) = timer {
            envelope["timer"] = serde_json::json!({
                "domain": match domain {
                    TimeDomain::EventTime => "event-time",
                    TimeDomain::ProcessingTime => "processing-time",
                },
                "time": time,
            });
        }
        let mut b = Batch::new();
        b.push(timestamp, key, envelope.to_string().as_bytes());
        b
    }
}

/// Bytes as JSON: the JSON they hold, else a string (UTF-8), else `{"base64": ...}`.
fn bytes_json(b: &[u8]) -> serde_json::Value {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(b) {
        return v;
    }
    match std::str::from_utf8(b) {
        Ok(s) => serde_json::Value::String(s.to_string()),
        Err(_) => serde_json::json!({ "base64": base64(b) }),
    }
}

fn base64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Row `row`'s key in a batch passed to the guest.
fn key_of(b: &types::EventBatch, row: usize) -> &[u8] {
    &b.key_data[b.key_offsets[row] as usize..b.key_offsets[row + 1] as usize]
}

/// Row `row`'s value in a batch passed to the guest.
fn value_of(b: &types::EventBatch, row: usize) -> &[u8] {
    &b.value_data[b.value_offsets[row] as usize..b.value_offsets[row + 1] as usize]
}
