//! The checkpoint coordinator of a running job: triggers checkpoints and savepoints at
//! the sources, collects the subtasks' acknowledgements (after their uploads), writes the
//! metadata that completes a checkpoint, notifies the subtasks (sinks commit), and
//! deletes checkpoints beyond the retained number.

use super::metadata::{CheckpointMetadata, FORMAT, SnapshotKind, SubtaskState, VertexState};
use super::upload::{LocalSnapshot, upload};
use super::{CheckpointConfig, checkpoint_folder, discard_checkpoint, snapshot_folder};
use crate::time::now_ms;
use crossbeam_channel::{Receiver, Sender, select, unbounded};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A checkpoint barrier: what the sources inject and every subtask aligns on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Barrier {
    /// The checkpoint or savepoint id.
    pub id: u64,
    /// Checkpoint or savepoint.
    pub kind: SnapshotKind,
    /// Stop the job once it completes (stop-with-savepoint): sources emit nothing after
    /// it, and every subtask exits after it committed.
    pub stop: bool,
}

/// What the coordinator tells a subtask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    /// Sources only: snapshot and inject this barrier.
    Trigger(Barrier),
    /// Checkpoint `id` is complete: commit.
    Complete(u64),
    /// Checkpoint `id` was abandoned (a stopped source resumes).
    Abort(u64),
}

/// A subtask's acknowledgement, sent by the uploader: its operators' state handles by
/// vertex id and the bytes it uploaded, or why the upload failed.
pub(crate) struct Ack {
    pub checkpoint: u64,
    pub result: Result<(Vec<(String, SubtaskState)>, u64), String>,
}

/// A request from the job's owner.
pub(crate) enum Request {
    /// Take a savepoint (and stop the job after it, if `stop`); the reply is its folder.
    Savepoint {
        stop: bool,
        reply: Sender<Result<String, String>>,
    },
}

/// What the coordinator knows of the job.
pub(crate) struct CoordinatorSetup {
    pub job: String,
    pub max_parallelism: usize,
    pub config: CheckpointConfig,
    /// `(vertex id, parallelism)` of every vertex.
    pub vertices: Vec<(String, usize)>,
    /// Control channel of every source subtask.
    pub sources: Vec<Sender<Control>>,
    /// Control channel of every chain subtask (sources included).
    pub subtasks: Vec<Sender<Control>>,
    /// The checkpoint the job was restored from, if any (retained, and the next id
    /// follows it).
    pub restored: Option<CheckpointMetadata>,
    /// Older complete checkpoints of the job found in storage, newest first, to delete
    /// beyond the retained number once a new one completes.
    pub older: Vec<u64>,
    /// The job's hot-swaps: armed with each barrier triggered, and a barrier triggered
    /// at once when one is requested.
    pub swaps: std::sync::Arc<crate::runtime::OperatorSwaps>,
}

/// Shared with the runtime.
pub(crate) struct CoordinatorShared {
    /// Source subtasks still running.
    pub running_sources: AtomicUsize,
    /// Stop: the job is over.
    pub shutdown: AtomicBool,
    /// Completed checkpoints and their durations, for the run summary.
    pub history: std::sync::Mutex<Vec<CheckpointStats>>,
}

/// Figures of one completed checkpoint or savepoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Its id.
    pub id: u64,
    /// Checkpoint or savepoint.
    pub kind: SnapshotKind,
    /// From trigger to metadata written.
    pub duration: Duration,
    /// Bytes uploaded for it (files reused from earlier checkpoints not counted).
    pub uploaded_bytes: u64,
    /// Bytes of state it references in all.
    pub state_bytes: u64,
    /// When it completed (its metadata was written), ms since the epoch.
    pub completed_at: i64,
}

/// Handles of a started coordinator.
pub(crate) struct Coordinator {
    pub requests: Sender<Request>,
    /// Held until [`Coordinator::shutdown`], so that the uploaders (and with them the
    /// acknowledgement channel the coordinator selects on) outlive the subtasks.
    uploads: Sender<LocalSnapshot>,
    pub shared: Arc<CoordinatorShared>,
    threads: Vec<JoinHandle<()>>,
}

impl CoordinatorShared {
    /// For a job with `sources` source subtasks.
    pub fn new(sources: usize) -> Self {
        CoordinatorShared {
            running_sources: AtomicUsize::new(sources),
            shutdown: AtomicBool::new(false),
            history: Default::default(),
        }
    }
}

