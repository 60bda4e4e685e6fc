//! `cairn state copy --to postgres://…`: moves the configured SQLite store's
//! history into a PostgreSQL store (then point `[state] url` at it).

use crate::config::StatePostgres;
use crate::state::postgres::PostgresState;
use crate::{Error, Result};

use super::{Context, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Copy the SQLite store (runs with logs, marks, pauses, overrides, schedule
    /// marks, users, tokens, audit log, alert states) into PostgreSQL
    Copy(CopyArgs),
}

#[derive(Debug, clap::Args)]
struct CopyArgs {
    /// The PostgreSQL store, e.g. postgres://cairn@db:5432/cairn
    #[arg(long, value_name = "URL")]
    to: String,
    /// The variable that holds its password (else the URL, PGPASSWORD, ~/.pgpass)
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
    /// TLS as libpq's sslmode: disable, prefer, require, verify-ca, verify-full
    #[arg(long, value_name = "MODE")]
    sslmode: Option<String>,
    /// The CA certificate (PEM) for verify-ca / verify-full
    #[arg(long, value_name = "FILE")]
    sslrootcert: Option<std::path::PathBuf>,
    /// Empty a target that holds data first (its history is lost)
    #[arg(long)]
    force: bool,
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    match args.command {
        Command::Copy(args) => copy(context, args),
    }
}

fn copy(context: &Context, args: CopyArgs) -> Result<u8> {
    let config = context.load()?;
    if config.state_postgres.is_some() {
        return Err(Error::Usage(
            "the configured state store is PostgreSQL already: `state copy` copies a SQLite store ([state] path)".into(),
        ));
    }
    crate::redact::register_url(&args.to);
    if let Some(value) = args
        .password_env
        .as_deref()
        .and_then(|v| std::env::var(v).ok())
    {
        crate::redact::register(&value);
    }
    if let Some(mode) = &args.sslmode {
        mode.parse::<crate::state::postgres::tls::SslMode>()
            .map_err(Error::Usage)?;
    }
    if !config.state_path.exists() {
        return Err(Error::NotFound(format!(
            "no state store at {}: nothing to copy",
            config.state_path.display()
        )));
    }
    let target = PostgresState::open(&StatePostgres {
        url: args.to.clone(),
        password_env: args.password_env,
        sslmode: args.sslmode,
        sslrootcert: args.sslrootcert,
    })?;
    let copied = target.copy_from_sqlite(&config.state_path, args.force)?;
    if context.json {
        let tables: serde_json::Map<String, serde_json::Value> = copied
            .iter()
            .map(|(table, rows)| (table.to_string(), (*rows).into()))
            .collect();
        output::print_json(&serde_json::json!({
            "from": config.state_path.display().to_string(),
            "to": crate::state::StateStore::location(&target),
            "rows": tables,
        }));
    } else {
        for (table, rows) in &copied {
            println!("{table:<20} {rows:>10}");
        }
        println!(
            "copied {} into {}; set [state] url to use it",
            config.state_path.display(),
            crate::state::StateStore::location(&target)
        );
    }
    Ok(0)
}
