//! The command-line interface: argument parsing, output and exit codes. Each
//! verb lives in its own file and calls the engine.

// Every line the CLI prints goes through these instead of std's macros, which
// panic when stdout or stderr is a closed pipe (`cairn backup --all | head -1`)
// and so would skip the remaining jobs and `--prune`. A closed stdout is
// remembered and turns a clean exit into exit 1; the work itself goes on.
// Declared before the verb modules so that they all use them.
macro_rules! println {
    () => { $crate::cli::output::write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cli::output::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}
macro_rules! print {
    ($($arg:tt)*) => { $crate::cli::output::write_stdout(format_args!($($arg)*)) };
}
macro_rules! eprintln {
    () => { $crate::cli::output::write_stderr(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cli::output::write_stderr(format_args!("{}\n", format_args!($($arg)*))) };
}

mod audit;
mod backup;
mod check;
mod daemon;
mod drill;
mod gc;
mod health;
mod history;
mod init;
mod keygen;
mod list;
mod metrics;
mod notify;
mod output;
mod prune;
mod quickstart;
mod read;
mod repair;
mod report;
mod schedule;
mod shell;
mod status;
mod systemd;
mod token;
mod user;
mod validate;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

use crate::config::{Config, DEFAULT_FILE};
use crate::{Error, Result};

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "Back up databases and folders: compressed, encrypted, verified, restorable with standard tools.",
    propagate_version = true
)]
pub struct Cli {
    /// Config file [default: ./cairn.toml]
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "CAIRN_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,

    /// Print machine-readable JSON on stdout
    #[arg(long, global = true)]
    json: bool,

    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "CAIRN_LOG_FORMAT")]
    log_format: LogFormat,

    /// More log output (-v info, -vv debug, -vvv debug of dependencies too)
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// Only errors on stderr; no progress bars
    #[arg(long, short = 'q', global = true)]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Back up jobs now
    Backup(backup::Args),
    /// List artifacts, read from the destinations themselves
    List(list::Args),
    /// Re-read an artifact and check its hashes, decrypting and decompressing it
    Verify(read::VerifyArgs),
    /// Write an artifact's plaintext to stdout
    Cat(read::CatArgs),
    /// Restore an artifact to a path
    Restore(read::RestoreArgs),
    /// Check the config and this host: sources, destinations, keys
    Check(check::Args),
    /// Delete artifacts the retention policy does not keep (shows keep/delete and why)
    Prune(prune::Args),
    /// Copy good copies over damaged or missing ones in a job's destinations
    Repair(repair::RepairArgs),
    /// Copy artifacts into one of a job's destinations (e.g. one added later)
    Copy(repair::CopyArgs),
    /// Restore an artifact into a scratch target and check it (integrity, row counts, assertions)
    Drill(drill::Args),
    /// Check live data: integrity checks and the job's validation rules
    Validate(validate::Args),
    /// Integrity report over all jobs: newest good artifact, last verification, drill, validation
    Report(report::Args),
    /// Remove leftovers of interrupted backups (data without manifest, unfinished uploads)
    Gc(gc::Args),
    /// Run every job on its schedules until stopped (SIGHUP reloads, SIGTERM stops)
    Daemon(daemon::Args),
    /// Tell the running daemon to reload its config (checked first)
    Reload(daemon::ReloadArgs),
    /// Each job: schedules, next run, last run, newest good artifact, stored size
    Status(status::Args),
    /// Recorded runs, newest first (backup, prune, verify, restore, drill, check, repair, copy)
    History(history::Args),
    /// Run health checks now (all, or the named ones); exit 1 if any is failing
    Health(health::Args),
    /// Notification channels: `notify test CHANNEL`
    Notify(notify::Args),
    /// Print the Prometheus metrics once, or write them to a textfile / push them
    Metrics(metrics::Args),
    /// Stop scheduling a job until `cairn resume`
    Pause(status::PauseArgs),
    /// Schedule a paused job again
    Resume(status::PauseArgs),
    /// Override a job's schedules (another cron expression, or none) until `--clear`
    Schedule(schedule::Args),
    /// Users of the web UI: `user add|list|remove|passwd`
    User(user::Args),
    /// API tokens: `token create|list|revoke`
    Token(token::Args),
    /// The audit log of changes, logins and downloads; `--verify` checks its hash chain
    Audit(audit::Args),
    /// Print systemd units for the daemon (or timers for each job)
    Systemd(systemd::Args),
    /// Write a commented example config
    Init(init::Args),
    /// Create an age identity file and print its recipient
    Keygen(keygen::Args),
    /// Try cairn on a sample SQLite database: back up, verify, restore, compare
    Quickstart(quickstart::Args),
    /// Print shell completions (bash, zsh, fish, elvish, powershell)
    Completions(shell::CompletionArgs),
    /// Print the man page, or write every page into a folder (--dir)
    Man(shell::ManArgs),
}

