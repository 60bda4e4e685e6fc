//! `cairn token create|list|revoke`: API tokens for scripts.

use jiff::Timestamp;

use crate::auth::{audit, token};
use crate::state::{self, Role};
use crate::{Error, Result};

use super::{Context, output, user::actor};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Create a token and print it (once: only its hash is kept)
    Create {
        name: String,
        /// admin, operator or viewer
        #[arg(long)]
        role: Role,
        /// Lifetime, e.g. 90d, 12h, 2w, or `never` [default: 90d]
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// Only these jobs (comma-separated) [default: every job]
        #[arg(long, value_name = "J,...", value_delimiter = ',')]
        jobs: Vec<String>,
    },
    /// List tokens: role, jobs, expiry, last use, revocation (never the secret)
    List,
    /// Revoke a token at once
    Revoke { name: String },
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    let config = context.load()?;
    let store = state::open(&config)?;
    let now = Timestamp::now();
    match args.command {
        Command::Create {
            name,
            role,
            expires,
            jobs,
        } => {
            let expires = match expires {
                Some(text) => token::parse_expiry(&text)
                    .map_err(|e| Error::Usage(format!("--expires: {e}")))?,
                None => Some(token::DEFAULT_EXPIRY),
            };
            let mut job_names = Vec::new();
            for job in jobs.iter().map(|j| j.trim()).filter(|j| !j.is_empty()) {
                let job = config.job(job)?;
                if !job_names.contains(&job.name) {
                    job_names.push(job.name.clone());
                }
            }
            let (created, secret) =
                token::create(store.as_ref(), &name, role, expires, job_names, now)?;
            audit::record(
                store.as_ref(),
                now,
                &actor(),
                "token.create",
                &name,
                "",
                "ok",
            )?;
            if context.json {
                let mut value = serde_json::to_value(&created).unwrap_or_default();
                value["token"] = serde_json::Value::String(secret);
                output::print_json(&value);
            } else {
                // The token alone on stdout, for `TOKEN=$(cairn token create …)`.
                println!("{secret}");
                let expiry = created
                    .expires_at
                    .map(|at| format!("expires {}", at.strftime("%Y-%m-%dT%H:%M:%SZ")))
                    .unwrap_or_else(|| "never expires".into());
                eprintln!(
                    "token {name} ({role}, {}, {expiry}): shown this once, only its hash is kept",
                    jobs_text(&created.jobs)
                );
            }
        }
        Command::List => {
            let tokens = store.tokens()?;
            if context.json {
                let listed: Vec<serde_json::Value> = tokens
                    .iter()
                    .map(|t| {
                        let mut value = serde_json::to_value(t).unwrap_or_default();
                        value["state"] = token::state(t, now).into();
                        value
                    })
                    .collect();
                output::print_json(&listed);
            } else if tokens.is_empty() {
                println!("no tokens: create one with `cairn token create NAME --role ROLE`");
            } else {
                println!(
                    "{:<20} {:<9} {:<8} {:<20} {:<20} {:<20} JOBS",
                    "NAME", "ROLE", "STATE", "CREATED", "EXPIRES", "LAST USED"
                );
                for t in &tokens {
                    println!(
                        "{:<20} {:<9} {:<8} {:<20} {:<20} {:<20} {}",
                        t.name,
                        t.role,
                        token::state(t, now),
                        time(Some(t.created_at)),
                        t.expires_at.map_or("never".into(), |at| time(Some(at))),
                        t.last_used_at.map_or("never".into(), |at| time(Some(at))),
                        jobs_text(&t.jobs)
                    );
                }
            }
        }
        Command::Revoke { name } => {
            if !store.revoke_token(&name, now)? {
                return Err(Error::NotFound(format!(
                    "no live token `{name}` (see `cairn token list`)"
                )));
            }
            audit::record(
                store.as_ref(),
                now,
                &actor(),
                "token.revoke",
                &name,
                "",
                "ok",
            )?;
            if context.json {
                output::print_json(&serde_json::json!({ "name": name, "revoked": true }));
            } else {
                println!("token {name} revoked");
            }
        }
    }
    Ok(0)
}

fn time(at: Option<Timestamp>) -> String {
    at.map(|at| at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn jobs_text(jobs: &[String]) -> String {
    if jobs.is_empty() {
        "all jobs".into()
    } else {
        jobs.join(",")
    }
}
