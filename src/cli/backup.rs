use crate::Result;
use crate::engine::backup::{self, BackupOptions};
use crate::engine::{self, prune};

use super::{Context, TriggerArg, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Jobs to back up
    jobs: Vec<String>,
    /// Back up every job in the config
    #[arg(long, conflicts_with = "jobs")]
    all: bool,
    /// A tag recorded in the manifest (e.g. daily, pre-upgrade)
    #[arg(long, value_parser = parse_tag)]
    tag: Option<String>,
    /// Apply the job's retention policy after a successful backup
    #[arg(long)]
    prune: bool,
    #[command(flatten)]
    trigger: TriggerArg,
}

/// The same rule as tags in the config: tags become parts of names.
fn parse_tag(text: &str) -> std::result::Result<String, String> {
    match crate::config::name_problem(text) {
        None => Ok(text.to_string()),
        Some(problem) => Err(problem.replacen("name", "tag", 1)),
    }
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    let config = context.load()?;
    let jobs = super::select_jobs(&config, &args.jobs, args.all)?;
    for job in &jobs {
        crate::engine::overlap::refuse_overlap(&config, job)?;
    }
    let store = super::open_store(&config);
    let store = store.as_deref();
    let cancel = super::cancel_on_signals();
    let held = match jobs.as_slice() {
        [job] => super::hold_fire_claim(&config, Some(&job.name), cancel.clone()),
        _ => None,
    };
    let options = BackupOptions {
        tag: args.tag,
        cancel,
        fence: held.as_ref().map(|h| h.fence()),
    };
    let trigger = args.trigger.trigger();
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for job in jobs {
        let request = super::request(context, &config, job, store, trigger);
        let run = match engine::job::backup(&request, &options, args.prune) {
            Ok(run) => run,
            Err(e) => {
                output::print_error(&e, context.json);
                failures.push(job.name.clone());
                reports.push(serde_json::json!({ "job": job.name, "error": e.to_string() }));
                continue;
            }
        };
        match run.backup {
            Ok(report) => {
                if !context.json {
                    print_report(&report);
                }
                let mut value = serde_json::to_value(&report).unwrap_or_default();
                if report.failed() {
                    failures.push(job.name.clone());
                } else if let Some(pruned) = run.prune {
                    if pruned.destinations.iter().any(prune::PruneReport::failed) {
                        failures.push(job.name.clone());
                    }
                    if !context.json {
                        super::prune::print(&pruned);
                    }
                    value["prune"] = serde_json::to_value(&pruned).unwrap_or_default();
                }
                reports.push(value);
            }
            Err(e) if e.exit_code() == 2 => return Err(e),
            Err(e) => {
                output::print_error(&e, context.json);
                failures.push(job.name.clone());
                reports.push(serde_json::json!({ "job": job.name, "error": e.to_string() }));
            }
        }
    }
    super::metrics::export_configured(&config, store);
    if context.json {
        output::print_json(&reports);
    }
    Ok(if failures.is_empty() { 0 } else { 1 })
}

fn print_report(report: &backup::BackupReport) {
    println!(
        "{}: backed up {} as {} ({} stored) in {:.1}s",
        report.job,
        output::bytes(report.manifest.plaintext.size),
        report.id,
        output::bytes(report.manifest.data.size),
        report.duration.as_secs_f64()
    );
    for d in &report.destinations {
        match &d.error {
            None => println!(
                "  {}: committed {}",
                d.destination, report.manifest.data.key
            ),
            Some(e) => println!("  {}: FAILED: {e}", d.destination),
        }
    }
    for e in &report.hook_errors {
        println!("  hook FAILED: {e}");
    }
    for c in report.verification.iter().flat_map(|v| &v.copies) {
        match (&c.error, &c.note) {
            (Some(e), _) => println!("  verify FAILED in {}: {e}", c.destination),
            (None, Some(note)) => println!("  verified in {}: {note}", c.destination),
            (None, None) => println!(
                "  verified in {}: stored bytes and plaintext match",
                c.destination
            ),
        }
    }
}
