use std::fmt;

/// A time window `[start, end)` in ms since the epoch. Its last timestamp,
/// `end - 1`, is when it fires on time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeWindow {
    /// First timestamp in the window.
    pub start: i64,
    /// First timestamp after the window.
    pub end: i64,
}

impl TimeWindow {
    /// The window's last timestamp, `end - 1` (Flink's `maxTimestamp`).
    #[inline]
    pub fn max_timestamp(&self) -> i64 {
        self.end - 1
    }

    /// Whether the windows overlap or touch, so a merging assigner joins them (Flink's
    /// `TimeWindow.intersects`).
    pub fn intersects(&self, other: &TimeWindow) -> bool {
        self.start <= other.end && self.end >= other.start
    }

    /// The smallest window covering both.
    pub fn cover(&self, other: &TimeWindow) -> TimeWindow {
        TimeWindow {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

impl fmt::Display for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.start, self.end)
    }
}

/// Assigns each event to windows by its event time (Flink's `WindowAssigner`; sizes in ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowAssigner {
    /// Fixed-size, non-overlapping windows aligned to the epoch plus `offset`.
    Tumbling {
        /// Window length, ms, `> 0`.
        size: i64,
        /// Alignment offset, ms.
        offset: i64,
    },
    /// Fixed-size windows starting every `slide` ms; an event is in `size / slide` of them.
    Sliding {
        /// Window length, ms, `> 0`.
        size: i64,
        /// Distance between window starts, ms, `> 0`.
        slide: i64,
        /// Alignment offset, ms.
        offset: i64,
    },
    /// Per-key sessions: each event opens `[t, t + gap)`, and windows that overlap or
    /// touch merge.
    Session {
        /// Inactivity gap, ms, `> 0`.
        gap: i64,
    },
}

/// Start of the window of `size` (aligned to `offset`) that holds `timestamp` (Flink's
/// `TimeWindow.getWindowStartWithOffset`, correct for negative times too).
#[inline]
pub fn window_start(timestamp: i64, offset: i64, size: i64) -> i64 {
    // In 128 bits, so that no event time overflows (the extremes saturate).
    let into = (timestamp as i128 - offset as i128).rem_euclid(size as i128) as i64;
    timestamp.saturating_sub(into)
}

impl WindowAssigner {
    /// Whether windows merge (sessions).
    pub fn is_merging(&self) -> bool {
        matches!(self, WindowAssigner::Session { .. })
    }

    /// Appends the windows of an event at `timestamp` to `out` (cleared first).
    #[inline]
    pub fn assign(&self, timestamp: i64, out: &mut Vec<TimeWindow>) {
        out.clear();
        match *self {
            WindowAssigner::Tumbling { size, offset } => {
                let start = window_start(timestamp, offset, size);
                out.push(TimeWindow {
                    start,
                    end: start.saturating_add(size),
                });
            }
            WindowAssigner::Sliding {
                size,
                slide,
                offset,
            } => {
                let last_start = window_start(timestamp, offset, slide);
                let mut start = last_start;
                // The latest window always holds the event (slide <= size); earlier
                // ones do while they start after `timestamp - size`.
                loop {
                    out.push(TimeWindow {
                        start,
                        end: start.saturating_add(size),
                    });
                    match start.checked_sub(slide) {
                        Some(s) if s > timestamp.saturating_sub(size) => start = s,
                        _ => break,
                    }
                }
            }
            WindowAssigner::Session { gap } => out.push(TimeWindow {
                start: timestamp,
                end: timestamp.saturating_add(gap),
            }),
        }
    }
}

