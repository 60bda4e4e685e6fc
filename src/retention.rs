//! Retention: which artifacts of a job to keep, with `restic forget` semantics.
//!
//! This module is pure policy: it reads no clock, touches no storage and logs
//! nothing. The caller lists the artifacts ([`Candidate`]), passes "now" and the
//! time zone that defines hours, days, weeks, months and years, and gets one
//! [`Decision`] per candidate back. Deleting is the caller's business.
//!
//! # Rules
//!
//! Good artifacts are sorted newest first (ties: the greater id counts as newer,
//! then the earlier position in the input). Each rule then looks at that list on
//! its own, and an artifact is kept if at least one rule keeps it; every rule that
//! keeps it is listed in [`Decision::Keep`].
//!
//! - `keep_last = N`: the N newest ([`Reason::Last`] carries the rank, 1 = newest).
//! - `keep_within = D`: every artifact created at or after `now - D`, including
//!   artifacts stamped in the future (clock skew).
//! - `keep_hourly/daily/weekly/monthly/yearly = N`: walking newest to oldest, each
//!   artifact is put in the bucket of its period *in `time_zone`* (civil hour, civil
//!   date, ISO 8601 week of [`jiff::civil::Date::iso_week_date`], month, year); the
//!   newest artifact of a bucket is kept, until N distinct buckets have been kept.
//!   The rules count independently: the newest artifact of this week is usually
//!   also the newest of today, and then it uses up one daily *and* one weekly slot.
//!   Buckets are civil periods, as in restic: on a DST day, "daily" means the local
//!   23- or 25-hour day, and at a fall-back transition the repeated hour (02:00 CEST
//!   then 02:00 CET) is a single hourly bucket.
//! - `keep_tags = {tag: N}`: the N newest artifacts carrying that tag.
//!
//! # Safety rules
//!
//! - Only `good` artifacts (complete, not marked bad) count toward any rule and are
//!   kept by one. A bad artifact never occupies a bucket or a `keep_last` slot, so
//!   the next good one takes its place; bad artifacts are always [`Decision::Delete`],
//!   even under an empty policy.
//! - The newest good artifact is always kept ([`Reason::NewestGood`], listed even
//!   when other rules keep it too), so a retention run can never leave a job
//!   without a usable backup.
//! - An empty policy ([`Policy::is_empty`]) keeps every good artifact
//!   ([`Reason::NoPolicy`]): a job without retention settings loses no good artifact.
//!
//! # Differences from restic
//!
//! - `keep_within` is measured from `now`, not from the newest snapshot as restic
//!   does. A job whose backups stopped therefore sees its "within" window drain;
//!   the newest good artifact still survives through [`Reason::NewestGood`]. It is
//!   an exact [`std::time::Duration`] (restic uses calendar years/months/days/hours)
//!   and the boundary is inclusive.
//! - A bucket is counted once even if its artifacts are not contiguous in time
//!   (restic compares with the previous kept bucket only). The two agree except
//!   where clocks were set back across midnight (Antarctica/Casey went from 02:00
//!   +11 back to 23:00 +08 of the previous day in 2010), where restic would keep
//!   that day twice.
//! - restic ≥ 0.17 also keeps the oldest snapshot when a rule has slots left over;
//!   cairn does not: a rule keeps at most N artifacts.
//! - Tags are counted (`keep_tags = {weekly = 3}` keeps the 3 newest tagged
//!   `weekly`); restic's `--keep-tag` keeps all of them.
//! - A count of 0 (or a zero `keep_within`) is inert, like an unset option in
//!   restic; a policy made only of inert rules is empty and keeps everything.
//!
//! # Output
//!
//! [`apply`] returns one `(id, Decision)` per candidate, **in the input order**
//! (candidates with the same id are not merged: each gets its own decision).
//!
//! Applying a policy to the artifacts it kept, with the same `now`, keeps all of
//! them again (the property tests check this).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp, civil, tz::TimeZone};

/// How many artifacts of a job to keep. `None` means the rule is not used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub keep_last: Option<u32>,
    pub keep_within: Option<Duration>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    /// Per tag: keep the newest N artifacts carrying that tag.
    pub keep_tags: BTreeMap<String, u32>,
}

impl Policy {
    /// True when no rule can keep anything: every option is unset or zero and every
    /// tag count is zero. [`apply`] then keeps every good artifact.
    pub fn is_empty(&self) -> bool {
        let counts = [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ];
        counts.iter().all(|c| c.unwrap_or(0) == 0)
            && self.keep_within.is_none_or(|d| d.is_zero())
            && self.keep_tags.values().all(|&n| n == 0)
    }
}

/// One artifact as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub created_at: Timestamp,
    pub tag: Option<String>,
    /// Complete (manifest and data present) and not marked bad.
    pub good: bool,
}

/// What to do with one artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Keep it, for every reason listed (in the order of [`Reason`]'s variants,
    /// tags in name order). Never empty.
    Keep(Vec<Reason>),
    Delete,
}

impl Decision {
    pub fn is_keep(&self) -> bool {
        matches!(self, Decision::Keep(_))
    }

    /// The reasons to keep it; empty for [`Decision::Delete`].
    pub fn reasons(&self) -> &[Reason] {
        match self {
            Decision::Keep(reasons) => reasons,
            Decision::Delete => &[],
        }
    }
}

