use crate::engine::status::{self, JobStatus};
use crate::schedule::daemon;
use crate::{Result, state};

use super::{Context, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these jobs [default: all]
    jobs: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    /// The job
    job: String,
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    let config = context.load()?;
    let jobs = super::named_or_all_jobs(&config, &args.jobs)?;
    let store = super::open_store(&config);
    let store = store.as_deref();
    let now = jiff::Timestamp::now();
    let statuses: Vec<JobStatus> = status::job_statuses(&config, &jobs, store, now);
    let running = store.and_then(daemon::running_daemon);
    let checks = if args.jobs.is_empty() {
        status::check_statuses(&config, store)
    } else {
        Vec::new()
    };
    let overrides = store
        .and_then(|s| s.schedule_overrides().ok())
        .unwrap_or_default();
    let fleet = store.map(|s| Fleet::of(s, now)).unwrap_or_default();
    if context.json {
        output::print_json(&serde_json::json!({
            "daemon": running,
            "replicas": fleet.replicas,
            "warnings": fleet.warnings,
            "overrides": overrides,
            "jobs": statuses,
            "checks": checks,
        }));
    } else {
        match &running {
            Some(d) => println!(
                "daemon: running (pid {} since {})",
                d.pid,
                d.started_at.strftime("%Y-%m-%dT%H:%M:%SZ")
            ),
            None => println!("daemon: not running"),
        }
        fleet.print(now);
        for s in &statuses {
            print_job(s, now, overrides.get(&s.job));
        }
        if !checks.is_empty() {
            println!("\nchecks");
        }
        for c in &checks {
            let last = match &c.last_run {
                Some(r) => format!(
                    "{} {}{}",
                    r.status,
                    ago(now.as_second() - r.started_at.as_second()),
                    r.error
                        .as_ref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ),
                None => "not run yet".to_string(),
            };
            println!(
                "  {:<20} {:<12} every {:>5}s  {last}",
                c.check, c.kind, c.interval_seconds
            );
        }
    }
    Ok(0)
}

