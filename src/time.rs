//! Parsing the times users type (`--at`).

use jiff::{Timestamp, civil, tz::TimeZone};

/// Accepts RFC 3339 (`2026-11-20T10:00:00Z`), a local date-time
/// (`2026-11-20T10:00`, `2026-11-20 10:00:00`) or a date (`2026-11-20`, meaning
/// the end of that day). Local forms are read in the system time zone.
pub fn parse_at(text: &str) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Ok(ts);
    }
    let tz = TimeZone::system();
    let normalized = text.replacen(' ', "T", 1);
    if let Ok(dt) = normalized.parse::<civil::DateTime>() {
        return dt
            .to_zoned(tz)
            .map(|z| z.timestamp())
            .map_err(|e| format!("{text}: {e}"));
    }
    if let Ok(date) = text.parse::<civil::Date>() {
        return date
            .at(23, 59, 59, 999_999_999)
            .to_zoned(tz)
            .map(|z| z.timestamp())
            .map_err(|e| format!("{text}: {e}"));
    }
    Err(format!(
        "cannot read `{text}` as a time: use 2026-11-20T10:00:00Z, 2026-11-20T10:00 or 2026-11-20"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_common_forms() {
        assert_eq!(
            parse_at("2026-11-20T10:00:00Z").unwrap().to_string(),
            "2026-11-20T10:00:00Z"
        );
        assert!(parse_at("2026-11-20T10:00").is_ok());
        assert!(parse_at("2026-11-20 10:00:00").is_ok());
        assert!(parse_at("2026-11-20").is_ok());
        assert!(parse_at("yesterday").is_err());
    }
}