/// Why an artifact is kept. The strings of the period variants are the bucket:
/// `2026-11-22T14` (hour), `2026-11-22`, `2026-W47` (ISO week), `2026-11`, `2026`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Among the `keep_last` newest; the rank, 1 being the newest.
    Last(u32),
    /// Created within `keep_within` before now.
    Within,
    Hourly(String),
    Daily(String),
    Weekly(String),
    Monthly(String),
    Yearly(String),
    /// Among the newest N carrying this tag.
    Tag(String),
    /// The newest good artifact, which is always kept.
    NewestGood,
    /// The policy is empty, so everything good is kept.
    NoPolicy,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Last(rank) => write!(f, "last #{rank}"),
            Reason::Within => f.write_str("within"),
            Reason::Hourly(bucket) => write!(f, "hourly {bucket}"),
            Reason::Daily(bucket) => write!(f, "daily {bucket}"),
            Reason::Weekly(bucket) => write!(f, "weekly {bucket}"),
            Reason::Monthly(bucket) => write!(f, "monthly {bucket}"),
            Reason::Yearly(bucket) => write!(f, "yearly {bucket}"),
            Reason::Tag(tag) => write!(f, "tag {tag}"),
            Reason::NewestGood => f.write_str("newest good"),
            Reason::NoPolicy => f.write_str("no policy"),
        }
    }
}

/// The calendar periods of the bucket rules.
#[derive(Debug, Clone, Copy)]
enum Period {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    const ALL: [Period; 5] = [
        Period::Hour,
        Period::Day,
        Period::Week,
        Period::Month,
        Period::Year,
    ];

    fn count(self, policy: &Policy) -> Option<u32> {
        match self {
            Period::Hour => policy.keep_hourly,
            Period::Day => policy.keep_daily,
            Period::Week => policy.keep_weekly,
            Period::Month => policy.keep_monthly,
            Period::Year => policy.keep_yearly,
        }
    }

    fn bucket(self, local: civil::DateTime) -> String {
        let (y, m, d) = (local.year(), local.month(), local.day());
        match self {
            Period::Hour => format!("{y:04}-{m:02}-{d:02}T{:02}", local.hour()),
            Period::Day => format!("{y:04}-{m:02}-{d:02}"),
            Period::Week => {
                let week = local.date().iso_week_date();
                format!("{:04}-W{:02}", week.year(), week.week())
            }
            Period::Month => format!("{y:04}-{m:02}"),
            Period::Year => format!("{y:04}"),
        }
    }

    fn reason(self, bucket: String) -> Reason {
        match self {
            Period::Hour => Reason::Hourly(bucket),
            Period::Day => Reason::Daily(bucket),
            Period::Week => Reason::Weekly(bucket),
            Period::Month => Reason::Monthly(bucket),
            Period::Year => Reason::Yearly(bucket),
        }
    }
}

/// Newest first; at equal times the greater id counts as newer (ids sort by time).
fn newest_first(a: &Candidate, b: &Candidate) -> Ordering {
    b.created_at
        .cmp(&a.created_at)
        .then_with(|| b.id.cmp(&a.id))
}

/// The oldest instant `keep_within` still keeps; `None` when `now - within` is
/// before the representable range, i.e. everything is within.
fn within_cutoff(now: Timestamp, within: Duration) -> Option<Timestamp> {
    let within = SignedDuration::try_from(within).ok()?;
    now.checked_sub(within).ok()
}

