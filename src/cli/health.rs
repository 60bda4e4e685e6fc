//! `cairn health [CHECK…]`: runs health checks now, records each as a `check`
//! run, and notifies (de-duplicated) about failures and recoveries.

use crate::config::Config;
use crate::engine::runs;
use crate::state::RunKind;
use crate::{Error, Result, health};

use super::{Context, TriggerArg, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Checks to run [default: all]
    checks: Vec<String>,
    #[command(flatten)]
    trigger: TriggerArg,
}

fn select<'a>(config: &'a Config, names: &[String]) -> Result<Vec<&'a crate::config::Check>> {
    if config.checks.is_empty() {
        return Err(Error::Usage(format!(
            "{} defines no checks: add a [checks.NAME] table",
            config.file.display()
        )));
    }
    if names.is_empty() {
        return Ok(config.checks.values().collect());
    }
    names
        .iter()
        .map(|n| {
            config.checks.get(n).ok_or_else(|| {
                Error::Usage(format!(
                    "unknown check `{n}`: {} defines {}",
                    config.file.display(),
                    config
                        .checks
                        .keys()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
        })
        .collect()
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    let config = context.load()?;
    let _held = super::hold_fire_claim(&config, None, crate::cancel::Cancel::new());
    let checks = select(&config, &args.checks)?;
    let store = super::open_store(&config);
    let store = store.as_deref();
    let trigger = args.trigger.trigger();
    let mut results = Vec::new();
    let mut failing = false;
    for check in checks {
        crate::notify::run_started(&config, None, Some(&check.name));
        let outcome = runs::recorded(store, &check.name, RunKind::Check, trigger, || {
            Ok(health::run(&config, check, store))
        })?;
        let deliveries = health::notify(&config, store, check, &outcome);
        failing |= !outcome.ok;
        if !context.json {
            println!(
                "{}: {} ({:.2}s) {}",
                outcome.check,
                if outcome.ok { "ok" } else { "FAILING" },
                outcome.duration_seconds,
                outcome.reason
            );
            for d in &deliveries {
                match &d.error {
                    None => println!("  notified {} ({})", d.channel, d.event),
                    Some(e) => println!("  notification to {} FAILED: {e}", d.channel),
                }
            }
        }
        let mut value = serde_json::to_value(&outcome).unwrap_or_default();
        value["notifications"] = serde_json::to_value(&deliveries).unwrap_or_default();
        results.push(value);
    }
    super::metrics::export_configured(&config, store);
    if context.json {
        output::print_json(&results);
    }
    Ok(u8::from(failing))
}
