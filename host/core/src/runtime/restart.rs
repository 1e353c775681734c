//! Restart strategies (Flink's `fixed-delay`, `exponential-delay` and `failure-rate`):
//! how often and after how long a failed job is restarted from its latest complete
//! checkpoint, and when its count of failures starts over.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What to do when a job fails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RestartStrategy {
    /// Fail the job at once.
    None,
    /// Restart after `delay`, at most `attempts` times in a row.
    FixedDelay {
        /// Restarts allowed.
        attempts: u32,
        /// Wait before each.
        delay: Duration,
        /// An attempt that runs this long without failing starts the count over (Flink's
        /// exponential-delay `reset-backoff-threshold`); `None`: the count is for the
        /// job's whole life.
        reset_after: Option<Duration>,
    },
    /// Restart after `initial`, then after `multiplier` times longer each time, up to
    /// `max`; at most `attempts` times in a row.
    ExponentialBackoff {
        /// Restarts allowed.
        attempts: u32,
        /// The first wait.
        initial: Duration,
        /// The longest wait.
        max: Duration,
        /// Growth of the wait per restart, `>= 1`.
        multiplier: f64,
        /// An attempt that runs this long without failing starts the count and the
        /// backoff over (Flink's `reset-backoff-threshold`, 1 h by default).
        reset_after: Option<Duration>,
    },
    /// Restart after `delay` unless more than `max_failures` failures happened within
    /// the last `interval` (Flink's `failure-rate`): a job that fails now and then lives
    /// on, one that fails in a burst stops.
    FailureRate {
        /// Failures allowed within `interval`.
        max_failures: u32,
        /// The sliding window the failures are counted in.
        interval: Duration,
        /// Wait before each restart.
        delay: Duration,
    },
}

impl RestartStrategy {
    /// The wait before restart number `attempt` in a row (1 for the first), or `None`
    /// when no more restarts are allowed; for `failure-rate`, `attempt` is the number of
    /// failures within its interval.
    pub fn delay(&self, attempt: u32) -> Option<Duration> {
        match *self {
            RestartStrategy::None => None,
            RestartStrategy::FixedDelay {
                attempts, delay, ..
            } => (attempt <= attempts).then_some(delay),
            RestartStrategy::ExponentialBackoff {
                attempts,
                initial,
                max,
                multiplier,
                ..
            } => (attempt <= attempts).then(|| {
                let f = multiplier
                    .max(1.0)
                    .powi(attempt.saturating_sub(1).min(64) as i32);
                initial.mul_f64(f.min(1e9)).min(max)
            }),
            RestartStrategy::FailureRate {
                max_failures,
                delay,
                ..
            } => (attempt <= max_failures).then_some(delay),
        }
    }

    /// Restart number `nth` after `delay`, for a log line: `restart 2 of 10 in 2s`, or
    /// for `failure-rate` `restart in 1s (failure 2 of 3 allowed within 300s)`.
    pub fn describe(&self, nth: u32, delay: Duration) -> String {
        match *self {
            RestartStrategy::FailureRate {
                max_failures,
                interval,
                ..
            } => format!(
                "restart in {delay:?} (failure {nth} of {max_failures} allowed within {interval:?})"
            ),
            _ => format!("restart {nth} of {} in {delay:?}", self.attempts()),
        }
    }

    /// The most restarts allowed in a row (for `failure-rate`: within its interval).
    pub fn attempts(&self) -> u32 {
        match *self {
            RestartStrategy::None => 0,
            RestartStrategy::FixedDelay { attempts, .. }
            | RestartStrategy::ExponentialBackoff { attempts, .. } => attempts,
            RestartStrategy::FailureRate { max_failures, .. } => max_failures,
        }
    }
}

/// The failures of one job, counted as its [`RestartStrategy`] says.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    strategy: RestartStrategy,
    /// Failures in a row (fixed-delay, exponential-backoff).
    in_a_row: u32,
    /// Times of the failures within the interval (failure-rate).
    recent: VecDeque<Instant>,
}

impl RestartTracker {
    /// A tracker with no failures yet.
    pub fn new(strategy: RestartStrategy) -> Self {
        RestartTracker {
            strategy,
            in_a_row: 0,
            recent: VecDeque::new(),
        }
    }

