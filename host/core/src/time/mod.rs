//! Event time: watermark generation at sources and watermark propagation through
//! operators with several inputs.

mod valve;
mod watermark;

pub use valve::WatermarkValve;
pub use watermark::{BoundedOutOfOrderness, WatermarkStrategy};

/// The watermark before any event: nothing is known yet.
pub const MIN_WATERMARK: i64 = i64::MIN;
/// The watermark at the end of a bounded input: every window can fire.
pub const MAX_WATERMARK: i64 = i64::MAX;

/// Formats a time in ms since the epoch as RFC 3339 UTC with milliseconds, or `-inf` /
/// `+inf` for the extreme watermarks.
pub fn format_time(ms: i64) -> String {
    match ms {
        MIN_WATERMARK => "-inf".to_string(),
        MAX_WATERMARK => "+inf".to_string(),
        _ => chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_else(|| format!("{ms} ms")),
    }
}
