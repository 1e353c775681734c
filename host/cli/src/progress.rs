//! Progress while a job runs and the summary when it ends, from the job's live metrics.

use sluice_core::runtime::JobMetrics;
use sluice_core::time::format_time;
use std::time::Duration;

/// Figures of a finished (or failed) run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// Events read by all sources.
    pub events_in: u64,
    /// Wall time from start to end.
    pub elapsed: Duration,
    /// CPU time used by the process over the run (user + system).
    pub cpu: Duration,
    /// Window result rows (every firing).
    pub window_firings: u64,
    /// Late firings among them.
    pub late_firings: u64,
    /// Windows that reached their final value.
    pub final_windows: u64,
    /// Events counted in the final window results (for tumbling windows each event counts once).
    pub events_in_final_windows: u64,
    /// Events that went into at least one window.
    pub events_windowed: u64,
    /// Events too late for every window: sent to the late side output.
    pub late_events: u64,
    /// Events that entered window operators.
    pub window_input: u64,
    /// Side-output events that no vertex consumed.
    pub unrouted_side_events: u64,
}

/// CPU time (user + system) used by this process so far.
pub fn process_cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct we pass and reads nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

impl RunSummary {
    /// Reads the figures from `metrics`; `cpu` is the CPU time spent since the start.
    pub fn from_metrics(metrics: &JobMetrics, cpu: Duration) -> RunSummary {
        let sources = metrics.vertices.iter().filter(|v| v.kind == "source");
        let windows: Vec<_> = metrics
            .vertices
            .iter()
            .filter(|v| v.kind == "window")
            .collect();
        let wsum =
            |f: fn(&sluice_core::window::WindowCounters) -> &std::sync::atomic::AtomicU64| {
                windows.iter().map(|w| w.window_sum(f)).sum::<u64>()
            };
        RunSummary {
            events_in: sources.map(|v| v.sum(|s| &s.records_out)).sum(),
            elapsed: metrics.started.elapsed(),
            cpu,
            window_firings: wsum(|w| &w.firings),
            late_firings: wsum(|w| &w.late_firings),
            final_windows: wsum(|w| &w.final_windows),
            events_in_final_windows: wsum(|w| &w.events_in_final_windows),
            events_windowed: wsum(|w| &w.events_assigned),
            late_events: wsum(|w| &w.late_events),
            window_input: windows.iter().map(|w| w.sum(|s| &s.records_in)).sum(),
            unrouted_side_events: metrics
                .vertices
                .iter()
                .map(|v| v.sum(|s| &s.unrouted_side_records))
                .sum(),
        }
    }
}

/// One progress line: elapsed time, events in and their rate over the last interval,
/// the window watermark, results and late events so far.
pub fn progress_line(
    metrics: &JobMetrics,
    previous_events: u64,
    interval: Duration,
) -> (String, u64) {
    let s = RunSummary::from_metrics(metrics, Duration::ZERO);
    let rate =
        (s.events_in - previous_events.min(s.events_in)) as f64 / interval.as_secs_f64().max(1e-9);
    let watermark = metrics
        .vertices
        .iter()
        .filter(|v| v.kind == "window")
        .map(|v| v.watermark())
        .min()
        .or_else(|| {
            metrics
                .vertices
                .iter()
                .filter(|v| v.kind == "source")
                .map(|v| v.watermark())
                .min()
        })
        .unwrap_or(i64::MIN);
    (
        format!(
            "[{:>6.1}s] events {:>11}  {:>7}/s  watermark {}  window results {}  late {}",
            s.elapsed.as_secs_f64(),
            group(s.events_in),
            human_rate(rate),
            format_time(watermark),
            group(s.window_firings),
            group(s.late_events),
        ),
        s.events_in,
    )
}

/// `1234567` as `1,234,567`.
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn human_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}
