//! `cairn notify test CHANNEL`: sends a test event through one channel.

use crate::notify::{self, Event, EventKind};
use crate::{Error, Result};

use super::{Context, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Send a test event to a channel (with its retries) and say how it went
    Test {
        /// The channel, as in `[notify.NAME]`
        channel: String,
    },
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    let config = context.load()?;
    let Command::Test { channel } = args.command;
    let Some(target) = config.notify.get(&channel) else {
        let known: Vec<&str> = config.notify.keys().map(String::as_str).collect();
        return Err(Error::Usage(format!(
            "unknown channel `{channel}`: {} defines {}",
            config.file.display(),
            if known.is_empty() {
                "none (add a [notify.NAME] table)".to_string()
            } else {
                known.join(", ")
            }
        )));
    };
    let event = Event::new(
        EventKind::Test,
        format!("this is a test of the notification channel `{channel}`"),
    )
    .next_step("nothing: if you read this, the channel works");
    let started = std::time::Instant::now();
    let (attempts, outcome) = notify::send(target, &event);
    let seconds = started.elapsed().as_secs_f64();
    if context.json {
        output::print_json(&serde_json::json!({
            "channel": channel,
            "kind": target.config.kind(),
            "delivered": outcome.is_ok(),
            "attempts": attempts,
            "seconds": seconds,
            "error": outcome.as_ref().err(),
        }));
    }
    match outcome {
        Ok(()) => {
            if !context.json {
                println!("{channel}: test event delivered ({attempts} attempt(s), {seconds:.2}s)");
            }
            Ok(0)
        }
        Err(e) => {
            if !context.json {
                println!("{channel}: NOT delivered: {e}");
            }
            Ok(1)
        }
    }
}