fn ago(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..172_800 => format!("{}h{:02}m ago", s / 3600, (s % 3600) / 60),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// Replicas heard from within this long count as up.
const SILENCE: std::time::Duration = std::time::Duration::from_secs(3 * 2 + 5);
/// Replicas silent for longer than this are left out of the list.
const FORGOTTEN_AFTER_SECS: i64 = 24 * 3600;

/// The daemons sharing this store, and what they disagree on.
#[derive(Default)]
struct Fleet {
    replicas: Vec<serde_json::Value>,
    warnings: Vec<String>,
}

impl Fleet {
    fn of(store: &dyn state::StateStore, now: jiff::Timestamp) -> Fleet {
        let all = store.replicas().unwrap_or_default();
        let live: Vec<&state::ReplicaInfo> = all.iter().filter(|r| r.up(now, SILENCE)).collect();
        let mut warnings = Vec::new();
        let versions: std::collections::BTreeSet<&str> =
            live.iter().map(|r| r.version.as_str()).collect();
        if versions.len() > 1 {
            warnings.push(format!(
                "replicas run different cairn versions: {}",
                versions.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        let configs: std::collections::BTreeSet<&str> =
            live.iter().map(|r| r.config_fingerprint.as_str()).collect();
        if configs.len() > 1 {
            warnings.push(format!(
                "replicas run different configs (fingerprints {})",
                configs
                    .into_iter()
                    .map(|c| c.get(..12).unwrap_or(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let replicas = all
            .iter()
            .filter(|r| now.as_second() - r.last_heartbeat.as_second() <= FORGOTTEN_AFTER_SECS)
            .map(|r| {
                let mut value = serde_json::to_value(r).unwrap_or_default();
                value["up"] = serde_json::Value::Bool(r.up(now, SILENCE));
                value
            })
            .collect();
        Fleet { replicas, warnings }
    }

    fn print(&self, now: jiff::Timestamp) {
        if self.replicas.is_empty() {
            return;
        }
        println!("replicas:");
        for r in &self.replicas {
            let text = |k: &str| r[k].as_str().unwrap_or("").to_string();
            let heard = text("last_heartbeat")
                .parse::<jiff::Timestamp>()
                .map(|t| ago(now.as_second() - t.as_second()))
                .unwrap_or_default();
            println!(
                "  {:<24} {:<5} host {} pid {} version {} started {} heartbeat {heard}, {} running, config {}",
                text("id"),
                if r["up"] == true { "up" } else { "down" },
                text("host"),
                r["pid"],
                text("version"),
                text("started_at"),
                r["runs_in_progress"],
                text("config_fingerprint").get(..12).unwrap_or("")
            );
        }
        for w in &self.warnings {
            println!("warning: {w}");
        }
    }
}

fn print_job(s: &JobStatus, now: jiff::Timestamp, overridden: Option<&state::ScheduleOverride>) {
    let when = |t: &jiff::Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    println!("\n{}{}", s.job, if s.paused { "  [PAUSED]" } else { "" });
    match overridden {
        Some(state::ScheduleOverride::Disabled) => {
            println!("  schedule:    overridden: disabled (`cairn schedule` to change)")
        }
        Some(state::ScheduleOverride::Cron { cron }) => {
            println!("  schedule:    overridden: {cron} (`cairn schedule` to change)")
        }
        None => {}
    }
    if s.schedules.is_empty() {
        println!("  schedule:    none (run by hand or by an outside scheduler)");
    }
    for sched in &s.schedules {
        println!(
            "  schedule:    {} {}{}",
            sched.cron,
            sched.timezone,
            sched
                .tag
                .as_ref()
                .map(|t| format!(" tag {t}"))
                .unwrap_or_default()
        );
    }
    if let Some(next) = &s.next_run {
        println!("  next run:    {}", when(next));
    }
    match &s.last_run {
        Some(r) => println!(
            "  last run:    {} {} ({}){}",
            when(&r.started_at),
            r.status,
            r.trigger,
            r.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
        None => println!("  last run:    none recorded"),
    }
    match &s.newest_good {
        Some(g) => println!(
            "  newest good: {} ({})",
            g.id,
            ago(now.as_second() - g.created_at.as_second())
        ),
        None => println!("  newest good: none"),
    }
    if let Some(d) = &s.drill_schedule {
        println!(
            "  drills:      {} {}{}",
            d.cron,
            d.timezone,
            d.next_run
                .as_ref()
                .map(|t| format!(", next {}", when(t)))
                .unwrap_or_default()
        );
    }
    let stale = if s.drill_stale {
        "  STALE (older than drill.max_age)"
    } else {
        ""
    };
    match &s.proven {
        Some(p) => println!(
            "  proven:      restorable {} by a drill of {}{}{stale}",
            ago(p.age_seconds),
            p.artifact_id.as_deref().unwrap_or("?"),
            p.restore_seconds
                .map(|t| format!(" (restore took {t:.1}s)"))
                .unwrap_or_default()
        ),
        None => println!(
            "  proven:      never drilled (`cairn drill {}`){stale}",
            s.job
        ),
    }
    let count: usize = s.destinations.iter().map(|d| d.artifacts).sum();
    println!(
        "  stored:      {} in {}",
        output::bytes(s.stored_bytes),
        output::count(count, "artifact copy", "artifact copies")
    );
    for d in s.destinations.iter().filter(|d| d.error.is_some()) {
        println!(
            "  {}: UNREACHABLE: {}",
            d.destination,
            d.error.as_deref().unwrap_or("")
        );
    }
}

pub fn pause(context: &Context, args: PauseArgs, paused: bool) -> Result<u8> {
    let config = context.load()?;
    let job = config.job(&args.job)?;
    let store = state::open(&config)?;
    store.set_paused(&job.name, paused)?;
    let verb = if paused { "paused" } else { "resumed" };
    if context.json {
        output::print_json(&serde_json::json!({ "job": job.name, "paused": paused }));
    } else {
        println!("{}: {verb}", job.name);
    }
    Ok(0)
}
