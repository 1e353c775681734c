//! Hot-swap: replacing a user operator's code in a running job, at a checkpoint barrier,
//! with its keyed state and timers carried over.
//!
//! A swap is *requested* for a vertex with the factory of the new version; the
//! coordinator *arms* it with the id of the next barrier it triggers (at once); each
//! subtask of the vertex, having snapshotted the old operator's state at that barrier,
//! moves the keyed store into a new instance, initializes and opens it, and goes on with
//! it: every event before the barrier went through the old version, every event after it
//! through the new one, and nothing stops but that subtask for the time the new instance
//! takes to start (the *pause*). The swap is then on *trial* until the next checkpoint
//! after its barrier completes (or the job finishes, its output committed), when it is
//! *committed*: restarts from then on create the new version. If the new version fails
//! to start in a subtask, or the job fails while
//! the swap is on trial, the swap is *rolled back*: the job restarts (as its restart
//! strategy allows) from its latest complete checkpoint with the old version.
//! (Flink has no counterpart; its closest is stop-with-savepoint and a restart with new
//! code, which stops the whole job.)

use crate::graph::OperatorFactory;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Where a swap is.
#[derive(Debug, Clone, PartialEq)]
pub enum SwapStatus {
    /// Requested; waiting for its barrier.
    Requested,
    /// Its barrier is on the way: subtasks swap when it reaches them.
    Armed {
        /// The barrier's checkpoint id.
        checkpoint: u64,
    },
    /// Every subtask runs the new version; on trial until a later checkpoint completes.
    Trial {
        /// The barrier it happened at.
        checkpoint: u64,
        /// The longest time a subtask stopped to start the new version, ms.
        pause_ms: f64,
    },
    /// The new version is the operator's code for good (restarts create it).
    Committed {
        /// The barrier it happened at.
        checkpoint: u64,
        /// The longest time a subtask stopped to start the new version, ms.
        pause_ms: f64,
    },
    /// The old version runs again; why.
    RolledBack {
        /// What went wrong: the new version's start, or the failure of the job.
        error: String,
    },
}

struct Swap {
    factory: Arc<dyn OperatorFactory>,
    status: SwapStatus,
    parallelism: usize,
    /// Subtasks that swapped, and the longest pause.
    swapped: usize,
    pause_ms: f64,
}

/// The swaps of a job: requested through its handle, carried out by its subtasks, and
/// the committed factories that replace the graph's on restarts.
#[derive(Default)]
pub struct OperatorSwaps {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// The current (or last) swap per vertex id.
    swaps: HashMap<String, Swap>,
    /// Committed factories per vertex id.
    committed: HashMap<String, Arc<dyn OperatorFactory>>,
}

impl OperatorSwaps {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Requests a swap of `vertex` (with `parallelism` subtasks) to `factory`.
    ///
    /// Errors: a swap of the vertex is already under way.
    pub fn request(
        &self,
        vertex: &str,
        parallelism: usize,
        factory: Arc<dyn OperatorFactory>,
    ) -> Result<(), String> {
        let mut st = self.lock();
        if let Some(s) = st.swaps.get(vertex)
            && matches!(
                s.status,
                SwapStatus::Requested | SwapStatus::Armed { .. } | SwapStatus::Trial { .. }
            )
        {
            return Err(format!(
                "a swap of operator '{vertex}' is under way ({:?})",
                s.status
            ));
        }
        st.swaps.insert(
            vertex.to_string(),
            Swap {
                factory,
                status: SwapStatus::Requested,
                parallelism,
                swapped: 0,
                pause_ms: 0.0,
            },
        );
        self.changed.notify_all();
        Ok(())
    }

    /// Whether a swap waits for a barrier.
    pub fn any_requested(&self) -> bool {
        self.lock()
            .swaps
            .values()
            .any(|s| s.status == SwapStatus::Requested)
    }

