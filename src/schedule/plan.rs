//! The daemon's plan: which task fires when. Pure: it reads no clock and
//! touches no storage; the daemon passes "now" and persists the marks.
//!
//! Each entry has a stable key (`backup:app#0`). Its *mark* is the nominal time
//! of the last fire that was handled, persisted in the state store, so that a
//! restarted daemon knows what it missed. Fires missed while the daemon was down
//! (or the machine slept, or the clock jumped) are collapsed into one.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::config::CatchUp;
use crate::cron::Schedule;
use crate::state::Trigger;

/// When an entry fires.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // few entries, built once per plan
pub enum When {
    Cron(Schedule),
    /// Every interval, counted from the last fire (checks).
    Every(Duration),
}

impl When {
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            When::Cron(schedule) => schedule.next_after(t),
            When::Every(interval) => {
                let step = SignedDuration::try_from(*interval).ok()?;
                t.checked_add(step.max(SignedDuration::from_secs(1))).ok()
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            When::Cron(s) => format!("{} ({})", s.expression, s.timezone_name),
            When::Every(d) => format!("every {}s", d.as_secs()),
        }
    }
}

/// One scheduled task.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Stable across restarts and reloads while the schedule is unchanged.
    pub key: String,
    /// The job or check it belongs to; at most one run per subject at a time.
    pub subject: String,
    /// The `cairn` arguments that perform it, e.g. `["backup", "app", "--tag", "daily"]`.
    pub args: Vec<String>,
    pub when: When,
    pub catch_up: CatchUp,
    pub jitter: Option<Duration>,
    /// Counts toward `max_concurrent_runs` (backups and drills do; quick
    /// health checks do not, so a long backup never delays them).
    pub limited: bool,
}

/// A task that is due now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fire {
    pub key: String,
    pub subject: String,
    pub args: Vec<String>,
    /// The nominal time (before jitter); the mark to persist once handled.
    pub scheduled_at: Timestamp,
    /// When it became due (with jitter).
    pub due_at: Timestamp,
    pub trigger: Trigger,
    pub limited: bool,
    /// The claim of this fire once the daemon won it (several replicas).
    pub claim: Option<crate::state::ClaimToken>,
}

#[derive(Debug)]
struct Slot {
    entry: Entry,
    nominal: Option<Timestamp>,
    due: Option<Timestamp>,
}

#[derive(Debug, Default)]
pub struct Plan {
    slots: Vec<Slot>,
}

