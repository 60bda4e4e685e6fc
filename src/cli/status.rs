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
    let statuses: Vec<JobStatus> = jobs
        .iter()
        .map(|job| status::job_status(&config, job, store, now))
        .collect();
    let running = store.and_then(daemon::running_daemon);
    let checks = if args.jobs.is_empty() {
        status::check_statuses(&config, store)
    } else {
        Vec::new()
    };
    if context.json {
        output::print_json(&serde_json::json!({
            "daemon": running,
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
        for s in &statuses {
            print_job(s, now);
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

fn print_job(s: &JobStatus, now: jiff::Timestamp) {
    let when = |t: &jiff::Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    println!("\n{}{}", s.job, if s.paused { "  [PAUSED]" } else { "" });
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
