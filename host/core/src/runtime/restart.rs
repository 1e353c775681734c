//! Restart strategies (Flink's `fixed-delay` and `exponential-delay`): how often and
//! after how long a failed job is restarted from its latest complete checkpoint.

use std::time::Duration;

/// What to do when a job fails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RestartStrategy {
    /// Fail the job at once.
    None,
    /// Restart after `delay`, at most `attempts` times.
    FixedDelay {
        /// Restarts allowed.
        attempts: u32,
        /// Wait before each.
        delay: Duration,
    },
    /// Restart after `initial`, then after `multiplier` times longer each time, up to
    /// `max`; at most `attempts` times.
    ExponentialBackoff {
        /// Restarts allowed.
        attempts: u32,
        /// The first wait.
        initial: Duration,
        /// The longest wait.
        max: Duration,
        /// Growth of the wait per restart, `>= 1`.
        multiplier: f64,
    },
}

impl RestartStrategy {
    /// The wait before restart number `attempt` (1 for the first restart), or `None`
    /// when no more restarts are allowed.
    pub fn delay(&self, attempt: u32) -> Option<Duration> {
        match *self {
            RestartStrategy::None => None,
            RestartStrategy::FixedDelay { attempts, delay } => {
                (attempt <= attempts).then_some(delay)
            }
            RestartStrategy::ExponentialBackoff {
                attempts,
                initial,
                max,
                multiplier,
            } => (attempt <= attempts).then(|| {
                let f = multiplier
                    .max(1.0)
                    .powi(attempt.saturating_sub(1).min(64) as i32);
                initial.mul_f64(f.min(1e9)).min(max)
            }),
        }
    }

    /// The most restarts allowed.
    pub fn attempts(&self) -> u32 {
        match *self {
            RestartStrategy::None => 0,
            RestartStrategy::FixedDelay { attempts, .. }
            | RestartStrategy::ExponentialBackoff { attempts, .. } => attempts,
        }
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
        };
        let got: Vec<_> = (1..=5).map(|a| s.delay(a).map(|d| d.as_millis())).collect();
        assert_eq!(got, [Some(100), Some(200), Some(400), Some(500), None]);
        let f = RestartStrategy::FixedDelay {
            attempts: 2,
            delay: Duration::from_secs(1),
        };
        assert_eq!(f.delay(2), Some(Duration::from_secs(1)));
        assert_eq!(f.delay(3), None);
        assert_eq!(RestartStrategy::None.delay(1), None);
    }
}