/// Everything a verb needs from the global flags.
pub struct Context {
    config_path: PathBuf,
    json: bool,
    progress: bool,
    log_format: LogFormat,
}

impl Context {
    fn load(&self) -> Result<Config> {
        Ok(Config::load(&self.config_path)?)
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_logging(&cli);
    let context = Context {
        config_path: cli
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_FILE)),
        json: cli.json,
        progress: !cli.quiet && std::io::stderr().is_terminal(),
        log_format: cli.log_format,
    };
    let result = match cli.command {
        Command::Backup(args) => backup::run(&context, args),
        Command::List(args) => list::run(&context, args),
        Command::Verify(args) => read::verify(&context, args),
        Command::Cat(args) => read::cat(&context, args),
        Command::Restore(args) => read::restore(&context, args),
        Command::Check(args) => check::run(&context, args),
        Command::Prune(args) => prune::run(&context, args),
        Command::Drill(args) => drill::run(&context, args),
        Command::Repair(args) => repair::repair(&context, args),
        Command::Copy(args) => repair::copy(&context, args),
        Command::Validate(args) => validate::run(&context, args),
        Command::Report(args) => report::run(&context, args),
        Command::Gc(args) => gc::run(&context, args),
        Command::Daemon(args) => daemon::run(&context, args),
        Command::Reload(args) => daemon::reload(&context, args),
        Command::Status(args) => status::run(&context, args),
        Command::History(args) => history::run(&context, args),
        Command::Health(args) => health::run(&context, args),
        Command::Notify(args) => notify::run(&context, args),
        Command::Metrics(args) => metrics::run(&context, args),
        Command::Pause(args) => status::pause(&context, args, true),
        Command::Resume(args) => status::pause(&context, args, false),
        Command::Schedule(args) => schedule::run(&context, args),
        Command::User(args) => user::run(&context, args),
        Command::Token(args) => token::run(&context, args),
        Command::Audit(args) => audit::run(&context, args),
        Command::Systemd(args) => systemd::run(&context, args),
        Command::Init(args) => init::run(&context, args),
        Command::Keygen(args) => keygen::run(&context, args),
        Command::Quickstart(args) => quickstart::run(&context, args),
        Command::Completions(args) => shell::completions(&context, args),
        Command::Man(args) => shell::man(&context, args),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            output::print_error(&e, context.json);
            e.exit_code()
        }
    };
    ExitCode::from(output::exit_code_after_output(code))
}

/// Human-readable logs on a terminal, quiet (warnings and errors only) when not,
/// JSON lines with `--log-format json`. `CAIRN_LOG` overrides the filter.
fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let default = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            0 if std::io::stderr().is_terminal() => "warn",
            0 => "warn",
            1 => "info",
            // Dependencies (HTTP, TLS, object-store signing) stay at info: their
            // debug lines are noise, and some print credentials.
            2 => "info,cairn=debug",
            _ => "debug",
        }
    };
    let filter = EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // Whatever the filter lets through, no configured secret reaches stderr;
    // and a closed stderr must not panic (the layer's own error report would).
    let output = tracing_subscriber::fmt::layer()
        .with_writer(|| crate::redact::RedactingWriter(std::io::stderr()))
        .log_internal_errors(false)
        .with_target(false);
    // The daemon is read in journals, which stamp lines themselves; one-shot
    // commands on a terminal stay short.
    let output = match cli.log_format {
        LogFormat::Json => output.json().with_filter(filter).boxed(),
        LogFormat::Text => output
            .with_ansi(std::io::stderr().is_terminal())
            .without_time()
            .with_filter(filter)
            .boxed(),
    };
    // Run histories keep info lines whatever is shown on stderr.
    let capture = crate::state::runlog::CaptureLayer.with_filter(LevelFilter::INFO);
    let _ = tracing_subscriber::registry()
        .with(output)
        .with(capture)
        .try_init();
}