impl Coordinator {
    /// Starts the coordinator and its uploader threads, which take the subtasks'
    /// snapshots from `upload_rx`.
    pub fn start(
        setup: CoordinatorSetup,
        shared: Arc<CoordinatorShared>,
        uploads: Sender<LocalSnapshot>,
        upload_rx: Receiver<LocalSnapshot>,
    ) -> std::io::Result<Coordinator> {
        let (requests, request_rx) = unbounded();
        let (ack_tx, ack_rx) = unbounded();
        let mut threads = Vec::new();
        for i in 0..2 {
            let (rx, tx) = (upload_rx.clone(), ack_tx.clone());
            let storage = setup.config.storage.clone();
            let job = setup.job.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("uploader-{i}"))
                    .spawn(move || {
                        for snap in rx {
                            let checkpoint = snap.checkpoint;
                            let result = upload(storage.as_ref(), &job, snap);
                            let _ = tx.send(Ack { checkpoint, result });
                        }
                    })?,
            );
        }
        let sh = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("checkpoint-coordinator".into())
                .spawn(move || Run::new(setup, sh).run(request_rx, ack_rx))?,
        );
        Ok(Coordinator {
            requests,
            uploads,
            shared,
            threads,
        })
    }

    /// Stops the coordinator (the job is over) and waits for its threads.
    pub fn shutdown(self) {
        self.shared.shutdown.store(true, Relaxed);
        drop(self.requests);
        drop(self.uploads);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

struct Pending {
    barrier: Barrier,
    triggered: Instant,
    triggered_ms: i64,
    acks: usize,
    states: BTreeMap<String, Vec<SubtaskState>>,
    /// Bytes the acknowledged subtasks uploaded.
    uploaded_bytes: u64,
    reply: Option<Sender<Result<String, String>>>,
}

struct Run {
    s: CoordinatorSetup,
    shared: Arc<CoordinatorShared>,
    next_id: u64,
    pending: Option<Pending>,
    queued: VecDeque<Request>,
    retained: VecDeque<CheckpointMetadata>,
    last_end: Instant,
}

impl Run {
    fn new(mut s: CoordinatorSetup, shared: Arc<CoordinatorShared>) -> Run {
        let restored = s.restored.take();
        let next_id = restored
            .as_ref()
            .map_or(0, |m| m.id)
            .max(s.older.first().copied().unwrap_or(0))
            + 1;
        let mut retained = VecDeque::new();
        if let Some(m) = restored.filter(|m| m.kind == SnapshotKind::Checkpoint) {
            retained.push_back(m);
        }
        Run {
            s,
            shared,
            next_id,
            pending: None,
            queued: VecDeque::new(),
            retained,
            last_end: Instant::now(),
        }
    }

    fn run(mut self, requests: Receiver<Request>, acks: Receiver<Ack>) {
        let tick = Duration::from_millis(20);
        while !self.shared.shutdown.load(Relaxed) {
            select! {
                recv(requests) -> r => if let Ok(r) = r { self.queued.push_back(r) },
                recv(acks) -> a => if let Ok(a) = a { self.ack(a) },
                default(tick) => {}
            }
            self.step();
        }
        // The job is over: a pending savepoint cannot complete.
        if let Some(p) = self.pending.take()
            && let Some(reply) = p.reply
        {
            let _ = reply.send(Err("the job ended before the savepoint completed".into()));
        }
        for Request::Savepoint { reply, .. } in self.queued.drain(..) {
            let _ = reply.send(Err("the job ended before the savepoint was taken".into()));
        }
    }

    fn sources_running(&self) -> bool {
        self.shared.running_sources.load(Relaxed) == self.s.sources.len()
    }

    fn step(&mut self) {
        if let Some(p) = &self.pending {
            let why = if p.triggered.elapsed() > self.s.config.timeout {
                Some(format!(
                    "it did not complete within {:?}",
                    self.s.config.timeout
                ))
            } else if !self.sources_running() && !p.barrier.stop {
                Some("a source finished before every subtask took it".to_string())
            } else {
                None
            };
            if let Some(why) = why {
                self.abort(why);
            }
            return;
        }
        if let Some(Request::Savepoint { stop, reply }) = self.queued.pop_front() {
            if !self.sources_running() {
                let _ = reply.send(Err(
                    "cannot take a savepoint: a source of the job has finished".into(),
                ));
                return;
            }
            self.trigger(SnapshotKind::Savepoint, stop, Some(reply));
            return;
        }
        // A requested hot-swap happens at the next barrier: trigger it now.
        if self.sources_running() && self.s.swaps.any_requested() {
            self.trigger(SnapshotKind::Checkpoint, false, None);
            return;
        }
        // A zero interval: no periodic checkpoints (savepoints work either way).
        if !self.s.config.interval.is_zero()
            && self.sources_running()
            && self.last_end.elapsed() >= self.s.config.interval
        {
            self.trigger(SnapshotKind::Checkpoint, false, None);
        }
    }

    fn trigger(
        &mut self,
        kind: SnapshotKind,
        stop: bool,
        reply: Option<Sender<Result<String, String>>>,
    ) {
        let barrier = Barrier {
            id: self.next_id,
            kind,
            stop,
        };
        self.next_id += 1;
        tracing::debug!(id = barrier.id, ?kind, "triggering");
        self.s.swaps.arm(barrier.id);
        self.pending = Some(Pending {
            barrier,
            triggered: Instant::now(),
            triggered_ms: now_ms(),
            acks: 0,
            states: BTreeMap::new(),
            uploaded_bytes: 0,
            reply,
        });
        if self
            .s
            .sources
            .iter()
            .any(|c| c.send(Control::Trigger(barrier)).is_err())
        {
            self.abort("a source finished before it took the barrier".into());
        }
    }

    fn abort(&mut self, why: String) {
        let Some(p) = self.pending.take() else { return };
        let what = p.barrier.kind.name();
        tracing::warn!("{what} {} abandoned: {why}", p.barrier.id);
        for c in &self.s.subtasks {
            let _ = c.send(Control::Abort(p.barrier.id));
        }
        if let Some(reply) = p.reply {
            let _ = reply.send(Err(format!("{what} {} failed: {why}", p.barrier.id)));
        }
        self.last_end = Instant::now();
    }

    fn ack(&mut self, ack: Ack) {
        let Some(p) = self
            .pending
            .as_mut()
            .filter(|p| p.barrier.id == ack.checkpoint)
        else {
            return; // for an abandoned checkpoint
        };
        match ack.result {
            Err(e) => {
                self.abort(format!("a subtask could not upload its state: {e}"));
                return;
            }
            Ok((states, uploaded_bytes)) => {
                for (vertex, st) in states {
                    p.states.entry(vertex).or_default().push(st);
                }
                p.uploaded_bytes += uploaded_bytes;
            }
        }
        p.acks += 1;
        if p.acks == self.s.subtasks.len() {
            let p = self.pending.take().expect("pending");
            self.complete(p);
        }
    }

    fn complete(&mut self, p: Pending) {
        let b = p.barrier;
        let mut vertices = BTreeMap::new();
        for (id, parallelism) in &self.s.vertices {
            let mut subtasks = p.states.get(id).cloned().unwrap_or_default();
            subtasks.sort_by_key(|s| s.subtask);
            subtasks.retain(|s| s.keyed.is_some() || s.operator_state.is_some());
            vertices.insert(
                id.clone(),
                VertexState {
                    parallelism: *parallelism,
                    subtasks,
                },
            );
        }
        let meta = CheckpointMetadata {
            format: FORMAT,
            id: b.id,
            kind: b.kind,
            job: self.s.job.clone(),
            triggered_ms: p.triggered_ms,
            completed_ms: now_ms(),
            max_parallelism: self.s.max_parallelism,
            vertices,
        };
        let folder = snapshot_folder(&self.s.job, b.kind, b.id);
        let bytes = serde_json::to_vec_pretty(&meta).expect("metadata serializes");
        let storage = self.s.config.storage.clone();
        if let Err(e) = storage.put(&format!("{folder}/_metadata"), bytes) {
            self.pending = Some(p);
            self.abort(format!("writing its metadata failed: {e}"));
            return;
        }
        let state_bytes = meta
            .vertices
            .values()
            .flat_map(|v| &v.subtasks)
            .filter_map(|s| s.keyed.as_ref())
            .flat_map(|k| &k.files)
            .map(|f| f.size)
            .sum();
        self.shared
            .history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(CheckpointStats {
                id: b.id,
                kind: b.kind,
                duration: p.triggered.elapsed(),
                uploaded_bytes: p.uploaded_bytes,
                state_bytes,
                completed_at: now_ms(),
            });
        tracing::debug!(id = b.id, "complete");
        for c in &self.s.subtasks {
            let _ = c.send(Control::Complete(b.id));
        }
        if let Some(reply) = p.reply {
            let _ = reply.send(Ok(folder));
        }
        if b.kind == SnapshotKind::Checkpoint {
            self.retained.push_back(meta);
            self.retain();
        }
        self.last_end = Instant::now();
    }

    /// Deletes checkpoints beyond the retained number: first those this run completed
    /// or restored from, then older ones found in storage.
    fn retain(&mut self) {
        let storage = self.s.config.storage.clone();
        let keep_n = self.s.config.retain.max(1);
        while self.retained.len() > keep_n {
            let old = self.retained.pop_front().expect("non-empty");
            let keep: Vec<&CheckpointMetadata> = self.retained.iter().collect();
            if let Err(e) = discard_checkpoint(storage.as_ref(), &self.s.job, &old, &keep) {
                tracing::warn!("deleting checkpoint {}: {e}", old.id);
            }
        }
        let oldest_kept = self.retained.front().map_or(0, |m| m.id);
        let older: Vec<u64> = std::mem::take(&mut self.s.older)
            .into_iter()
            .filter(|&id| id < oldest_kept)
            .collect();
        for id in older {
            let folder = checkpoint_folder(&self.s.job, id);
            let keep: Vec<&CheckpointMetadata> = self.retained.iter().collect();
            match super::load_metadata(storage.as_ref(), &folder) {
                Ok(m) => {
                    if let Err(e) = discard_checkpoint(storage.as_ref(), &self.s.job, &m, &keep) {
                        tracing::warn!("deleting checkpoint {id}: {e}");
                    }
                }
                Err(_) => {
                    // Unreadable: delete its own folder (shared files it may reference
                    // are kept, as another checkpoint might use them).
                    if let Ok(paths) = storage.list(&folder) {
                        for p in paths {
                            let _ = storage.delete(&p);
                        }
                    }
                }
            }
        }
    }
}