/// Adds `window` to a key's sorted set of session windows, merging every window it
/// intersects (Flink's `MergingWindowSet.addWindow`). Returns the resulting window and the
/// windows it absorbed (already removed from `windows`), whose state the caller merges
/// into the result's.
pub fn merge_session_window(
    windows: &mut Vec<TimeWindow>,
    window: TimeWindow,
) -> (TimeWindow, Vec<TimeWindow>) {
    let mut result = window;
    let mut absorbed = Vec::new();
    // Windows in the set never intersect each other, so the ones intersecting the new
    // window are contiguous in start order.
    let first = windows.partition_point(|w| w.end < window.start);
    let mut last = first;
    while last < windows.len() && windows[last].intersects(&result) {
        result = result.cover(&windows[last]);
        last += 1;
    }
    absorbed.extend(windows.drain(first..last));
    windows.insert(first, result);
    (result, absorbed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assign(a: WindowAssigner, t: i64) -> Vec<(i64, i64)> {
        let mut v = Vec::new();
        a.assign(t, &mut v);
        v.into_iter().map(|w| (w.start, w.end)).collect()
    }

    #[test]
    fn tumbling_edges() {
        let a = WindowAssigner::Tumbling {
            size: 10,
            offset: 0,
        };
        assert_eq!(assign(a, 0), [(0, 10)]);
        assert_eq!(assign(a, 9), [(0, 10)]);
        // An event exactly at a window's end belongs to the next window.
        assert_eq!(assign(a, 10), [(10, 20)]);
        assert_eq!(assign(a, -1), [(-10, 0)]);
        assert_eq!(assign(a, -10), [(-10, 0)]);
        let a = WindowAssigner::Tumbling {
            size: 10,
            offset: 3,
        };
        assert_eq!(assign(a, 2), [(-7, 3)]);
        assert_eq!(assign(a, 3), [(3, 13)]);
    }

    #[test]
    fn extreme_event_times_do_not_overflow() {
        let assigners = [
            WindowAssigner::Tumbling {
                size: 3_600_000,
                offset: -5,
            },
            WindowAssigner::Sliding {
                size: 10,
                slide: 3,
                offset: 7,
            },
            WindowAssigner::Session { gap: 1000 },
        ];
        for a in assigners {
            for t in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX] {
                let mut v = Vec::new();
                a.assign(t, &mut v);
                assert!(!v.is_empty(), "{a:?} at {t}");
                for w in v {
                    // Windows saturate at the extremes of time; they must not panic.
                    assert!(w.start <= t && w.start <= w.end, "{a:?} at {t}: {w}");
                    let _ = w.max_timestamp();
                }
            }
        }
    }

    #[test]
    fn sliding_windows_cover_the_event() {
        let a = WindowAssigner::Sliding {
            size: 10,
            slide: 5,
            offset: 0,
        };
        assert_eq!(assign(a, 7), [(5, 15), (0, 10)]);
        assert_eq!(assign(a, 10), [(10, 20), (5, 15)]);
        let a = WindowAssigner::Sliding {
            size: 10,
            slide: 3,
            offset: 0,
        };
        // Every window [s, s+10) with s % 3 == 0 and s <= 7 < s + 10.
        let expect: Vec<(i64, i64)> = (-2..=7)
            .rev()
            .filter(|s: &i64| s.rem_euclid(3) == 0)
            .map(|s| (s, s + 10))
            .collect();
        assert_eq!(assign(a, 7), expect);
    }

    #[test]
    fn sessions_merge_when_they_touch_or_overlap() {
        let mut set = Vec::new();
        let w = |s, e| TimeWindow { start: s, end: e };
        assert_eq!(merge_session_window(&mut set, w(0, 10)), (w(0, 10), vec![]));
        assert_eq!(
            merge_session_window(&mut set, w(30, 40)),
            (w(30, 40), vec![])
        );
        assert_eq!(set, [w(0, 10), w(30, 40)]);
        // Touching at 10: merges (Flink's intersects is inclusive).
        assert_eq!(
            merge_session_window(&mut set, w(10, 20)),
            (w(0, 20), vec![w(0, 10)])
        );
        // Bridges the two sessions.
        assert_eq!(
            merge_session_window(&mut set, w(18, 31)),
            (w(0, 40), vec![w(0, 20), w(30, 40)])
        );
        assert_eq!(set, [w(0, 40)]);
        // Inside an existing session: absorbed into it.
        assert_eq!(
            merge_session_window(&mut set, w(5, 15)),
            (w(0, 40), vec![w(0, 40)])
        );
        assert_eq!(set, [w(0, 40)]);
        assert_eq!(
            merge_session_window(&mut set, w(-20, -10)),
            (w(-20, -10), vec![])
        );
        assert_eq!(set, [w(-20, -10), w(0, 40)]);
    }
}