    /// Counts a failure at `now` of the attempt that started at `attempt_started`.
    /// Returns which restart this is (in a row, or within the interval) and the wait
    /// before it, or `None` when the strategy allows no more.
    pub fn failed(&mut self, now: Instant, attempt_started: Instant) -> Option<(u32, Duration)> {
        let n = match self.strategy {
            RestartStrategy::None => return None,
            RestartStrategy::FixedDelay { reset_after, .. }
            | RestartStrategy::ExponentialBackoff { reset_after, .. } => {
                if reset_after.is_some_and(|r| now.saturating_duration_since(attempt_started) >= r)
                {
                    self.in_a_row = 0;
                }
                self.in_a_row += 1;
                self.in_a_row
            }
            RestartStrategy::FailureRate { interval, .. } => {
                while self
                    .recent
                    .front()
                    .is_some_and(|&t| now.saturating_duration_since(t) > interval)
                {
                    self.recent.pop_front();
                }
                self.recent.push_back(now);
                self.recent.len() as u32
            }
        };
        self.strategy.delay(n).map(|d| (n, d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_follow_the_strategy_and_stop_after_the_attempts() {
        let s = RestartStrategy::ExponentialBackoff {
            attempts: 4,
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
            multiplier: 2.0,
            reset_after: None,
        };
        let got: Vec<_> = (1..=5).map(|a| s.delay(a).map(|d| d.as_millis())).collect();
        assert_eq!(got, [Some(100), Some(200), Some(400), Some(500), None]);
        let f = RestartStrategy::FixedDelay {
            attempts: 2,
            delay: Duration::from_secs(1),
            reset_after: None,
        };
        assert_eq!(f.delay(2), Some(Duration::from_secs(1)));
        assert_eq!(f.delay(3), None);
        assert_eq!(RestartStrategy::None.delay(1), None);
    }

    /// Failures at the given seconds after a start at 0, each attempt starting when the
    /// one before failed plus its delay: the restart number and delay (ms) of each.
    fn schedule(strategy: RestartStrategy, failures_at_s: &[u64]) -> Vec<Option<(u32, u128)>> {
        let zero = Instant::now();
        let mut t = RestartTracker::new(strategy);
        let mut started = zero;
        failures_at_s
            .iter()
            .map(|&s| {
                let now = zero + Duration::from_secs(s);
                let r = t.failed(now, started);
                if let Some((_, d)) = r {
                    started = now + d;
                }
                r.map(|(n, d)| (n, d.as_millis()))
            })
            .collect()
    }

    #[test]
    fn a_quiet_period_starts_the_count_and_the_backoff_over() {
        let s = RestartStrategy::ExponentialBackoff {
            attempts: 3,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            reset_after: Some(Duration::from_secs(3600)),
        };
        // Three quick failures use the three restarts with growing waits; after an hour
        // without one, the next failure is the first again; without the reset, the
        // fourth failure in a row ends the job.
        assert_eq!(
            schedule(s, &[10, 12, 16, 4000, 4002, 4005, 4010]),
            [
                Some((1, 1000)),
                Some((2, 2000)),
                Some((3, 4000)),
                Some((1, 1000)),
                Some((2, 2000)),
                Some((3, 4000)),
                None
            ]
        );
        let no_reset = RestartStrategy::ExponentialBackoff {
            attempts: 3,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            reset_after: None,
        };
        assert_eq!(schedule(no_reset, &[10, 12, 16, 4000])[3], None);
        let fixed = RestartStrategy::FixedDelay {
            attempts: 1,
            delay: Duration::from_secs(5),
            reset_after: Some(Duration::from_secs(60)),
        };
        assert_eq!(
            schedule(fixed, &[10, 100, 120]),
            [Some((1, 5000)), Some((1, 5000)), None]
        );
    }

    #[test]
    fn failure_rate_counts_failures_in_a_sliding_interval() {
        let s = RestartStrategy::FailureRate {
            max_failures: 2,
            interval: Duration::from_secs(60),
            delay: Duration::from_secs(1),
        };
        // 2 failures a minute are allowed: the third within 60 s ends the job; spread
        // out, any number is.
        assert_eq!(
            schedule(s, &[0, 30, 70, 100, 200, 300, 310, 320]),
            [
                Some((1, 1000)),
                Some((2, 1000)),
                Some((2, 1000)),
                Some((2, 1000)),
                Some((1, 1000)),
                Some((1, 1000)),
                Some((2, 1000)),
                None
            ]
        );
    }
}