    /// Called by the coordinator before it sends barrier `checkpoint`: the requested
    /// swaps happen at it.
    pub fn arm(&self, checkpoint: u64) {
        let mut st = self.lock();
        for s in st.swaps.values_mut() {
            if s.status == SwapStatus::Requested {
                s.status = SwapStatus::Armed { checkpoint };
            }
        }
        self.changed.notify_all();
    }

    /// The new factory, if subtasks of `vertex` swap at barrier `checkpoint`.
    pub fn due(&self, vertex: &str, checkpoint: u64) -> Option<Arc<dyn OperatorFactory>> {
        let st = self.lock();
        let s = st.swaps.get(vertex)?;
        (s.status == SwapStatus::Armed { checkpoint }).then(|| s.factory.clone())
    }

    /// A subtask of `vertex` runs the new version; it stopped `pause_ms` for it.
    pub fn swapped(&self, vertex: &str, pause_ms: f64) {
        let mut st = self.lock();
        if let Some(s) = st.swaps.get_mut(vertex)
            && let SwapStatus::Armed { checkpoint } = s.status
        {
            s.swapped += 1;
            s.pause_ms = s.pause_ms.max(pause_ms);
            if s.swapped == s.parallelism {
                s.status = SwapStatus::Trial {
                    checkpoint,
                    pause_ms: s.pause_ms,
                };
            }
        }
        self.changed.notify_all();
    }

    /// Checkpoint `id` completed: swaps on trial since an earlier barrier are committed.
    pub fn checkpoint_completed(&self, id: u64) {
        let mut st = self.lock();
        let mut done = Vec::new();
        for (v, s) in st.swaps.iter_mut() {
            if let SwapStatus::Trial {
                checkpoint,
                pause_ms,
            } = s.status
                && id > checkpoint
            {
                s.status = SwapStatus::Committed {
                    checkpoint,
                    pause_ms,
                };
                done.push((v.clone(), s.factory.clone()));
            }
        }
        st.committed.extend(done);
        self.changed.notify_all();
    }

    /// A swap of `vertex` failed in a subtask (the new version did not start): rolled
    /// back.
    pub fn failed(&self, vertex: &str, error: String) {
        if let Some(s) = self.lock().swaps.get_mut(vertex)
            && !matches!(s.status, SwapStatus::Committed { .. })
        {
            s.status = SwapStatus::RolledBack { error };
        }
        self.changed.notify_all();
    }

    /// The job failed (`error`): every swap not committed is rolled back, so that the
    /// restart runs the old versions.
    pub fn job_failed(&self, error: &str) {
        let mut st = self.lock();
        for s in st.swaps.values_mut() {
            if matches!(
                s.status,
                SwapStatus::Requested | SwapStatus::Armed { .. } | SwapStatus::Trial { .. }
            ) {
                s.status = SwapStatus::RolledBack {
                    error: format!("the job failed while the swap was under way: {error}"),
                };
            }
        }
        self.changed.notify_all();
    }

    /// The job finished (every input ended and the sinks committed everything): a swap
    /// on trial is committed, since the new version's output was; one whose barrier
    /// never came is rolled back.
    pub fn job_finished(&self) {
        let mut st = self.lock();
        let mut done = Vec::new();
        for (v, s) in st.swaps.iter_mut() {
            match s.status {
                SwapStatus::Trial {
                    checkpoint,
                    pause_ms,
                } => {
                    s.status = SwapStatus::Committed {
                        checkpoint,
                        pause_ms,
                    };
                    done.push((v.clone(), s.factory.clone()));
                }
                SwapStatus::Requested | SwapStatus::Armed { .. } => {
                    s.status = SwapStatus::RolledBack {
                        error: "the job finished before the swap's barrier reached every subtask"
                            .into(),
                    };
                }
                _ => {}
            }
        }
        st.committed.extend(done);
        self.changed.notify_all();
    }

    /// The factory that replaces the graph's for `vertex`, once a swap is committed.
    pub fn committed(&self, vertex: &str) -> Option<Arc<dyn OperatorFactory>> {
        self.lock().committed.get(vertex).cloned()
    }

