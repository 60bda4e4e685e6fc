//! Cron expressions with a time zone: parsing and the next fire time.
//!
//! 5 fields (minute hour day-of-month month day-of-week), or 6 with a seconds
//! field first, or a macro (`@hourly`, `@daily`, `@weekly`, `@monthly`,
//! `@yearly`). Fire times are computed in the schedule's time zone, with croner's
//! Vixie-cron rules at DST changes: a time that does not exist (02:30 on a
//! spring-forward day in Europe/Berlin) fires at the first instant after the gap,
//! and a time that exists twice (fall-back) fires once.

use std::fmt;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// A validated schedule. It keeps the expression, not croner's parsed form:
/// a parsed `Cron` holds a bitfield for every year up to 9999 (about 10 KB),
/// which a daemon with a thousand schedules would keep resident for nothing.
/// Parsing again costs microseconds, once per fire.
#[derive(Clone)]
pub struct Schedule {
    /// The expression as written.
    pub expression: String,
    pub tag: Option<String>,
    /// The time zone's name (`UTC`, `Europe/Berlin`).
    pub timezone_name: String,
    timezone: TimeZone,
}

fn parse_cron(expression: &str) -> Result<Cron, croner::errors::CronError> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expression)
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?} {})", self.expression, self.timezone_name)
    }
}

/// Looks a time zone up by its IANA name.
pub fn timezone(name: &str) -> Result<TimeZone, String> {
    if name.eq_ignore_ascii_case("utc") {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|_| {
        format!("unknown time zone `{name}`: use an IANA name such as UTC, Europe/Berlin or America/New_York")
    })
}

impl Schedule {
    pub fn parse(
        expression: &str,
        tag: Option<String>,
        timezone_name: &str,
    ) -> Result<Schedule, String> {
        let tz = timezone(timezone_name)?;
        let not_cron = |why: String| {
            format!(
                "`{expression}` is not a cron expression ({why}): use 5 fields `minute hour day month weekday` (e.g. `0 2 * * *`), 6 with seconds first, or @hourly/@daily/@weekly/@monthly"
            )
        };
        // croner takes `,` or `1,,2` as a list that matches nothing.
        if let Some(field) = expression
            .split_whitespace()
            .find(|field| field.split(',').any(str::is_empty))
        {
            return Err(not_cron(format!("`{field}` has an empty list item")));
        }
        let cron = parse_cron(expression.trim()).map_err(|e| not_cron(e.to_string()))?;
        // Refused here, once, rather than searched to the year 9999 at every fire.
        if cron
            .find_next_occurrence(&Timestamp::now().to_zoned(tz.clone()), false)
            .is_err()
        {
            return Err(format!(
                "`{expression}` never fires (no such date, e.g. 30 February): fix the day or month"
            ));
        }
        Ok(Schedule {
            expression: expression.trim().to_string(),
            tag,
            timezone_name: timezone_name.to_string(),
            timezone: tz,
        })
    }

    pub fn timezone(&self) -> &TimeZone {
        &self.timezone
    }

