use crate::Result;
use crate::engine::backup::{self, BackupOptions};

use super::{Context, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Jobs to back up
    jobs: Vec<String>,
    /// Back up every job in the config
    #[arg(long, conflicts_with = "jobs")]
    all: bool,
    /// A tag recorded in the manifest (e.g. daily, pre-upgrade)
    #[arg(long)]
    tag: Option<String>,
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    let config = context.load()?;
    let jobs = super::select_jobs(&config, &args.jobs, args.all)?;
    let options = BackupOptions { tag: args.tag };
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for job in jobs {
        match backup::backup(&config, job, &options, output::progress(context.progress)) {
            Ok(report) => {
                if !context.json {
                    println!(
                        "{}: backed up {} as {} ({} → {} stored) in {:.1}s",
                        job.name,
                        output::bytes(report.manifest.plaintext.size),
                        report.id,
                        output::bytes(report.manifest.plaintext.size),
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
                }
                for e in &report.hook_errors {
                    if !context.json {
                        println!("  hook FAILED: {e}");
                    }
                }
                if report.failed() {
                    failures.push(job.name.clone());
                }
                reports.push(serde_json::to_value(&report).unwrap_or_default());
            }
            Err(e) if e.exit_code() == 2 => return Err(e),
            Err(e) => {
                output::print_error(&e, context.json);
                failures.push(job.name.clone());
                reports.push(serde_json::json!({ "job": job.name, "error": e.to_string() }));
            }
        }
    }
    if context.json {
        output::print_json(&reports);
    }
    Ok(if failures.is_empty() { 0 } else { 1 })
}
