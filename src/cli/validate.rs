//! `cairn validate JOB…`: check live data where it lives.

use crate::Result;
use crate::engine::{runs, validate};
use crate::state::RunKind;

use super::{Context, TriggerArg, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Jobs to validate [default: all]
    jobs: Vec<String>,
    #[command(flatten)]
    trigger: TriggerArg,
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    let config = context.load()?;
    let jobs = super::named_or_all_jobs(&config, &args.jobs)?;
    let store = super::open_store(&config);
    let store = store.as_deref();
    let mut reports = Vec::new();
    let mut failed = false;
    for job in jobs {
        let result = runs::recorded(
            store,
            &job.name,
            RunKind::Validate,
            args.trigger.trigger(),
            || validate::validate(job),
        );
        match result {
            Ok(report) => {
                failed |= !report.ok;
                if !context.json {
                    print(&report);
                }
                reports.push(serde_json::to_value(&report).unwrap_or_default());
            }
            Err(e) if e.exit_code() == 2 => return Err(e),
            Err(e) => {
                failed = true;
                output::print_error(&e, context.json);
                reports.push(
                    serde_json::json!({ "job": job.name, "ok": false, "error": e.to_string() }),
                );
            }
        }
    }
    if context.json {
        output::print_json(&reports);
    }
    Ok(if failed { 1 } else { 0 })
}

fn print(r: &validate::ValidateReport) {
    println!(
        "{}: validation {}",
        r.job,
        if r.ok { "passed" } else { "FAILED" }
    );
    for c in &r.checks {
        println!(
            "  {} {}: {}",
            if c.ok { "ok  " } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    for rule in &r.rules {
        let flag = if rule.ok { "ok  " } else { "FAIL" };
        let blocking = if rule.blocking { " [blocking]" } else { "" };
        match &rule.error {
            Some(e) => println!(
                "  {flag} rule {}{blocking}: the query failed: {e}",
                rule.name
            ),
            None if rule.ok => println!("  {flag} rule {}{blocking}: no offending rows", rule.name),
            None => {
                println!(
                    "  {flag} rule {}{blocking}: {} offending rows",
                    rule.name, rule.offending_rows
                );
                for row in &rule.first_rows {
                    println!("         {row}");
                }
            }
        }
    }
}
