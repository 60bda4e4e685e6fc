//! `cairn drill JOB [ID]`: restore an artifact into a scratch target and check it.

use crate::Result;
use crate::drill::{self, DrillReport};
use crate::engine::{self, Selector};
use crate::state::RunKind;

use super::{Context, TriggerArg, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job
    job: String,
    /// Artifact id or a unique prefix of it [default: the newest good one]
    id: Option<String>,
    /// Read from this destination only
    #[arg(long, value_name = "DESTINATION")]
    from: Option<String>,
    /// Also drill a copy that verification or a drill marked bad
    #[arg(long)]
    allow_bad: bool,
    /// Also drill an artifact whose manifest is not signed by signing.public_key
    #[arg(long)]
    allow_unsigned: bool,
    #[command(flatten)]
    trigger: TriggerArg,
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    let config = context.load()?;
    let _held = super::hold_fire_claim(&config, None, crate::cancel::Cancel::new());
    let job = config.job(&args.job)?;
    let store = super::open_store(&config);
    let store = store.as_deref();
    let selector = Selector {
        id: args.id.clone(),
        at: None,
        from: args.from.clone(),
        allow_bad: args.allow_bad,
        allow_unsigned: args.allow_unsigned,
    };
    remove_scratch_on_signals();
    let request = super::request(context, &config, job, store, args.trigger.trigger());
    let report = engine::job::recorded(&request, RunKind::Drill, || {
        let destinations = request.destinations(selector.from.as_deref())?;
        let located = engine::locate(&config, job, &destinations, &selector)?;
        drill::drill(job, &located, store, request.progress.clone())
    })?;
    if context.json {
        output::print_json(&report);
    } else {
        print(&report);
    }
    Ok(if report.ok { 0 } else { 1 })
}

fn print(r: &DrillReport) {
    println!(
        "{}: drill of {} {} — restore took {:.2}s, {} restored, {:.2}s in all",
        r.job,
        r.id,
        if r.ok { "PASSED" } else { "FAILED" },
        r.restore_seconds,
        output::bytes(r.restored_bytes),
        r.total_seconds
    );
    println!("  scratch target: {}", r.target);
    for c in &r.checks {
        println!(
            "  {} {}: {}",
            if c.ok { "ok  " } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    for t in r.tables.iter().filter(|t| !t.ok) {
        println!(
            "  FAIL table {}: {} rows restored, {} recorded",
            t.table,
            t.restored.map_or("no".to_string(), |n| n.to_string()),
            t.recorded.map_or("none".to_string(), |n| n.to_string())
        );
    }
    if r.damaged {
        println!(
            "  the copy is damaged and was marked bad: it is not read again without --allow-bad"
        );
    }
    for l in &r.leftovers_removed {
        println!("  removed the leftover of an interrupted drill: {l}");
    }
    if !r.cleaned_up {
        println!(
            "  the scratch target could NOT be removed: remove {} by hand",
            r.target
        );
    }
}

/// SIGTERM, SIGINT and SIGHUP (the daemon stopping, Ctrl-C, a closed terminal)
/// remove the scratch target before the process exits.
fn remove_scratch_on_signals() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            tracing::warn!("drill stopped by signal {signal}: removing its scratch target");
            drill::run_cleanups();
            std::process::exit(128 + signal);
        }
    });
}
