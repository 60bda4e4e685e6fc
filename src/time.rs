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

/// Parses durations such as `90s`, `30m`, `24h`, `7d`, `2w`, `1h30m` (`0` is zero).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    // In milliseconds: `ms` is a unit too (check timeouts, latencies).
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            's' => 1000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            'w' => 7 * 86_400_000,
            _ => {
                return Err(format!(
                    "`{text}`: unknown unit `{c}` (use ms, s, m, h, d, w, e.g. 30d or 1h30m)"
                ));
            }
        };
        let n: u64 = number
            .parse()
            .map_err(|_| format!("`{text}`: a number must come before `{c}`"))?;
        total = total.saturating_add(n.saturating_mul(unit));
        number.clear();
    }
    if !number.is_empty() || total == 0 {
        return Err(format!(
            "`{text}` is not a duration: use e.g. 90s, 30m, 24h, 7d"
        ));
    }
    Ok(std::time::Duration::from_millis(total))
}

#[cfg(test)]
mod duration_tests {
    use super::parse_duration;

    #[test]
    fn reads_durations() {
        assert_eq!(parse_duration("30d").unwrap().as_secs(), 30 * 86_400);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("0").unwrap().as_secs(), 0);
        assert_eq!(parse_duration("250ms").unwrap().as_millis(), 250);
        assert_eq!(parse_duration("1m5ms").unwrap().as_millis(), 60_005);
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("3y").is_err());
        assert!(parse_duration("").is_err());
    }
}