/// The hidden `--trigger` flag: the daemon says why it started a run.
#[derive(Debug, Clone, clap::Args)]
pub struct TriggerArg {
    #[arg(long, hide = true, value_parser = ["manual", "schedule", "catch-up"], default_value = "manual")]
    trigger: String,
}

impl TriggerArg {
    pub fn trigger(&self) -> crate::state::Trigger {
        self.trigger
            .parse()
            .unwrap_or(crate::state::Trigger::Manual)
    }
}

/// SIGTERM or SIGINT make the running work stop cleanly (nothing is committed);
/// a second one ends the process at once.
fn cancel_on_signals() -> crate::cancel::Cancel {
    let cancel = crate::cancel::Cancel::new();
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let flag = cancel.flag();
        // The conditional shutdown must be registered first: it exits only if
        // the flag was already set by an earlier signal.
        let _ = signal_hook::flag::register_conditional_shutdown(signal, 130, flag.clone());
        let _ = signal_hook::flag::register(signal, flag);
    }
    cancel
}

/// The state store for a verb that works on jobs or reports on them: runs of
/// processes that died meanwhile are settled first (recorded as interrupted
/// and alerted), so that no verb shows a dead run as still running.
fn open_store(config: &Config) -> Option<Box<dyn crate::state::StateStore>> {
    let store = crate::state::open_or_warn(config)?;
    crate::engine::runs::settle_orphans(config, store.as_ref(), &Notifier);
    Some(store)
}

/// Delivers the engine's events through the config's notification channels:
/// what every verb and the daemon install.
pub struct Notifier;

impl crate::engine::events::EventSink for Notifier {
    fn emit(
        &self,
        config: &Config,
        store: Option<&dyn crate::state::StateStore>,
        event: &crate::engine::events::Event<'_>,
    ) {
        use crate::engine::events::Event;
        match *event {
            Event::Started { job } => crate::notify::run_started(config, Some(job), None),
            Event::Finished { job, kind, end } => {
                crate::notify::run_finished(config, store, job, kind, end);
            }
            Event::Interrupted { run } => {
                if let Some(store) = store {
                    crate::notify::run_interrupted(config, store, run);
                }
            }
        }
    }
}

/// A run of `job` for the engine, with this process's events and progress.
fn request<'a>(
    context: &Context,
    config: &'a Config,
    job: &'a crate::config::Job,
    store: Option<&'a dyn crate::state::StateStore>,
    trigger: crate::state::Trigger,
) -> crate::engine::job::Request<'a> {
    crate::engine::job::Request {
        config,
        job,
        store,
        trigger,
        events: &Notifier,
        progress: output::progress(context.progress),
        open: Box::new(crate::engine::configured(config)),
    }
}

/// The named jobs, or every job when none is named.
fn named_or_all_jobs<'a>(
    config: &'a Config,
    names: &[String],
) -> Result<Vec<&'a crate::config::Job>> {
    if names.is_empty() {
        Ok(config.jobs.values().collect())
    } else {
        select_jobs(config, names, false)
    }
}

/// Resolves `JOB...` / `--all` to jobs of the config.
fn select_jobs<'a>(
    config: &'a Config,
    names: &[String],
    all: bool,
) -> Result<Vec<&'a crate::config::Job>> {
    if all {
        if config.jobs.is_empty() {
            return Err(Error::Usage(format!(
                "{} defines no jobs",
                config.file.display()
            )));
        }
        return Ok(config.jobs.values().collect());
    }
    if names.is_empty() {
        return Err(Error::Usage("name at least one job, or pass --all".into()));
    }
    names.iter().map(|n| config.job(n)).collect()
}
