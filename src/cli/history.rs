use crate::state::{self, RunFilter, RunKind, RunStatus};
use crate::{Error, Result};

use super::{Context, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this job (or check)
    job: Option<String>,
    /// Only runs of this kind: backup, verify, prune, restore, drill, validate, check
    #[arg(long)]
    kind: Option<String>,
    /// Only runs with this status: running, success, failure, interrupted
    #[arg(long)]
    status: Option<String>,
    /// How many runs at most
    #[arg(long, short = 'n', default_value_t = 20)]
    limit: usize,
    /// Show one run in full, with its log
    #[arg(long, value_name = "RUN_ID", conflicts_with_all = ["job", "kind", "status"])]
    run: Option<i64>,
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    let config = context.load()?;
    let store = state::open(&config)?;
    crate::engine::runs::settle_orphans(&config, store.as_ref(), &super::Notifier);
    if let Some(id) = args.run {
        let run = store
            .run(id)?
            .ok_or_else(|| Error::NotFound(format!("no run {id} in {}", store.location())))?;
        if context.json {
            output::print_json(&run);
        } else {
            print_runs(std::slice::from_ref(&run));
            if let Some(details) = &run.details {
                println!(
                    "\ndetails: {}",
                    serde_json::to_string_pretty(details).unwrap_or_default()
                );
            }
            println!("\nlog:\n{}", run.log.as_deref().unwrap_or(""));
        }
        return Ok(0);
    }
    let kind = args
        .kind
        .map(|k| {
            k.parse::<RunKind>()
                .map_err(|e| Error::Usage(format!("--kind: {e}")))
        })
        .transpose()?;
    let status = args
        .status
        .map(|s| {
            s.parse::<RunStatus>()
                .map_err(|e| Error::Usage(format!("--status: {e}")))
        })
        .transpose()?;
    let runs = store.runs(&RunFilter {
        job: args.job,
        kind,
        status,
        limit: Some(args.limit),
        with_log: false,
    })?;
    if context.json {
        output::print_json(&runs);
    } else if runs.is_empty() {
        println!("no runs recorded in {}", store.location());
    } else {
        print_runs(&runs);
    }
    Ok(0)
}

fn print_runs(runs: &[state::RunRecord]) {
    println!(
        "{:>6} {:<16} {:<9} {:<10} {:<12} {:<20} {:>8} {:>10}  RESULT",
        "RUN", "JOB", "KIND", "TRIGGER", "STATUS", "STARTED", "SECONDS", "BYTES"
    );
    for r in runs {
        let result = r
            .error
            .clone()
            .or_else(|| r.artifact_id.clone())
            .unwrap_or_default();
        println!(
            "{:>6} {:<16} {:<9} {:<10} {:<12} {:<20} {:>8} {:>10}  {}",
            r.id,
            r.job,
            r.kind,
            r.trigger,
            r.status,
            r.started_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            r.duration_secs()
                .map(|s| format!("{s:.1}"))
                .unwrap_or_default(),
            r.bytes.map(output::bytes).unwrap_or_default(),
            result
        );
    }
}