    /// The first fire strictly after `after`, or `None` if there is none (a
    /// pattern such as `0 0 31 2 *` never matches).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let zoned = after.to_zoned(self.timezone.clone());
        parse_cron(&self.expression)
            .ok()?
            .find_next_occurrence(&zoned, false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The smallest distance between two consecutive fires seen over the next
    /// few fires: how often the schedule runs, for freshness defaults.
    pub fn interval_hint(&self, from: Timestamp) -> Option<std::time::Duration> {
        let mut previous = self.next_after(from)?;
        let mut smallest: Option<i64> = None;
        for _ in 0..8 {
            let next = self.next_after(previous)?;
            let gap = next.as_second() - previous.as_second();
            smallest = Some(smallest.map_or(gap, |s| s.min(gap)));
            previous = next;
        }
        smallest.map(|s| std::time::Duration::from_secs(s.max(1) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn fires(schedule: &Schedule, from: &str, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut t = at(from);
        for _ in 0..n {
            t = schedule.next_after(t).unwrap();
            out.push(t.to_string());
        }
        out
    }

    #[test]
    fn five_fields_six_fields_and_macros() {
        let daily = Schedule::parse("0 2 * * *", None, "UTC").unwrap();
        assert_eq!(
            fires(&daily, "2026-12-01T02:00:00Z", 2),
            ["2026-12-02T02:00:00Z", "2026-12-03T02:00:00Z"]
        );
        let seconds = Schedule::parse("*/15 * * * * *", None, "UTC").unwrap();
        assert_eq!(
            fires(&seconds, "2026-12-01T00:00:01Z", 2),
            ["2026-12-01T00:00:15Z", "2026-12-01T00:00:30Z"]
        );
        let hourly = Schedule::parse("@hourly", None, "UTC").unwrap();
        assert_eq!(
            fires(&hourly, "2026-12-01T00:30:00Z", 1),
            ["2026-12-01T01:00:00Z"]
        );
        let weekly = Schedule::parse("@weekly", None, "UTC").unwrap();
        // 2026-12-06 is a Sunday.
        assert_eq!(
            fires(&weekly, "2026-12-01T00:00:00Z", 1),
            ["2026-12-06T00:00:00Z"]
        );
        let monthly = Schedule::parse("@monthly", None, "UTC").unwrap();
        assert_eq!(
            fires(&monthly, "2026-12-01T00:00:00Z", 1),
            ["2027-01-01T00:00:00Z"]
        );
        assert!(Schedule::parse("0 2 * *", None, "UTC").is_err());
        assert!(Schedule::parse("61 * * * *", None, "UTC").is_err());
        assert!(Schedule::parse("0 2 * * *", None, "Mars/Olympus").is_err());
    }

    #[test]
    fn berlin_spring_forward_fires_once_after_the_gap() {
        // 2026-03-29: clocks jump from 02:00 CET to 03:00 CEST; 02:30 does not exist.
        let s = Schedule::parse("30 2 * * *", None, "Europe/Berlin").unwrap();
        assert_eq!(
            fires(&s, "2026-03-27T12:00:00Z", 3),
            // 02:30 CET = 01:30Z; on the 29th the first instant after the gap is 03:00 CEST = 01:00Z
            [
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:30:00Z"
            ]
        );
    }

    #[test]
    fn berlin_fall_back_fires_once() {
        // 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 exists twice.
        let s = Schedule::parse("30 2 * * *", None, "Europe/Berlin").unwrap();
        assert_eq!(
            fires(&s, "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
        );
    }

    #[test]
    fn new_york_changes() {
        // 2026-03-08 spring forward at 02:00 EST; 2026-11-01 fall back at 02:00 EDT.
        let s = Schedule::parse("30 2 * * *", None, "America/New_York").unwrap();
        assert_eq!(
            fires(&s, "2026-03-07T12:00:00Z", 2),
            ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]
        );
        let s = Schedule::parse("30 1 * * *", None, "America/New_York").unwrap();
        assert_eq!(
            fires(&s, "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
        );
        // An hourly job in the repeated hour runs in both of its real hours.
        let hourly = Schedule::parse("0 * * * *", None, "America/New_York").unwrap();
        assert_eq!(
            fires(&hourly, "2026-11-01T04:30:00Z", 3),
            [
                "2026-11-01T05:00:00Z",
                "2026-11-01T06:00:00Z",
                "2026-11-01T07:00:00Z"
            ]
        );
    }

    #[test]
    fn interval_hint_is_the_smallest_gap() {
        let s = Schedule::parse("0 2 * * *", None, "UTC").unwrap();
        assert_eq!(
            s.interval_hint(at("2026-12-01T00:00:00Z")),
            Some(std::time::Duration::from_secs(86_400))
        );
    }

    #[test]
    fn a_schedule_that_never_fires_or_matches_nothing_is_refused() {
        let never = Schedule::parse("0 0 31 2 *", None, "UTC").unwrap_err();
        assert!(never.contains("never fires"), "{never}");
        // Found by fuzzing: croner took `,` as an hour list that matches nothing.
        for expression in ["030 , * * *", "0 1,,2 * * *", "0 2, * * *"] {
            let empty = Schedule::parse(expression, None, "Europe/Berlin").unwrap_err();
            assert!(empty.contains("empty list item"), "{expression}: {empty}");
        }
        assert!(Schedule::parse("0 1,2 * * *", None, "UTC").is_ok());
    }
}
