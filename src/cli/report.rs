//! `cairn report`: the integrity report over all jobs.

use crate::Result;
use crate::engine::report::{self, RunSummary};

use super::{Context, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these jobs [default: all]
    jobs: Vec<String>,
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    let config = context.load()?;
    let jobs = super::named_or_all_jobs(&config, &args.jobs)?;
    let store = super::open_store(&config);
    let report = report::report(&config, &jobs, store.as_deref(), jiff::Timestamp::now());
    if context.json {
        output::print_json(&report);
    } else {
        let when = |t: &jiff::Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let run = |r: &Option<RunSummary>| match r {
            None => "none recorded".to_string(),
            Some(r) => format!(
                "{} {}{}{}",
                when(&r.at),
                r.status,
                r.artifact_id
                    .as_ref()
                    .map(|id| format!(" ({id})"))
                    .unwrap_or_default(),
                r.error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
        };
        println!(
            "integrity report {}: {}",
            when(&report.generated_at),
            if report.ok {
                "all jobs ok"
            } else {
                "ATTENTION NEEDED"
            }
        );
        for j in &report.jobs {
            println!("\n{}", j.job);
            match &j.newest_good {
                Some(g) => println!("  newest good:  {} ({})", g.id, when(&g.created_at)),
                None => println!("  newest good:  none"),
            }
            println!("  verification: {}", run(&j.last_verification));
            println!("  drill:        {}", run(&j.last_drill));
            match &j.proven {
                Some(p) => println!(
                    "  proven:       {}{}",
                    when(&p.at),
                    p.restore_seconds
                        .map(|t| format!(", restore took {t:.2}s"))
                        .unwrap_or_default()
                ),
                None => println!("  proven:       never"),
            }
            println!("  validation:   {}", run(&j.last_validation));
            for p in &j.problems {
                println!("  PROBLEM: {p}");
            }
        }
    }
    Ok(if report.ok { 0 } else { 1 })
}
