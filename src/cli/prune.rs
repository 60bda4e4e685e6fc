use crate::Result;
use crate::engine::{self, prune};

use super::{Context, TriggerArg, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Jobs to prune [default: all]
    jobs: Vec<String>,
    /// Show what would be kept and deleted, delete nothing
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    trigger: TriggerArg,
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    let config = context.load()?;
    let jobs = super::named_or_all_jobs(&config, &args.jobs)?;
    let store = super::open_store(&config);
    let store = store.as_deref();
    let mut results = Vec::new();
    for job in jobs {
        let request = super::request(context, &config, job, store, args.trigger.trigger());
        let pruned = engine::job::prune(&request, args.dry_run)?;
        if !context.json {
            print(&pruned);
        }
        results.push(pruned);
    }
    if context.json {
        output::print_json(&results);
    }
    let failed = results
        .iter()
        .flat_map(|r| &r.destinations)
        .any(prune::PruneReport::failed);
    Ok(u8::from(failed))
}

/// Keep/delete with the reason for each artifact, per destination.
pub fn print(pruned: &prune::JobPrune) {
    for r in &pruned.destinations {
        let verb = if r.dry_run { "would delete" } else { "deleted" };
        if let Some(e) = &r.error {
            println!("{} in `{}`: FAILED: {e}", r.job, r.destination);
            continue;
        }
        let bytes = crate::store::catalog::total_bytes(r.delete.iter().map(|d| d.bytes));
        match &r.skipped {
            Some(why) => println!("{} in `{}`: nothing deleted: {why}", r.job, r.destination),
            None => println!(
                "{} in `{}`: keep {}, {verb} {} ({})",
                r.job,
                r.destination,
                r.keep.len(),
                r.delete.len(),
                output::bytes(bytes)
            ),
        }
        for k in &r.keep {
            println!("  keep    {}  {}", k.id, k.reasons.join(", "));
        }
        for d in &r.delete {
            let status = match (&d.error, &r.skipped, r.dry_run) {
                (Some(e), _, _) => format!("  FAILED: {e}"),
                (None, Some(_), _) => "  (not deleted)".into(),
                _ => String::new(),
            };
            println!("  delete  {}  {}{status}", d.id, d.reason);
        }
        for u in &r.untrusted {
            println!(
                "  untrusted  {}  {} (no rule counts it; left alone for a person to check)",
                u.id, u.problem
            );
        }
        for u in &r.untouched {
            println!("  left alone: {u}");
        }
    }
}