/// A deterministic delay in `[0, jitter)` from the entry's key and fire time, so
/// that jobs spread out without a random source (and tests can predict it).
fn jitter_for(key: &str, nominal: Timestamp, jitter: Option<Duration>) -> SignedDuration {
    let Some(jitter) = jitter.filter(|j| !j.is_zero()) else {
        return SignedDuration::ZERO;
    };
    // FNV-1a over the key and the nominal second.
    let mut hash: u64 = 0xcbf29ce484222325;
    for byte in key.bytes().chain(nominal.as_second().to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    let millis = (jitter.as_millis() as u64).max(1);
    SignedDuration::from_millis((hash % millis) as i64)
}

impl Slot {
    fn schedule_after(&mut self, t: Timestamp) {
        self.nominal = self.entry.when.next_after(t);
        self.due = self.nominal.map(|n| {
            n.checked_add(jitter_for(&self.entry.key, n, self.entry.jitter))
                .unwrap_or(n)
        });
    }

    fn fire(&self, nominal: Timestamp, due: Timestamp, trigger: Trigger) -> Fire {
        Fire {
            key: self.entry.key.clone(),
            subject: self.entry.subject.clone(),
            args: self.entry.args.clone(),
            scheduled_at: nominal,
            due_at: due,
            trigger,
            limited: self.entry.limited,
            claim: None,
        }
    }
}

impl Plan {
    /// Builds the plan at `now`. Entries whose mark shows a fire missed before
    /// `now` yield one catch-up fire each (unless `catch_up = "skip"`); entries
    /// never seen before start counting from `now`.
    pub fn new(
        entries: Vec<Entry>,
        marks: &BTreeMap<String, Timestamp>,
        now: Timestamp,
    ) -> (Plan, Vec<Fire>) {
        let mut catch_up = Vec::new();
        let mut slots = Vec::new();
        for entry in entries {
            let mut slot = Slot {
                entry,
                nominal: None,
                due: None,
            };
            if let Some(&mark) = marks.get(&slot.entry.key)
                && let When::Cron(_) = slot.entry.when
                && slot.entry.catch_up == CatchUp::Once
                && let Some(missed) = slot.entry.when.next_after(mark)
                && missed < now
            {
                catch_up.push(slot.fire(missed, now, Trigger::CatchUp));
            }
            slot.schedule_after(now);
            slots.push(slot);
        }
        (Plan { slots }, catch_up)
    }

    /// The fires due at `now`, each entry at most once; every entry that fired
    /// is rescheduled after `now` (so fires missed during a suspend or a clock
    /// jump collapse into this one).
    pub fn due(&mut self, now: Timestamp) -> Vec<Fire> {
        let mut fires = Vec::new();
        for slot in &mut self.slots {
            if let (Some(nominal), Some(due)) = (slot.nominal, slot.due)
                && due <= now
            {
                fires.push(slot.fire(nominal, due, Trigger::Schedule));
                slot.schedule_after(now.max(nominal));
            }
        }
        fires.sort_by_key(|f| f.due_at);
        fires
    }

    /// When the next entry becomes due.
    pub fn next_wake(&self) -> Option<Timestamp> {
        self.slots.iter().filter_map(|s| s.due).min()
    }

    /// Each entry with its next due time.
    pub fn upcoming(&self) -> Vec<(&Entry, Option<Timestamp>)> {
        self.slots.iter().map(|s| (&s.entry, s.due)).collect()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn entry(key: &str, cron: &str, catch_up: CatchUp) -> Entry {
        Entry {
            key: key.into(),
            subject: key.split('#').next().unwrap().into(),
            args: vec!["backup".into(), key.into()],
            when: When::Cron(Schedule::parse(cron, None, "UTC").unwrap()),
            catch_up,
            jitter: None,
            limited: true,
        }
    }

    #[test]
    fn fires_at_each_scheduled_time_and_not_before() {
        let (mut plan, catch_up) = Plan::new(
            vec![entry("a#0", "0 2 * * *", CatchUp::Once)],
            &BTreeMap::new(),
            at("2026-12-01T01:00:00Z"),
        );
        assert!(catch_up.is_empty());
        assert_eq!(plan.next_wake(), Some(at("2026-12-01T02:00:00Z")));
        assert!(plan.due(at("2026-12-01T01:59:59Z")).is_empty());
        let fires = plan.due(at("2026-12-01T02:00:00.300Z"));
        assert_eq!(fires.len(), 1);
        assert_eq!(fires[0].scheduled_at, at("2026-12-01T02:00:00Z"));
        assert_eq!(fires[0].trigger, Trigger::Schedule);
        assert!(plan.due(at("2026-12-01T02:00:01Z")).is_empty());
        assert_eq!(plan.next_wake(), Some(at("2026-12-02T02:00:00Z")));
    }

    #[test]
    fn downtime_is_caught_up_once_or_skipped() {
        let marks = BTreeMap::from([
            ("a#0".to_string(), at("2026-11-27T02:00:00Z")),
            ("b#0".to_string(), at("2026-11-27T02:00:00Z")),
            ("c#0".to_string(), at("2026-12-01T02:00:00Z")),
        ]);
        let now = at("2026-12-01T09:00:00Z");
        let (plan, catch_up) = Plan::new(
            vec![
                entry("a#0", "0 2 * * *", CatchUp::Once),
                entry("b#0", "0 2 * * *", CatchUp::Skip),
                entry("c#0", "0 2 * * *", CatchUp::Once),
            ],
            &marks,
            now,
        );
        // Four days missed by a: one catch-up run; b skips; c missed nothing.
        assert_eq!(catch_up.len(), 1);
        assert_eq!(catch_up[0].key, "a#0");
        assert_eq!(catch_up[0].trigger, Trigger::CatchUp);
        assert_eq!(catch_up[0].scheduled_at, at("2026-11-28T02:00:00Z"));
        assert_eq!(plan.next_wake(), Some(at("2026-12-02T02:00:00Z")));
    }

    #[test]
    fn a_jump_over_many_fires_fires_once() {
        let (mut plan, _) = Plan::new(
            vec![entry("a#0", "*/5 * * * *", CatchUp::Once)],
            &BTreeMap::new(),
            at("2026-12-01T00:00:00Z"),
        );
        // Suspended for an hour: twelve fires missed, one run.
        let fires = plan.due(at("2026-12-01T01:02:00Z"));
        assert_eq!(fires.len(), 1);
        assert_eq!(plan.next_wake(), Some(at("2026-12-01T01:05:00Z")));
        // The clock is set back an hour: nothing fires twice for the same time.
        assert!(plan.due(at("2026-12-01T00:02:00Z")).is_empty());
    }

    #[test]
    fn berlin_dst_days_fire_once_each() {
        let mut e = entry("a#0", "30 2 * * *", CatchUp::Once);
        e.when = When::Cron(Schedule::parse("30 2 * * *", None, "Europe/Berlin").unwrap());
        for (from, until) in [
            ("2026-03-28T12:00:00Z", "2026-03-29T12:00:00Z"),
            ("2026-10-24T12:00:00Z", "2026-10-25T12:00:00Z"),
        ] {
            let (mut plan, _) = Plan::new(vec![e.clone()], &BTreeMap::new(), at(from));
            let mut count = 0;
            let mut t = at(from);
            while t < at(until) {
                t = t.checked_add(SignedDuration::from_secs(60)).unwrap();
                count += plan.due(t).len();
            }
            assert_eq!(count, 1, "from {from}");
        }
    }

    #[test]
    fn jitter_delays_within_its_bound_and_keeps_the_nominal_time() {
        let mut e = entry("a#0", "0 2 * * *", CatchUp::Once);
        e.jitter = Some(Duration::from_secs(600));
        let (mut plan, _) = Plan::new(vec![e], &BTreeMap::new(), at("2026-12-01T00:00:00Z"));
        let wake = plan.next_wake().unwrap();
        assert!(wake >= at("2026-12-01T02:00:00Z") && wake < at("2026-12-01T02:10:00Z"));
        let fires = plan.due(wake);
        assert_eq!(fires[0].scheduled_at, at("2026-12-01T02:00:00Z"));
    }

    #[test]
    fn intervals_count_from_the_last_fire() {
        let e = Entry {
            when: When::Every(Duration::from_secs(300)),
            ..entry("check:api", "* * * * *", CatchUp::Skip)
        };
        let (mut plan, _) = Plan::new(vec![e], &BTreeMap::new(), at("2026-12-01T00:00:00Z"));
        assert_eq!(plan.next_wake(), Some(at("2026-12-01T00:05:00Z")));
        assert_eq!(plan.due(at("2026-12-01T00:05:10Z")).len(), 1);
        assert_eq!(plan.next_wake(), Some(at("2026-12-01T00:10:10Z")));
    }
}