    /// The status of the last swap of `vertex`.
    pub fn status(&self, vertex: &str) -> Option<SwapStatus> {
        self.lock().swaps.get(vertex).map(|s| s.status.clone())
    }

    /// Waits up to `timeout` for the swap of `vertex` to be committed or rolled back;
    /// its status then (or at the timeout).
    pub fn wait(&self, vertex: &str, timeout: Duration) -> Option<SwapStatus> {
        let until = std::time::Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            let status = st.swaps.get(vertex).map(|s| s.status.clone());
            match &status {
                Some(SwapStatus::Committed { .. } | SwapStatus::RolledBack { .. }) | None => {
                    return status;
                }
                _ => {}
            }
            let now = std::time::Instant::now();
            if now >= until {
                return status;
            }
            st = self
                .changed
                .wait_timeout(st, until - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::{Operator, OperatorError};

    struct NoFactory;
    impl OperatorFactory for NoFactory {
        fn create(&self, _: usize, _: usize) -> Result<Box<dyn Operator>, OperatorError> {
            Err(OperatorError::Fault {
                context: "test".into(),
                message: "not used".into(),
            })
        }
    }

    #[test]
    fn a_swap_is_armed_at_a_barrier_tried_and_committed_at_the_next_checkpoint() {
        let s = OperatorSwaps::default();
        s.request("op", 2, Arc::new(NoFactory)).unwrap();
        assert!(
            s.request("op", 2, Arc::new(NoFactory)).is_err(),
            "one at a time"
        );
        assert!(s.due("op", 7).is_none(), "not before it is armed");
        s.arm(7);
        s.arm(8); // a later barrier does not move it
        assert!(s.due("op", 7).is_some() && s.due("op", 8).is_none());
        s.swapped("op", 0.5);
        assert_eq!(s.status("op"), Some(SwapStatus::Armed { checkpoint: 7 }));
        s.swapped("op", 1.5);
        assert_eq!(
            s.status("op"),
            Some(SwapStatus::Trial {
                checkpoint: 7,
                pause_ms: 1.5
            })
        );
        s.checkpoint_completed(7);
        assert!(
            s.committed("op").is_none(),
            "its own barrier's checkpoint is not a trial"
        );
        s.checkpoint_completed(8);
        assert!(s.committed("op").is_some());
        assert!(matches!(
            s.wait("op", Duration::ZERO),
            Some(SwapStatus::Committed { .. })
        ));
        s.job_failed("later");
        assert!(s.committed("op").is_some(), "a committed swap stays");
    }

    #[test]
    fn a_job_that_finishes_commits_a_swap_on_trial_and_rolls_back_one_not_reached() {
        let s = OperatorSwaps::default();
        s.request("a", 1, Arc::new(NoFactory)).unwrap();
        s.arm(2);
        s.swapped("a", 0.1);
        s.request("b", 1, Arc::new(NoFactory)).unwrap();
        s.job_finished();
        assert!(s.committed("a").is_some());
        assert!(matches!(s.status("b"), Some(SwapStatus::RolledBack { .. })));
    }

    #[test]
    fn a_failure_before_the_commit_rolls_the_swap_back() {
        let s = OperatorSwaps::default();
        s.request("op", 1, Arc::new(NoFactory)).unwrap();
        s.arm(3);
        s.swapped("op", 0.1);
        s.job_failed("boom");
        assert!(
            matches!(s.status("op"), Some(SwapStatus::RolledBack { error }) if error.contains("boom"))
        );
        s.checkpoint_completed(4);
        assert!(s.committed("op").is_none());
        // Another try may follow.
        s.request("op", 1, Arc::new(NoFactory)).unwrap();
        s.failed("op", "init failed".into());
        assert!(matches!(
            s.status("op"),
            Some(SwapStatus::RolledBack { .. })
        ));
    }
}
