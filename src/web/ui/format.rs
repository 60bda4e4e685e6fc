//! How the pages write sizes, durations, ages and times.

use jiff::Timestamp;

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `1.2 s`, `3 min 4 s`, `2 h 5 min`, `3 d 4 h`.
pub fn duration(seconds: f64) -> String {
    if seconds < 1.0 {
        return format!("{} ms", (seconds * 1000.0).round() as u64);
    }
    if seconds < 10.0 {
        return format!("{seconds:.1} s");
    }
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

/// `5 min ago`, or `in 5 min` for a time to come.
pub fn relative(at: Timestamp, now: Timestamp) -> String {
    let delta = now.as_second() - at.as_second();
    if delta >= 0 {
        format!("{} ago", duration(delta as f64))
    } else {
        format!("in {}", duration(-delta as f64))
    }
}

/// `2026-12-01 20:25 UTC` (to the minute; the exact time is in the `datetime`).
pub fn time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_durations_and_ages_read_naturally() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(duration(1.25), "1.2 s");
        assert_eq!(duration(0.042), "42 ms");
        assert_eq!(duration(75.0), "1 min 15 s");
        assert_eq!(duration(7300.0), "2 h 1 min");
        assert_eq!(duration(90000.0), "1 d 1 h");
        let now: Timestamp = "2026-12-01T20:00:00Z".parse().unwrap();
        let earlier: Timestamp = "2026-12-01T19:55:00Z".parse().unwrap();
        assert_eq!(relative(earlier, now), "5 min 0 s ago");
        assert_eq!(relative(now, earlier), "in 5 min 0 s");
        assert_eq!(time(now), "2026-12-01 20:00 UTC");
    }
}
