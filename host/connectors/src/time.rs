//! Event-time parsing (for text sources) and fast RFC 3339 rendering (for sinks).

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use std::fmt::Write as _;

/// How a text source reads an event time out of a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TimeFormat {
    /// Integer milliseconds since the epoch.
    EpochMs,
    /// Seconds since the epoch (integer or decimal).
    EpochS,
    /// RFC 3339 with an offset (`2024-01-02T03:04:05.678Z`).
    Rfc3339,
    /// A chrono strftime pattern, read as UTC unless it contains an offset (`%z`).
    Pattern {
        pattern: String,
        has_offset: bool,
        has_time: bool,
    },
}

impl TimeFormat {
    /// Parses a `format` option: `epoch_ms`, `epoch_s`, `rfc3339` or a strftime
    /// pattern (which must contain at least one `%` directive). Errors say why.
    pub(crate) fn parse(s: &str) -> Result<TimeFormat, String> {
        match s {
            "epoch_ms" => Ok(TimeFormat::EpochMs),
            "epoch_s" => Ok(TimeFormat::EpochS),
            "rfc3339" => Ok(TimeFormat::Rfc3339),
            p if p.contains('%') => {
                let items: Vec<Item<'_>> = StrftimeItems::new(p).collect();
                if items.iter().any(|i| matches!(i, Item::Error)) {
                    return Err(format!("'{p}' is not a valid strftime pattern"));
                }
                let has_offset = p.contains("%z") || p.contains("%:z") || p.contains("%#z");
                let has_time = [
                    "%H", "%I", "%M", "%S", "%T", "%R", "%s", "%k", "%l", "%X", "%c", "%+",
                ]
                .iter()
                .any(|d| p.contains(d));
                Ok(TimeFormat::Pattern {
                    pattern: p.to_string(),
                    has_offset,
                    has_time,
                })
            }
            other => Err(format!(
                "unknown time format '{other}'; use epoch_ms, epoch_s, rfc3339 or a strftime pattern like '%Y-%m-%d %H:%M'"
            )),
        }
    }

    /// Reads `text` as an event time in ms since the epoch; errors say what was expected.
    pub(crate) fn read(&self, text: &str) -> Result<i64, String> {
        let t = text.trim();
        match self {
            TimeFormat::EpochMs => t
                .parse::<i64>()
                .map_err(|_| format!("'{t}' is not an integer of epoch milliseconds")),
            TimeFormat::EpochS => match t.parse::<i64>() {
                Ok(s) => s
                    .checked_mul(1000)
                    .ok_or_else(|| format!("'{t}' is out of range")),
                Err(_) => t
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite())
                    .map(|s| (s * 1000.0).round() as i64)
                    .ok_or_else(|| format!("'{t}' is not a number of epoch seconds")),
            },
            TimeFormat::Rfc3339 => DateTime::parse_from_rfc3339(t)
                .map(|d| d.timestamp_millis())
                .map_err(|e| format!("'{t}' is not an RFC 3339 time ({e})")),
            TimeFormat::Pattern {
                pattern,
                has_offset,
                has_time,
            } => {
                let r = if *has_offset {
                    DateTime::parse_from_str(t, pattern).map(|d| d.timestamp_millis())
                } else if *has_time {
                    NaiveDateTime::parse_from_str(t, pattern)
                        .map(|d| d.and_utc().timestamp_millis())
                } else {
                    NaiveDate::parse_from_str(t, pattern).map(|d| {
                        d.and_hms_opt(0, 0, 0)
                            .expect("midnight")
                            .and_utc()
                            .timestamp_millis()
                    })
                };
                r.map_err(|e| format!("'{t}' does not match the time format '{pattern}' ({e})"))
            }
        }
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
        let _ = write!(out, "{y:04}");
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

/// Appends `v` in decimal without going through `fmt`.
#[inline]
pub(crate) fn push_i64(out: &mut String, v: i64) {
    let mut b = [0u8; 20];
    let mut i = b.len();
    let mut u = v.unsigned_abs();
    loop {
        i -= 1;
        b[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if v < 0 {
        out.push('-');
    }
    out.push_str(std::str::from_utf8(&b[i..]).expect("ASCII"));
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

/// Appends `s` as a JSON string literal, escaping as JSON requires, without allocating.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_chrono() {
        for ms in [
            0i64,
            1,
            -1,
            999,
            86_399_999,
            951_782_400_000,
            1_704_164_645_678,
            -62_135_596_800_000,
            253_402_300_799_999,
            -86_400_001,
        ] {
            let mut s = String::new();
            write_rfc3339_ms(&mut s, ms);
            let c = DateTime::from_timestamp_millis(ms)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string();
            assert_eq!(s, c, "{ms}");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(TimeFormat::EpochS.read("1.5").unwrap(), 1500);
        assert_eq!(TimeFormat::EpochS.read("2").unwrap(), 2000);
        assert_eq!(
            TimeFormat::Rfc3339
                .read("1970-01-01T00:00:01.5+00:00")
                .unwrap(),
            1500
        );
        let p = TimeFormat::parse("%Y-%m-%d %H:%M").unwrap();
        assert_eq!(p.read("1970-01-02 00:01").unwrap(), 86_460_000);
        let d = TimeFormat::parse("%Y-%m-%d").unwrap();
        assert_eq!(d.read("1970-01-02").unwrap(), 86_400_000);
        let z = TimeFormat::parse("%Y-%m-%d %H:%M %z").unwrap();
        assert_eq!(z.read("1970-01-01 01:00 +0100").unwrap(), 0);
        assert!(TimeFormat::parse("bogus").is_err());
        assert!(TimeFormat::parse("%Q").is_err());
        assert!(p.read("yesterday").unwrap_err().contains("%Y-%m-%d %H:%M"));
    }

    #[test]
    fn integers() {
        for v in [0, 1, -1, 10, -1234567890, i64::MAX, i64::MIN] {
            let mut s = String::new();
            push_i64(&mut s, v);
            assert_eq!(s, v.to_string());
        }
    }

    #[test]
    fn json_strings() {
        let mut s = String::new();
        push_json_str(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, serde_json::to_string("a\"b\\c\nd\u{1}é").unwrap());
        assert_eq!(
            serde_json::from_str::<String>(&s).unwrap(),
            "a\"b\\c\nd\u{1}é"
        );
    }
}
