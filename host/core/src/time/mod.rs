//! Event time: watermark generation at sources and watermark propagation through
//! operators with several inputs; time rendering; and the processing-time clock.

mod splits;
mod valve;
mod watermark;

pub use splits::{IdleCheck, SplitId, SplitWatermarks};
pub use valve::WatermarkValve;
pub use watermark::{BoundedOutOfOrderness, WatermarkStrategy};

/// The watermark before any event: nothing is known yet.
pub const MIN_WATERMARK: i64 = i64::MIN;
/// The watermark at the end of a bounded input: every window can fire.
pub const MAX_WATERMARK: i64 = i64::MAX;

/// Processing time now: the wall clock in ms since the Unix epoch (0 if the clock is set
/// before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Formats a time in ms since the epoch as RFC 3339 UTC with milliseconds, or `-inf` /
/// `+inf` for the extreme watermarks.
pub fn format_time(ms: i64) -> String {
    let mut s = String::with_capacity(24);
    write_time(&mut s, ms);
    s
}

/// Appends [`format_time`]'s text to `out` without allocating.
pub fn write_time(out: &mut String, ms: i64) {
    match ms {
        MIN_WATERMARK => out.push_str("-inf"),
        MAX_WATERMARK => out.push_str("+inf"),
        _ => write_rfc3339_ms(out, ms),
    }
}

/// Appends `ms` (milliseconds since the Unix epoch) as RFC 3339 UTC with milliseconds,
/// `2024-01-02T03:04:05.678Z`, without allocating. Years outside 0..=9999 are written
/// with as many digits as they need (and a `-` sign before year 0).
pub fn write_rfc3339_ms(out: &mut String, ms: i64) {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000) as u32;
    let (y, m, d) = civil_from_days(days);
    let (h, rem) = (rem / 3_600_000, rem % 3_600_000);
    let (mi, rem) = (rem / 60_000, rem % 60_000);
    let (s, milli) = (rem / 1000, rem % 1000);
    let four_digit_year = (0..=9999).contains(&y);
    if !four_digit_year {
        let _ = std::fmt::Write::write_fmt(out, format_args!("{y:04}"));
    }
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, v: u32, width: usize| {
        let mut v = v;
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, y.clamp(0, 9999) as u32, 4);
    put(5, m, 2);
    put(8, d, 2);
    put(11, h, 2);
    put(14, mi, 2);
    put(17, s, 2);
    put(20, milli, 3);
    let start = if four_digit_year { 0 } else { 4 };
    out.push_str(std::str::from_utf8(&b[start..]).expect("ASCII"));
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn rfc3339_matches_chrono() {
        for ms in [
            0i64,
            978_307_260_000,
            -1,
            -86_400_001,
            253_402_300_799_999,
            951_782_400_000,
            1_700_000_000_123,
        ] {
            let expect = chrono::DateTime::from_timestamp_millis(ms)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string();
            assert_eq!(format_time(ms), expect, "{ms}");
        }
        assert_eq!(format_time(i64::MIN), "-inf");
        assert_eq!(format_time(i64::MAX), "+inf");
    }
}
