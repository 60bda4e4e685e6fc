//! Scheduling: cron expressions (`cron`), the pure plan of what fires when
//! (`plan`), and the daemon that sleeps until then and runs it (`daemon`).

pub mod daemon;
pub mod lease;
pub mod plan;
pub mod store_alert;
pub mod systemd;

/// Cron expressions are a leaf module (`config` parses them too); the old path stays.
pub use crate::cron;

use std::collections::BTreeMap;

use crate::config::Config;
use crate::state::ScheduleOverride;
use plan::{Entry, When};

/// Every task the daemon schedules for `config`, with stable keys.
pub fn entries(config: &Config) -> Vec<Entry> {
    entries_with(config, &BTreeMap::new())
}

/// The backup schedules of a job as an override in the store makes them:
/// none (`Disabled`), one cron instead of the config's, or the config's.
pub fn backup_schedules(
    job: &crate::config::Job,
    overrides: &BTreeMap<String, ScheduleOverride>,
) -> Vec<cron::Schedule> {
    match overrides.get(&job.name) {
        Some(ScheduleOverride::Disabled) => Vec::new(),
        Some(ScheduleOverride::Cron { cron }) => {
            let timezone = job
                .schedules
                .first()
                .map_or("UTC", |s| s.timezone_name.as_str());
            match cron::Schedule::parse(cron, None, timezone) {
                Ok(schedule) => vec![schedule],
                Err(e) => {
                    tracing::warn!(job = %job.name, error = %e, "the schedule override is not a valid cron expression; the config's schedules apply");
                    job.schedules.clone()
                }
            }
        }
        None => job.schedules.clone(),
    }
}

/// [`entries`] with the schedule overrides kept in the state store applied.
pub fn entries_with(config: &Config, overrides: &BTreeMap<String, ScheduleOverride>) -> Vec<Entry> {
    let mut entries = Vec::new();
    for job in config.jobs.values() {
        for (i, schedule) in backup_schedules(job, overrides).iter().enumerate() {
            let mut args = vec!["backup".to_string(), job.name.clone(), "--prune".into()];
            if let Some(tag) = &schedule.tag {
                args.extend(["--tag".to_string(), tag.clone()]);
            }
            entries.push(Entry {
                key: format!("backup:{}#{i}:{}", job.name, schedule.expression),
                subject: job.name.clone(),
                args,
                when: When::Cron(schedule.clone()),
                catch_up: job.catch_up,
                jitter: job.jitter,
                limited: true,
            });
        }
        // Other verbs a job may have on a schedule: `cairn VERB JOB`.
        for (verb, schedule) in [
            ("drill", &job.drill.schedule),
            ("repair", &job.repair_schedule),
        ] {
            if let Some(schedule) = schedule {
                entries.push(Entry {
                    key: format!("{verb}:{}:{}", job.name, schedule.expression),
                    subject: job.name.clone(),
                    args: vec![verb.to_string(), job.name.clone()],
                    when: When::Cron(schedule.clone()),
                    catch_up: job.catch_up,
                    jitter: job.jitter,
                    limited: true,
                });
            }
        }
    }
    // Health checks, each on its own interval (`cairn health NAME`).
    for check in config.checks.values() {
        entries.push(Entry {
            key: format!("check:{}:{}", check.name, check.interval.as_secs()),
            subject: format!("check:{}", check.name),
            args: vec!["health".to_string(), check.name.clone()],
            when: When::Every(check.interval),
            catch_up: crate::config::CatchUp::Skip,
            jitter: None,
            limited: false,
        });
    }
    entries
}
