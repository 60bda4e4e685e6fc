//! `cairn repair [JOB…]` and `cairn copy JOB [ID|--all] --to DEST`: write good
//! copies over damaged or missing ones (the engine's `repair` does the work).

use crate::Result;
use crate::engine::repair::{RepairReport, Scope, Status, Which};

use super::{Context, TriggerArg, output};

#[derive(Debug, clap::Args)]
pub struct RepairArgs {
    /// Jobs to repair [default: all]
    jobs: Vec<String>,
    /// Show what would be copied, write nothing
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    trigger: TriggerArg,
}

#[derive(Debug, clap::Args)]
pub struct CopyArgs {
    /// The job
    job: String,
    /// Artifact id or a unique prefix of it [default: the newest good one]
    #[arg(conflicts_with = "all")]
    id: Option<String>,
    /// Every good artifact that the destination's retention keeps
    #[arg(long)]
    all: bool,
    /// The destination to copy into (one of the job's destinations)
    #[arg(long, value_name = "DESTINATION")]
    to: String,
    /// Show what would be copied, write nothing
    #[arg(long)]
    dry_run: bool,
}

pub fn repair(context: &Context, args: RepairArgs) -> Result<u8> {
    let config = context.load()?;
    let _held = super::hold_fire_claim(&config, None, crate::cancel::Cancel::new());
    let jobs = super::named_or_all_jobs(&config, &args.jobs)?;
    let mut reports = Vec::new();
    for job in jobs {
        reports.push(run_one(
            context,
            &config,
            job,
            &Scope::Repair,
            args.dry_run,
            args.trigger.trigger(),
        )?);
    }
    finish(context, &reports)
}

pub fn copy(context: &Context, args: CopyArgs) -> Result<u8> {
    let config = context.load()?;
    let job = config.job(&args.job)?;
    let which = match (args.id, args.all) {
        (Some(id), _) => Which::Id(id),
        (None, true) => Which::All,
        (None, false) => Which::Newest,
    };
    let scope = Scope::Copy { to: args.to, which };
    let report = run_one(
        context,
        &config,
        job,
        &scope,
        args.dry_run,
        crate::state::Trigger::Manual,
    )?;
    finish(context, &[report])
}

/// One job, as one recorded run (dry runs are not recorded) that sends its event.
fn run_one(
    context: &Context,
    config: &crate::config::Config,
    job: &crate::config::Job,
    scope: &Scope,
    dry_run: bool,
    trigger: crate::state::Trigger,
) -> Result<RepairReport> {
    let store = crate::state::open_or_warn(config);
    let request = super::request(context, config, job, store.as_deref(), trigger);
    let report = crate::engine::job::repair(&request, scope, dry_run)?;
    if !context.json {
        print(&report);
    }
    Ok(report)
}

fn finish(context: &Context, reports: &[RepairReport]) -> Result<u8> {
    if context.json {
        output::print_json(&reports);
    }
    Ok(u8::from(reports.iter().any(RepairReport::failed)))
}

fn print(r: &RepairReport) {
    let done = r
        .actions
        .iter()
        .filter(|a| a.status != Status::Failed)
        .count();
    let verb = match (r.dry_run, r.kind) {
        (true, _) => "would copy",
        (false, "copy") => "copied",
        (false, _) => "repaired",
    };
    println!(
        "{}: {verb} {done} cop{}{}",
        r.job,
        if done == 1 { "y" } else { "ies" },
        if r.failed() { ", with problems" } else { "" }
    );
    for a in &r.actions {
        let status = match (&a.status, &a.error) {
            (Status::Failed, Some(e)) => format!("FAILED: {e}"),
            (Status::Failed, None) => "FAILED".into(),
            (Status::Planned, _) => "planned".into(),
            (Status::Repaired, _) => "done".into(),
        };
        println!(
            "  {} into `{}` from `{}` ({}, was {}): {status}",
            a.id,
            a.destination,
            a.from,
            output::bytes(a.bytes),
            a.problem
        );
    }
    for u in &r.unrepairable {
        println!(
            "  CANNOT repair {} in `{}`: {}",
            u.id, u.destination, u.problem
        );
    }
    for (d, e) in &r.unreachable {
        println!("  `{d}` cannot be listed: {e}");
    }
}
