//! `cairn schedule JOB (--cron EXPR | --disable | --clear)`: override a job's
//! schedules in the state store, over the config's (the daemon applies it).

use jiff::Timestamp;

use crate::auth::audit;
use crate::state::{self, ScheduleOverride};
use crate::{Error, Result};

use super::{Context, output, user::actor};

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("change").required(true).multiple(false))]
pub struct Args {
    job: String,
    /// Fire on this cron expression instead of the config's schedules
    #[arg(long, value_name = "EXPR", group = "change")]
    cron: Option<String>,
    /// Do not fire on any schedule (manual runs still work)
    #[arg(long, group = "change")]
    disable: bool,
    /// Back to the config's schedules
    #[arg(long, group = "change")]
    clear: bool,
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    let config = context.load()?;
    let job = config.job(&args.job)?;
    // An override is read in the time zone of the job's schedules.
    let timezone = job
        .schedules
        .first()
        .map(|s| s.timezone_name.clone())
        .unwrap_or_else(|| config.daemon.timezone_name.clone());
    let value = match (&args.cron, args.disable) {
        (Some(expression), _) => {
            let schedule = crate::cron::Schedule::parse(expression, None, &timezone)
                .map_err(|e| Error::Usage(format!("--cron: {e}")))?;
            Some(ScheduleOverride::Cron {
                cron: schedule.expression,
            })
        }
        (None, true) => Some(ScheduleOverride::Disabled),
        (None, false) => None,
    };
    let store = state::open(&config)?;
    store.set_schedule_override(&job.name, value.as_ref())?;
    let now = Timestamp::now();
    let action = if value.is_some() {
        "schedule.set"
    } else {
        "schedule.clear"
    };
    audit::record(store.as_ref(), now, &actor(), action, &job.name, "", "ok")?;
    let configured: Vec<&str> = job
        .schedules
        .iter()
        .map(|s| s.expression.as_str())
        .collect();
    if context.json {
        output::print_json(&serde_json::json!({
            "job": job.name,
            "override": value,
            "config_schedules": configured,
        }));
    } else {
        let says = if configured.is_empty() {
            "no schedule".to_string()
        } else {
            configured
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match &value {
            Some(ScheduleOverride::Cron { cron }) => println!(
                "{}: schedule overridden: `{cron}` ({timezone}); the config says {says}",
                job.name
            ),
            Some(ScheduleOverride::Disabled) => println!(
                "{}: schedules disabled (manual runs still work); the config says {says}",
                job.name
            ),
            None => println!("{}: back to the config's schedules: {says}", job.name),
        }
    }
    Ok(0)
}
