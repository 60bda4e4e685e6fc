use crate::schedule::systemd::{self, UnitOptions};
use crate::{Error, Result};

use super::{Context, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The unprivileged user the units run as
    #[arg(long, default_value = "cairn")]
    user: String,
    /// Print a oneshot service and a timer per schedule instead of the daemon unit
    #[arg(long)]
    timers: bool,
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    let config = context.load()?;
    let options = UnitOptions {
        exe: std::env::current_exe()
            .map_err(|e| Error::Run(format!("cannot find the cairn program itself: {e}")))?,
        config_file: std::path::absolute(&config.file).unwrap_or_else(|_| config.file.clone()),
        user: args.user,
    };
    let units = if args.timers {
        let units = systemd::timer_units(&config, &options);
        if units.is_empty() {
            return Err(Error::Usage(
                "no job has `schedules` and there are no checks, so there is no timer to write"
                    .into(),
            ));
        }
        units
    } else {
        vec![(
            "cairn.service".to_string(),
            systemd::daemon_unit(&config, &options),
        )]
    };
    if context.json {
        let map: serde_json::Map<String, serde_json::Value> = units
            .into_iter()
            .map(|(name, text)| (name, serde_json::Value::String(text)))
            .collect();
        output::print_json(&map);
    } else {
        for (name, text) in &units {
            println!("# ---- {name} (save as /etc/systemd/system/{name})\n{text}");
        }
        println!(
            "# then: useradd --system {0}; systemctl daemon-reload; systemctl enable --now {1}",
            options.user,
            if args.timers {
                "<the .timer units>"
            } else {
                "cairn.service"
            }
        );
    }
    Ok(0)
}
