//! Event-time parsing for text sources. (Rendering times and JSON is `sluice_core`'s.)

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, NaiveDate, NaiveDateTime};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
