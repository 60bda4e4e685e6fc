use crate::engine::{self, gc};
use crate::state::Trigger;
use crate::{Error, Result};

use super::{Context, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Jobs to clean [default: all]
    jobs: Vec<String>,
    /// Leave leftovers younger than this alone (e.g. 30m, 24h, 7d)
    #[arg(long, default_value = "24h")]
    grace: String,
    /// Say what would be removed, remove nothing
    #[arg(long)]
    dry_run: bool,
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    let config = context.load()?;
    let jobs = super::named_or_all_jobs(&config, &args.jobs)?;
    let grace = crate::time::parse_duration(&args.grace)
        .map_err(|e| Error::Usage(format!("--grace {e}")))?;
    let store = crate::state::open_or_warn(&config);
    let store = store.as_deref();
    let mut reports = Vec::new();
    for job in jobs {
        let request = super::request(context, &config, job, store, Trigger::Manual);
        match engine::job::gc(&request, grace, args.dry_run) {
            Ok(cleaned) => reports.extend(cleaned),
            // The job runs elsewhere: its unfinished upload is not garbage.
            Err(e) => {
                let message = format!("skipped: {e}");
                if !context.json {
                    println!("{}: {message}", job.name);
                }
                reports.push(gc::GcReport::skipped(job, &message));
            }
        }
    }
    if context.json {
        output::print_json(&reports);
    } else {
        for r in &reports {
            let verb = if r.dry_run { "would remove" } else { "removed" };
            if r.skipped.is_some() {
                continue;
            }
            match &r.error {
                Some(e) => println!("{} in `{}`: FAILED: {e}", r.job, r.destination),
                None => println!(
                    "{} in `{}`: {verb} {} object(s), {} ({} younger than {} kept)",
                    r.job,
                    r.destination,
                    r.removed.len(),
                    output::bytes(r.removed.iter().map(|o| o.size).sum()),
                    r.too_young,
                    args.grace
                ),
            }
            for o in &r.removed {
                println!("  {} ({}, {})", o.key, output::bytes(o.size), o.reason);
            }
        }
    }
    Ok(if reports.iter().any(|r| r.error.is_some()) {
        1
    } else {
        0
    })
}