/// Decides, for each candidate, whether to keep or delete it (see the module
/// documentation). The result has one entry per candidate, in the input order.
pub fn apply(
    policy: &Policy,
    candidates: &[Candidate],
    now: Timestamp,
    time_zone: &TimeZone,
) -> Vec<(String, Decision)> {
    let mut reasons: Vec<Vec<Reason>> = vec![Vec::new(); candidates.len()];

    // Indices of the good candidates, newest first.
    let mut order: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].good)
        .collect();
    order.sort_by(|&a, &b| newest_first(&candidates[a], &candidates[b]).then(a.cmp(&b)));

    let empty = policy.is_empty();
    if !empty {
        if let Some(n) = policy.keep_last {
            for (rank, &i) in (1..=n).zip(&order) {
                reasons[i].push(Reason::Last(rank));
            }
        }

        if let Some(within) = policy.keep_within.filter(|d| !d.is_zero()) {
            let cutoff = within_cutoff(now, within);
            for &i in &order {
                if cutoff.is_none_or(|cutoff| candidates[i].created_at >= cutoff) {
                    reasons[i].push(Reason::Within);
                }
            }
        }

        for period in Period::ALL {
            let Some(n) = period.count(policy).filter(|&n| n > 0) else {
                continue;
            };
            let mut seen = HashSet::new();
            for &i in &order {
                if seen.len() >= n as usize {
                    break;
                }
                let local = time_zone.to_datetime(candidates[i].created_at);
                let bucket = period.bucket(local);
                if seen.insert(bucket.clone()) {
                    reasons[i].push(period.reason(bucket));
                }
            }
        }

        for (tag, &n) in &policy.keep_tags {
            let tagged = order
                .iter()
                .filter(|&&i| candidates[i].tag.as_deref() == Some(tag.as_str()));
            for &i in tagged.take(n as usize) {
                reasons[i].push(Reason::Tag(tag.clone()));
            }
        }
    }

    if let Some(&newest) = order.first() {
        reasons[newest].push(Reason::NewestGood);
    }
    if empty {
        for &i in &order {
            reasons[i].push(Reason::NoPolicy);
        }
    }

    candidates
        .iter()
        .zip(reasons)
        .map(|(candidate, reasons)| {
            let decision = if reasons.is_empty() {
                Decision::Delete
            } else {
                Decision::Keep(reasons)
            };
            (candidate.id.clone(), decision)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    const DAY: u64 = 86_400;
    const BERLIN_POSIX: &str = "CET-1CEST,M3.5.0,M10.5.0/3";
    /// Like Antarctica/Casey in 2010: clocks go back from 02:00 +11 to 23:00 +08 of
    /// the previous day (here on the first Sunday of March, 2025-03-01T15:00Z), so
    /// that Sunday's bucket is split in two by a piece of Saturday.
    const CASEY_LIKE_POSIX: &str = "<+08>-8<+11>-11,M10.1.0,M3.1.0";
    const CASEY_LIKE_TRANSITION: &str = "2025-03-01T15:00:00Z";

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").unwrap_or_else(|_| TimeZone::posix(BERLIN_POSIX).unwrap())
    }

    fn good(id: impl Into<String>, at: Timestamp) -> Candidate {
        Candidate {
            id: id.into(),
            created_at: at,
            tag: None,
            good: true,
        }
    }

    /// One good artifact every `step` from `first` to `last` (inclusive), named by its
    /// UTC time (`2026-11-22T02:00:00Z`).
    fn every(first: &str, last: &str, step: SignedDuration) -> Vec<Candidate> {
        let (mut at, last) = (ts(first), ts(last));
        let mut out = Vec::new();
        while at <= last {
            out.push(good(at.to_string(), at));
            at = at.checked_add(step).unwrap();
        }
        out
    }

    /// One good artifact a day at 02:00 UTC, named by its date.
    fn daily(first: &str, last: &str) -> Vec<Candidate> {
        let (mut date, last) = (first.parse::<civil::Date>().unwrap(), last.parse().unwrap());
        let mut out = Vec::new();
        while date <= last {
            let at = date.at(2, 0, 0, 0).to_zoned(TimeZone::UTC).unwrap();
            out.push(good(date.to_string(), at.timestamp()));
            date = date.tomorrow().unwrap();
        }
        out
    }

    fn kept_ids(decisions: &[(String, Decision)]) -> Vec<String> {
        let mut ids: Vec<String> = decisions
            .iter()
            .filter(|(_, d)| d.is_keep())
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    fn decision_of<'a>(decisions: &'a [(String, Decision)], id: &str) -> &'a Decision {
        &decisions.iter().find(|(i, _)| i == id).unwrap().1
    }

    struct Case {
        name: &'static str,
        policy: Policy,
        candidates: Vec<Candidate>,
        now: Timestamp,
        tz: TimeZone,
        /// The kept ids; order does not matter.
        kept: Vec<&'static str>,
    }

    fn cases() -> Vec<Case> {
        let hour = SignedDuration::from_hours(1);
        let mut cases = Vec::new();

        // "Keep the 10 newest" (keep_last=10) over 25 hourly backups.
        cases.push(Case {
            name: "keep the 10 newest",
            policy: Policy {
                keep_last: Some(10),
                ..Policy::default()
            },
            candidates: every("2026-11-21T00:00:00Z", "2026-11-22T00:00:00Z", hour),
            now: ts("2026-11-22T00:30:00Z"),
            tz: TimeZone::UTC,
            kept: vec![
                "2026-11-21T15:00:00Z",
                "2026-11-21T16:00:00Z",
                "2026-11-21T17:00:00Z",
                "2026-11-21T18:00:00Z",
                "2026-11-21T19:00:00Z",
                "2026-11-21T20:00:00Z",
                "2026-11-21T21:00:00Z",
                "2026-11-21T22:00:00Z",
                "2026-11-21T23:00:00Z",
                "2026-11-22T00:00:00Z",
            ],
        });

        // "Delete backups older than 30 days": cutoff 2026-10-23T12:00Z, so
        // 2026-10-24 .. 2026-11-22 (30 days) stay.
        let mut kept = Vec::new();
        for day in 24..=31 {
            kept.push(format!("2026-10-{day:02}"));
        }
        for day in 1..=22 {
            kept.push(format!("2026-11-{day:02}"));
        }
        cases.push(Case {
            name: "delete backups older than 30 days",
            policy: Policy {
                keep_within: Some(Duration::from_secs(30 * DAY)),
                ..Policy::default()
            },
            candidates: daily("2026-09-01", "2026-11-22"),
            now: ts("2026-11-22T12:00:00Z"),
            tz: TimeZone::UTC,
            kept: kept.into_iter().map(|s| &*s.leak()).collect(),
        });

        // The window's boundary is inclusive.
        cases.push(Case {
            name: "keep_within boundary is inclusive",
            policy: Policy {
                keep_within: Some(Duration::from_secs(DAY)),
                ..Policy::default()
            },
            candidates: vec![
                good("older", ts("2026-11-21T11:59:59.999999999Z")),
                good("edge", ts("2026-11-21T12:00:00Z")),
                good("future", ts("2026-11-23T00:00:00Z")),
            ],
            now: ts("2026-11-22T12:00:00Z"),
            tz: TimeZone::UTC,
            kept: vec!["edge", "future"],
        });

        // "daily 7, weekly 4, monthly 12" over a year of daily backups ending on
        // Thursday 2026-11-19 (ISO week 2026-W47). The 4 weeks' newest are 11-19
        // (also a daily), 11-15 (also a daily), 11-08 and 11-01; the 12 months'
        // newest are 11-19 (also a daily) and the last day of each month back to
        // 2025-12.
        cases.push(Case {
            name: "daily 7, weekly 4, monthly 12 over a year",
            policy: Policy {
                keep_daily: Some(7),
                keep_weekly: Some(4),
                keep_monthly: Some(12),
                ..Policy::default()
            },
            candidates: daily("2025-11-20", "2026-11-19"),
            now: ts("2026-11-19T12:00:00Z"),
            tz: TimeZone::UTC,
            kept: vec![
                "2026-11-19",
                "2026-11-18",
                "2026-11-17",
                "2026-11-16",
                "2026-11-15",
                "2026-11-14",
                "2026-11-13",
                "2026-11-08",
                "2026-11-01",
                "2026-10-31",
                "2026-09-30",
                "2026-08-31",
                "2026-07-31",
                "2026-06-30",
                "2026-05-31",
                "2026-04-30",
                "2026-03-31",
                "2026-02-28",
                "2026-01-31",
                "2025-12-31",
            ],
        });

        // Hourly: a backup every 20 minutes, the newest of each of 5 hours.
        cases.push(Case {
            name: "hourly 5 with backups every 20 minutes",
            policy: Policy {
                keep_hourly: Some(5),
                ..Policy::default()
            },
            candidates: every(
                "2026-11-22T08:00:00Z",
                "2026-11-22T13:40:00Z",
                SignedDuration::from_mins(20),
            ),
            now: ts("2026-11-22T14:00:00Z"),
            tz: TimeZone::UTC,
            kept: vec![
                "2026-11-22T09:40:00Z",
                "2026-11-22T10:40:00Z",
                "2026-11-22T11:40:00Z",
                "2026-11-22T12:40:00Z",
                "2026-11-22T13:40:00Z",
            ],
        });

        // Yearly: monthly backups on the 1st since 2022; the newest of 3 years.
        let monthly: Vec<Candidate> = (2022..=2026)
            .flat_map(|y| (1..=12).map(move |m| civil::date(y, m, 1)))
            .filter(|d| *d <= civil::date(2026, 11, 1))
            .map(|d| {
                let at = d.at(3, 0, 0, 0).to_zoned(TimeZone::UTC).unwrap();
                good(d.to_string(), at.timestamp())
            })
            .collect();
        cases.push(Case {
            name: "yearly 3 over monthly backups",
            policy: Policy {
                keep_yearly: Some(3),
                ..Policy::default()
            },
            candidates: monthly,
            now: ts("2026-11-22T00:00:00Z"),
            tz: TimeZone::UTC,
            kept: vec!["2024-12-01", "2025-12-01", "2026-11-01"],
        });

        // Tags: 60 days, Sundays tagged "weekly", other days "daily"; keep 3
        // weekly-tagged and 7 daily-tagged (2026-11-22 is a Sunday).
        let tagged: Vec<Candidate> = daily("2026-09-24", "2026-11-22")
            .into_iter()
            .map(|mut c| {
                let date: civil::Date = c.id.parse().unwrap();
                let tag = if date.weekday() == civil::Weekday::Sunday {
                    "weekly"
                } else {
                    "daily"
                };
                c.tag = Some(tag.to_string());
                c
            })
            .collect();
        cases.push(Case {
            name: "keep 3 weekly-tagged and 7 daily-tagged",
            policy: Policy {
                keep_tags: BTreeMap::from([("weekly".to_string(), 3), ("daily".to_string(), 7)]),
                ..Policy::default()
            },
            candidates: tagged,
            now: ts("2026-11-22T12:00:00Z"),
            tz: TimeZone::UTC,
            kept: vec![
                "2026-11-22", // weekly
                "2026-11-15", // weekly
                "2026-11-08", // weekly
                "2026-11-21",
                "2026-11-20",
                "2026-11-19",
                "2026-11-18",
                "2026-11-17",
                "2026-11-16",
                "2026-11-14",
            ],
        });

        // Bad artifacts take no slot and are never kept: the two newest are bad,
        // so keep_last=3 keeps the three newest good; on 11-19 the bad evening
        // backup does not hide the good morning one from keep_daily.
        let mut with_bad = vec![
            good("11-22 bad", ts("2026-11-22T02:00:00Z")),
            good("11-21 bad", ts("2026-11-21T02:00:00Z")),
            good("11-20", ts("2026-11-20T02:00:00Z")),
            good("11-19 evening bad", ts("2026-11-19T22:00:00Z")),
            good("11-19 morning", ts("2026-11-19T06:00:00Z")),
            good("11-18", ts("2026-11-18T02:00:00Z")),
            good("11-17", ts("2026-11-17T02:00:00Z")),
            good("11-16", ts("2026-11-16T02:00:00Z")),
            good("11-16 bad", ts("2026-11-16T01:00:00Z")),
        ];
        for c in &mut with_bad {
            c.good = !c.id.ends_with("bad");
        }
        cases.push(Case {
            name: "bad artifacts are deleted and take no slot",
            policy: Policy {
                keep_last: Some(1),
                keep_daily: Some(3),
                ..Policy::default()
            },
            candidates: with_bad.clone(),
            now: ts("2026-11-22T12:00:00Z"),
            tz: TimeZone::UTC,
            kept: vec!["11-20", "11-19 morning", "11-18"],
        });

        // Only bad artifacts: nothing is good, so nothing is kept.
        let mut all_bad = with_bad.clone();
        for c in &mut all_bad {
            c.good = false;
        }
        cases.push(Case {
            name: "only bad artifacts",
            policy: Policy {
                keep_last: Some(5),
                ..Policy::default()
            },
            candidates: all_bad,
            now: ts("2026-11-22T12:00:00Z"),
            tz: TimeZone::UTC,
            kept: vec![],
        });

        // An empty policy keeps every good artifact (and still no bad one).
        cases.push(Case {
            name: "empty policy keeps everything good",
            policy: Policy::default(),
            candidates: with_bad.clone(),
            now: ts("2026-11-22T12:00:00Z"),
            tz: TimeZone::UTC,
            kept: vec!["11-20", "11-19 morning", "11-18", "11-17", "11-16"],
        });

        // Zero counts are inert, so a policy of zeros is empty too.
        cases.push(Case {
            name: "a policy of zeros is empty",
            policy: Policy {
                keep_last: Some(0),
                keep_within: Some(Duration::ZERO),
                keep_daily: Some(0),
                keep_tags: BTreeMap::from([("daily".to_string(), 0)]),
                ..Policy::default()
            },
            candidates: daily("2026-11-01", "2026-11-05"),
            now: ts("2026-11-22T12:00:00Z"),
            tz: TimeZone::UTC,
            kept: vec![
                "2026-11-01",
                "2026-11-02",
                "2026-11-03",
                "2026-11-04",
                "2026-11-05",
            ],
        });

        // Backups stopped two months ago: keep_within keeps nothing, but the newest
        // good artifact survives.
        cases.push(Case {
            name: "newest good survives a drained window",
            policy: Policy {
                keep_within: Some(Duration::from_secs(7 * DAY)),
                ..Policy::default()
            },
            candidates: daily("2026-09-01", "2026-09-20"),
            now: ts("2026-11-22T12:00:00Z"),
            tz: TimeZone::UTC,
            kept: vec!["2026-09-20"],
        });

        // DST starts in Berlin on Sunday 2026-03-29 (a 23-hour day). Hourly
        // backups; the last one of local 03-29 is 23:00 CEST = 21:00Z, of 03-28
        // 23:00 CET = 22:00Z. (UTC days would pick 23:00Z both times.)
        cases.push(Case {
            name: "daily buckets across the spring DST change in Berlin",
            policy: Policy {
                keep_daily: Some(3),
                ..Policy::default()
            },
            candidates: every("2026-03-27T20:00:00Z", "2026-03-30T03:00:00Z", hour),
            now: ts("2026-03-30T04:00:00Z"),
            tz: berlin(),
            kept: vec![
                "2026-03-28T22:00:00Z",
                "2026-03-29T21:00:00Z",
                "2026-03-30T03:00:00Z",
            ],
        });

        // DST ends on Sunday 2026-10-25 (a 25-hour day): the last of local 10-25 is
        // 23:00 CET = 22:00Z, of 10-24 23:00 CEST = 21:00Z.
        cases.push(Case {
            name: "daily buckets across the autumn DST change in Berlin",
            policy: Policy {
                keep_daily: Some(3),
                ..Policy::default()
            },
            candidates: every("2026-10-23T20:00:00Z", "2026-10-26T03:00:00Z", hour),
            now: ts("2026-10-26T04:00:00Z"),
            tz: berlin(),
            kept: vec![
                "2026-10-24T21:00:00Z",
                "2026-10-25T22:00:00Z",
                "2026-10-26T03:00:00Z",
            ],
        });

        // The repeated hour of the autumn change is one civil hour, 02 (as restic):
        // 02:30 CEST (00:30Z) and 02:30 CET (01:30Z) share a bucket.
        cases.push(Case {
            name: "hourly buckets: the repeated hour is one bucket",
            policy: Policy {
                keep_hourly: Some(3),
                ..Policy::default()
            },
            candidates: every("2026-10-24T23:30:00Z", "2026-10-25T02:30:00Z", hour),
            now: ts("2026-10-25T03:00:00Z"),
            tz: berlin(),
            kept: vec![
                "2026-10-24T23:30:00Z",
                "2026-10-25T01:30:00Z",
                "2026-10-25T02:30:00Z",
            ],
        });

        // A day split by a clock set back across midnight counts once: 14:30Z
        // (01:30 Sunday +11) is in the bucket 16:30Z (00:30 Sunday +08) already
        // used, so the third day is Friday. (restic would keep 14:30Z.)
        cases.push(Case {
            name: "a day split by the clock going back across midnight counts once",
            policy: Policy {
                keep_daily: Some(3),
                ..Policy::default()
            },
            candidates: [
                "2025-02-28T02:00:00Z",
                "2025-03-01T02:00:00Z",
                "2025-03-01T12:30:00Z",
                "2025-03-01T13:30:00Z",
                "2025-03-01T14:30:00Z",
                "2025-03-01T15:30:00Z",
                "2025-03-01T16:30:00Z",
            ]
            .into_iter()
            .map(|at| good(at, ts(at)))
            .collect(),
            now: ts("2025-03-02T00:00:00Z"),
            tz: TimeZone::posix(CASEY_LIKE_POSIX).unwrap(),
            kept: vec![
                "2025-02-28T02:00:00Z",
                "2025-03-01T15:30:00Z",
                "2025-03-01T16:30:00Z",
            ],
        });

        // ISO weeks cross the year: 2026-12-28 .. 2027-01-03 is 2026-W53.
        cases.push(Case {
            name: "weekly buckets follow ISO weeks across new year",
            policy: Policy {
                keep_weekly: Some(3),
                ..Policy::default()
            },
            candidates: daily("2026-12-20", "2027-01-05"),
            now: ts("2027-01-05T12:00:00Z"),
            tz: TimeZone::UTC,
            kept: vec!["2026-12-27", "2027-01-03", "2027-01-05"],
        });

        cases
    }

    #[test]
    fn table_of_user_policies() {
        let mut failures = Vec::new();
        for case in cases() {
            let decisions = apply(&case.policy, &case.candidates, case.now, &case.tz);
            let got = kept_ids(&decisions);
            let mut want: Vec<String> = case.kept.iter().map(|s| s.to_string()).collect();
            want.sort();
            if got != want {
                failures.push(format!("{}:\n  want {want:?}\n  got  {got:?}", case.name));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn reasons_name_every_rule_and_bucket() {
        let policy = Policy {
            keep_last: Some(2),
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_monthly: Some(12),
            ..Policy::default()
        };
        let candidates = daily("2025-11-20", "2026-11-19");
        let now = ts("2026-11-19T12:00:00Z");
        let decisions = apply(&policy, &candidates, now, &TimeZone::UTC);
        assert_eq!(
            decision_of(&decisions, "2026-11-19"),
            &Decision::Keep(vec![
                Reason::Last(1),
                Reason::Daily("2026-11-19".into()),
                Reason::Weekly("2026-W47".into()),
                Reason::Monthly("2026-11".into()),
                Reason::NewestGood,
            ])
        );
        assert_eq!(
            decision_of(&decisions, "2026-11-18").reasons(),
            [Reason::Last(2), Reason::Daily("2026-11-18".into())]
        );
        assert_eq!(
            decision_of(&decisions, "2026-11-15").reasons(),
            [
                Reason::Daily("2026-11-15".into()),
                Reason::Weekly("2026-W46".into())
            ]
        );
        assert_eq!(
            decision_of(&decisions, "2026-02-28").reasons(),
            [Reason::Monthly("2026-02".into())]
        );
        assert_eq!(decision_of(&decisions, "2026-11-12"), &Decision::Delete);

        // Hourly and yearly labels, in Berlin time.
        let policy = Policy {
            keep_hourly: Some(1),
            keep_yearly: Some(1),
            keep_within: Some(Duration::from_secs(3600)),
            keep_tags: BTreeMap::from([("a".into(), 1), ("b".into(), 1)]),
            ..Policy::default()
        };
        let mut c = good("x", ts("2026-12-31T23:30:00Z"));
        c.tag = Some("b".into());
        let decisions = apply(&policy, &[c], ts("2026-12-31T23:45:00Z"), &berlin());
        assert_eq!(
            decisions[0].1.reasons(),
            [
                Reason::Within,
                Reason::Hourly("2027-01-01T00".into()),
                Reason::Yearly("2027".into()),
                Reason::Tag("b".into()),
                Reason::NewestGood,
            ]
        );
        assert_eq!(
            Reason::Weekly("2026-W47".into()).to_string(),
            "weekly 2026-W47"
        );
    }

    #[test]
    fn empty_policy_and_newest_good_reasons() {
        let candidates = vec![
            good("old", ts("2026-01-01T00:00:00Z")),
            good("new", ts("2026-02-01T00:00:00Z")),
        ];
        let now = ts("2026-03-01T00:00:00Z");
        assert!(Policy::default().is_empty());
        let decisions = apply(&Policy::default(), &candidates, now, &TimeZone::UTC);
        assert_eq!(decisions[0].1.reasons(), [Reason::NoPolicy]);
        assert_eq!(
            decisions[1].1.reasons(),
            [Reason::NewestGood, Reason::NoPolicy]
        );

        // keep_last=1 keeps "new", which is also the newest good.
        let policy = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        assert!(!policy.is_empty());
        let decisions = apply(&policy, &candidates, now, &TimeZone::UTC);
        assert_eq!(decisions[0], ("old".to_string(), Decision::Delete));
        assert_eq!(
            decisions[1].1.reasons(),
            [Reason::Last(1), Reason::NewestGood]
        );

        assert!(apply(&policy, &[], now, &TimeZone::UTC).is_empty());
    }

    #[test]
    fn output_is_in_input_order_with_duplicates_kept_apart() {
        let candidates = vec![
            good("b", ts("2026-01-01T00:00:00Z")),
            good("a", ts("2026-03-01T00:00:00Z")),
            good("b", ts("2026-02-01T00:00:00Z")),
        ];
        let policy = Policy {
            keep_last: Some(2),
            ..Policy::default()
        };
        let decisions = apply(
            &policy,
            &candidates,
            ts("2026-04-01T00:00:00Z"),
            &TimeZone::UTC,
        );
        assert_eq!(decisions.len(), 3);
        assert_eq!(decisions[0], ("b".to_string(), Decision::Delete));
        assert_eq!(decisions[1].0, "a");
        assert_eq!(decisions[1].1.reasons()[0], Reason::Last(1));
        assert_eq!(
            decisions[2],
            ("b".to_string(), Decision::Keep(vec![Reason::Last(2)]))
        );
    }

    #[test]
    fn ties_are_broken_by_id_whatever_the_input_order() {
        let at = ts("2026-01-01T00:00:00Z");
        let policy = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        for candidates in [
            vec![good("x-1", at), good("x-2", at)],
            vec![good("x-2", at), good("x-1", at)],
        ] {
            let decisions = apply(&policy, &candidates, at, &TimeZone::UTC);
            assert_eq!(kept_ids(&decisions), ["x-2"]);
        }
    }

    #[test]
    fn huge_keep_within_keeps_everything() {
        let policy = Policy {
            keep_within: Some(Duration::MAX),
            ..Policy::default()
        };
        let candidates = vec![
            good("min", Timestamp::MIN),
            good("now", ts("2026-01-01T00:00:00Z")),
        ];
        let decisions = apply(&policy, &candidates, Timestamp::MAX, &TimeZone::UTC);
        assert_eq!(kept_ids(&decisions), ["min", "now"]);
        assert_eq!(decisions[0].1.reasons(), [Reason::Within]);
    }

    // ---- property tests against a brute-force model ----

    /// Bucket labels computed independently of `Period::bucket`, through strftime
    /// (`%G-W%V` is the ISO week).
    fn model_bucket(at: Timestamp, tz: &TimeZone, format: &str) -> String {
        at.to_zoned(tz.clone()).strftime(format).to_string()
    }

    /// The reference model: for each rule and each artifact, decide by looking at
    /// the artifacts that are newer than it. Quadratic and obvious.
    fn model(
        policy: &Policy,
        candidates: &[Candidate],
        now: Timestamp,
        tz: &TimeZone,
    ) -> Vec<(String, Decision)> {
        let n = candidates.len();
        // `newer(j, i)`: j comes before i in "newest first" order.
        let key = |i: usize| {
            (
                std::cmp::Reverse(candidates[i].created_at),
                std::cmp::Reverse(candidates[i].id.clone()),
                i,
            )
        };
        let newer = |j: usize, i: usize| key(j) < key(i);
        let good: Vec<usize> = (0..n).filter(|&i| candidates[i].good).collect();
        let newer_good = |i: usize| good.iter().copied().filter(move |&j| newer(j, i));

        let active = |c: Option<u32>| c.filter(|&c| c > 0);
        let empty = active(policy.keep_last).is_none()
            && active(policy.keep_hourly).is_none()
            && active(policy.keep_daily).is_none()
            && active(policy.keep_weekly).is_none()
            && active(policy.keep_monthly).is_none()
            && active(policy.keep_yearly).is_none()
            && policy.keep_within.is_none_or(|d| d == Duration::ZERO)
            && policy.keep_tags.values().all(|&c| c == 0);

        type Rule = (Option<u32>, &'static str, fn(String) -> Reason);
        let periods: [Rule; 5] = [
            (policy.keep_hourly, "%Y-%m-%dT%H", Reason::Hourly),
            (policy.keep_daily, "%Y-%m-%d", Reason::Daily),
            (policy.keep_weekly, "%G-W%V", Reason::Weekly),
            (policy.keep_monthly, "%Y-%m", Reason::Monthly),
            (policy.keep_yearly, "%Y", Reason::Yearly),
        ];
        let labels: Vec<Vec<String>> = periods
            .iter()
            .map(|(_, format, _)| {
                candidates
                    .iter()
                    .map(|c| model_bucket(c.created_at, tz, format))
                    .collect()
            })
            .collect();

        let mut out = Vec::new();
        for (i, c) in candidates.iter().enumerate() {
            let mut reasons = Vec::new();
            if c.good && !empty {
                let newer_count = newer_good(i).count();
                if let Some(last) = active(policy.keep_last)
                    && newer_count < last as usize
                {
                    reasons.push(Reason::Last(newer_count as u32 + 1));
                }
                if let Some(within) = policy.keep_within.filter(|d| !d.is_zero()) {
                    // age = now - created_at; negative ages (future) are within.
                    let age = now.duration_since(c.created_at);
                    let within_it = age.is_negative() || Duration::try_from(age).unwrap() <= within;
                    if within_it {
                        reasons.push(Reason::Within);
                    }
                }
                for ((count, _, reason), labels) in periods.iter().zip(&labels) {
                    let Some(count) = active(*count) else {
                        continue;
                    };
                    let mine = &labels[i];
                    let first_of_bucket = newer_good(i).all(|j| &labels[j] != mine);
                    let newer_buckets: BTreeSet<&String> =
                        newer_good(i).map(|j| &labels[j]).collect();
                    if first_of_bucket && newer_buckets.len() < count as usize {
                        reasons.push(reason(mine.clone()));
                    }
                }
                for (tag, &count) in &policy.keep_tags {
                    if c.tag.as_ref() == Some(tag)
                        && newer_good(i)
                            .filter(|&j| candidates[j].tag.as_ref() == Some(tag))
                            .count()
                            < count as usize
                    {
                        reasons.push(Reason::Tag(tag.clone()));
                    }
                }
            }
            if c.good && newer_good(i).next().is_none() {
                reasons.push(Reason::NewestGood);
            }
            if c.good && empty {
                reasons.push(Reason::NoPolicy);
            }
            let decision = if reasons.is_empty() {
                Decision::Delete
            } else {
                Decision::Keep(reasons)
            };
            out.push((c.id.clone(), decision));
        }
        out
    }

    fn zones() -> Vec<TimeZone> {
        vec![
            TimeZone::UTC,
            TimeZone::posix(BERLIN_POSIX).unwrap(),
            TimeZone::posix("EST5EDT,M3.2.0,M11.1.0").unwrap(),
            // Lord Howe: a 30-minute DST shift.
            TimeZone::posix("<+1030>-10:30<+11>-11,M10.1.0,M4.1.0").unwrap(),
            // Brazil's old rule: clocks go back from 00:00 to 23:00 of the day before.
            TimeZone::posix("<-03>3<-02>,M10.3.0/0,M2.3.0/0").unwrap(),
            // Buckets that are not contiguous in time.
            TimeZone::posix(CASEY_LIKE_POSIX).unwrap(),
            TimeZone::fixed(jiff::tz::offset(-12)),
            TimeZone::fixed(jiff::tz::offset(14)),
        ]
    }

    const TAGS: [&str; 3] = ["daily", "weekly", "manual"];

    /// Creation times, in seconds after 2024-01-01T00:00Z.
    fn arb_times() -> impl Strategy<Value = Vec<i64>> {
        let spread = (1i64..1100).prop_flat_map(|span_days| {
            // Spans from one day to three years, so that dense and sparse sets both
            // occur; seconds sometimes fixed, so that equal times occur.
            let day = DAY as i64;
            let one = (
                0..span_days,
                prop_oneof![0..day, Just(0), Just(7200), Just(day - 1)],
            )
                .prop_map(move |(d, s)| d * day + s);
            prop::collection::vec(one, 0..=200)
        });
        // Minutes around the Casey-like transition, where buckets are split.
        let transition = ts(CASEY_LIKE_TRANSITION)
            .duration_since(ts("2024-01-01T00:00:00Z"))
            .as_secs();
        let cluster = prop::collection::vec(
            (-300i64..300).prop_map(move |m| transition + m * 60),
            0..=60,
        );
        prop_oneof![3 => spread, 1 => cluster]
    }

    fn arb_candidates() -> impl Strategy<Value = Vec<Candidate>> {
        arb_times()
            .prop_flat_map(|times| {
                let n = times.len();
                let extra = (
                    prop::bool::weighted(0.85),
                    prop::option::of(prop::sample::select(TAGS.to_vec())),
                );
                (Just(times), prop::collection::vec(extra, n))
            })
            .prop_map(|(times, extras)| {
                let base = ts("2024-01-01T00:00:00Z");
                times
                    .into_iter()
                    .zip(extras)
                    .enumerate()
                    .map(|(i, (secs, (good, tag)))| Candidate {
                        // Ids do not follow time, so ties exercise the id order.
                        id: format!("a{:03}", (i * 37) % 211),
                        created_at: base.checked_add(SignedDuration::from_secs(secs)).unwrap(),
                        tag: tag.map(str::to_string),
                        good,
                    })
                    .collect()
            })
    }

    fn arb_policy() -> impl Strategy<Value = Policy> {
        let count = || prop::option::weighted(0.4, 0u32..15);
        (
            prop::option::weighted(0.3, 0u32..12),
            prop::option::weighted(
                0.3,
                prop_oneof![
                    (0u64..900).prop_map(|d| Duration::from_secs(d * DAY)),
                    (0u64..900 * DAY).prop_map(Duration::from_secs),
                ],
            ),
            (count(), count(), count(), count(), count()),
            prop::collection::btree_map(
                prop::sample::select(vec!["daily", "weekly", "manual", "absent"])
                    .prop_map(str::to_string),
                0u32..6,
                0..3,
            ),
        )
            .prop_map(
                |(keep_last, keep_within, (hourly, daily, weekly, monthly, yearly), tags)| Policy {
                    keep_last,
                    keep_within,
                    keep_hourly: hourly,
                    keep_daily: daily,
                    keep_weekly: weekly,
                    keep_monthly: monthly,
                    keep_yearly: yearly,
                    keep_tags: tags,
                },
            )
    }

    fn arb_input() -> impl Strategy<Value = (Policy, Vec<Candidate>, Timestamp, TimeZone)> {
        (
            arb_policy(),
            arb_candidates(),
            // now: from 30 days before the start (everything in the future) to
            // ~4 years after it; sometimes at midnight UTC, so that whole-day
            // windows end exactly on artifacts made at midnight.
            prop_oneof![
                -30i64 * DAY as i64..1500 * DAY as i64,
                (-30i64..1500).prop_map(|d| d * DAY as i64),
            ],
            0..zones().len(),
        )
            .prop_map(|(policy, candidates, now, zone)| {
                let now = ts("2024-01-01T00:00:00Z")
                    .checked_add(SignedDuration::from_secs(now))
                    .unwrap();
                (policy, candidates, now, zones().swap_remove(zone))
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn matches_the_model(
            (policy, candidates, now, tz) in arb_input(),
            pick in any::<prop::sample::Index>(),
        ) {
            let got = apply(&policy, &candidates, now, &tz);
            let want = model(&policy, &candidates, now, &tz);
            prop_assert_eq!(got, want);

            // Again with a window that ends exactly on one of the artifacts.
            if !candidates.is_empty() {
                let edge = candidates[pick.index(candidates.len())].created_at;
                if let Ok(within) = Duration::try_from(now.duration_since(edge)) {
                    let policy = Policy { keep_within: Some(within), ..policy };
                    let got = apply(&policy, &candidates, now, &tz);
                    let want = model(&policy, &candidates, now, &tz);
                    prop_assert_eq!(got, want);
                }
            }
        }

        #[test]
        fn invariants((policy, candidates, now, tz) in arb_input()) {
            let got = apply(&policy, &candidates, now, &tz);

            // One decision per input, in the input order.
            prop_assert_eq!(got.len(), candidates.len());
            for ((id, decision), c) in got.iter().zip(&candidates) {
                prop_assert_eq!(id, &c.id);
                // Bad artifacts are never kept; kept ones have a reason.
                if !c.good {
                    prop_assert_eq!(decision, &Decision::Delete);
                }
                if let Decision::Keep(reasons) = decision {
                    prop_assert!(!reasons.is_empty());
                }
            }

            // The newest good artifact is kept, and only it has NewestGood.
            let newest = (0..candidates.len())
                .filter(|&i| candidates[i].good)
                .min_by(|&a, &b| newest_first(&candidates[a], &candidates[b]).then(a.cmp(&b)));
            for (i, (_, decision)) in got.iter().enumerate() {
                let marked = decision.reasons().contains(&Reason::NewestGood);
                prop_assert_eq!(marked, Some(i) == newest);
            }

            // The input order does not matter.
            let mut reversed = candidates.clone();
            reversed.reverse();
            let mut again = apply(&policy, &reversed, now, &tz);
            again.reverse();
            prop_assert_eq!(&again, &got);

            // Idempotence: applying the policy to what it kept keeps all of it,
            // for the same reasons.
            let (kept, kept_decisions): (Vec<Candidate>, Vec<(String, Decision)>) = candidates
                .iter()
                .cloned()
                .zip(got.iter().cloned())
                .filter(|(_, (_, d))| d.is_keep())
                .unzip();
            let second = apply(&policy, &kept, now, &tz);
            prop_assert_eq!(second, kept_decisions);
        }
    }
}
