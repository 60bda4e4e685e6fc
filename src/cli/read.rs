//! Verbs that read artifacts back: verify, cat, restore.

use std::io::{self, Write};

use crate::engine::{self, Selector, read, restore, restore_job};
use crate::{Error, Result};

use super::{Context, output};

#[derive(Debug, clap::Args)]
pub struct Which {
    /// The job
    job: String,
    /// Artifact id or a unique prefix of it [default: the newest]
    id: Option<String>,
    /// The newest artifact made at or before this time (2026-11-20T10:00:00Z, 2026-11-20)
    #[arg(long, conflicts_with = "id")]
    at: Option<String>,
    /// Read from this destination only
    #[arg(long, value_name = "DESTINATION")]
    from: Option<String>,
    /// Also use an artifact whose manifest is not signed by signing.public_key
    #[arg(long)]
    allow_unsigned: bool,
}

impl Which {
    /// `allow_bad`: artifacts marked bad by verification or a drill may be chosen.
    fn selector(&self, allow_bad: bool) -> Result<Selector> {
        Ok(Selector {
            allow_bad,
            allow_unsigned: self.allow_unsigned,
            id: self.id.clone(),
            at: self
                .at
                .as_deref()
                .map(crate::time::parse_at)
                .transpose()
                .map_err(Error::Usage)?,
            from: self.from.clone(),
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    which: Which,
    #[command(flatten)]
    trigger: super::TriggerArg,
}

#[derive(Debug, clap::Args)]
pub struct CatArgs {
    #[command(flatten)]
    which: Which,
    /// Also read a copy that verification or a drill marked bad
    #[arg(long)]
    allow_bad: bool,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    which: Which,
    /// Where to restore: a file (sqlite), a folder (files), or a database URL
    /// (postgres://…/db, mysql://…/db). Command jobs pipe into their `restore` program.
    #[arg(long, value_name = "PATH|URL")]
    to: Option<String>,
    /// Check everything and say what would happen, writing nothing
    #[arg(long)]
    dry_run: bool,
    /// Replace an existing target (files: kept as a safety copy; databases: restore into a
    /// non-empty one). Twice: replace a SQLite file even while another process has it open
    #[arg(long, action = clap::ArgAction::Count)]
    force: u8,
    /// Also restore from a copy that verification or a drill marked bad
    #[arg(long)]
    allow_bad: bool,
    /// Databases: drop the target's objects first (pg_restore --clean --if-exists; MySQL: re-create the database)
    #[arg(long, requires = "force")]
    clean: bool,
    /// Command and MySQL targets (and --force): stream at once instead of reading and
    /// checking the whole artifact first (for artifacts too large to read twice)
    #[arg(long)]
    no_verify_first: bool,
    /// How thoroughly a restored SQLite file is checked before it replaces the target
    /// (the hashes are always checked): quick = PRAGMA quick_check; full = also
    /// integrity_check and foreign_key_check, as drills do
    #[arg(long, value_enum, default_value_t = Check::Quick)]
    check: Check,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Check {
    Quick,
    Full,
}

impl From<Check> for crate::source::CheckLevel {
    fn from(check: Check) -> Self {
        match check {
            Check::Quick => crate::source::CheckLevel::Quick,
            Check::Full => crate::source::CheckLevel::Full,
        }
    }
}

pub fn verify(context: &Context, args: VerifyArgs) -> Result<u8> {
    let config = context.load()?;
    let job = config.job(&args.which.job)?;
    // Naming an artifact re-verifies it even when it was marked bad.
    let allow_bad = args.which.id.is_some();
    let store = super::open_store(&config);
    let selector = args.which.selector(allow_bad)?;
    let request = super::request(
        context,
        &config,
        job,
        store.as_deref(),
        args.trigger.trigger(),
    );
    let report = engine::job::verify(&request, &selector)?;
    if context.json {
        output::print_json(&report);
    } else {
        for copy in &report.copies {
            match (&copy.error, &copy.note) {
                (None, None) => println!(
                    "{} {} in `{}`: ok (stored bytes and plaintext match the manifest)",
                    report.job, report.id, copy.destination
                ),
                (None, Some(note)) => println!(
                    "{} {} in `{}`: ok ({note})",
                    report.job, report.id, copy.destination
                ),
                (Some(e), _) => println!(
                    "{} {} in `{}`: FAILED: {e}",
                    report.job, report.id, copy.destination
                ),
            }
        }
    }
    Ok(if report.ok() { 0 } else { 1 })
}

pub fn cat(context: &Context, args: CatArgs) -> Result<u8> {
    let config = context.load()?;
    let job = config.job(&args.which.job)?;
    let selector = args.which.selector(args.allow_bad)?;
    let destinations = engine::destinations_of(&config, job, selector.from.as_deref())?;
    let located = engine::locate(&config, job, &destinations, &selector)?;
    let key = crate::keys::decrypt_key(job)?;
    let (dest, _) = located
        .copies
        .first()
        .ok_or_else(|| Error::NotFound("no readable copy".into()))?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    read::read_artifact(
        dest.as_ref(),
        &located.manifest,
        &key,
        output::progress(false),
        &mut |stream| {
            // Writing is the reader's side (a closed pipe, a full disk): never damage.
            io::copy(stream, &mut out)
                .map(|_| ())
                .map_err(|e| Error::Target {
                    path: "stdout".into(),
                    message: format!("cannot write: {e}"),
                })
        },
    )
    .map_err(|e| Error::Run(format!("{e}; what was written to stdout must not be used")))?;
    out.flush()
        .map_err(|e| Error::Run(format!("cannot write to stdout: {e}")))?;
    Ok(0)
}

pub fn restore(context: &Context, args: RestoreArgs) -> Result<u8> {
    let config = context.load()?;
    let job = config.job(&args.which.job)?;
    // Restores are recorded in the history; dry runs change nothing and are not.
    let store = if args.dry_run {
        None
    } else {
        super::open_store(&config)
    };
    let report = crate::engine::runs::recorded(
        store.as_deref(),
        &job.name,
        crate::state::RunKind::Restore,
        crate::state::Trigger::Manual,
        || restore_located(&config, job, args, output::progress(context.progress)),
    )?;
    if context.json {
        output::print_json(&report);
    } else {
        if report.dry_run {
            println!("dry run: nothing was written");
        }
        for action in &report.actions {
            println!("- {action}");
        }
        if let Some(safety) = &report.safety_copy {
            if report.dry_run {
                println!("previous content would be kept at {}", safety.display());
            } else {
                println!("previous content kept at {}", safety.display());
            }
        }
    }
    Ok(0)
}

fn restore_located(
    config: &crate::config::Config,
    job: &crate::config::Job,
    args: RestoreArgs,
    progress: std::sync::Arc<dyn crate::progress::Progress>,
) -> Result<restore::RestoreReport> {
    let request = restore_job::RestoreRequest {
        selector: args.which.selector(args.allow_bad)?,
        to: args.to,
        dry_run: args.dry_run,
        force: args.force,
        clean: args.clean,
        verify_first: !args.no_verify_first,
        check: args.check.into(),
    };
    restore_job::restore_job(config, job, &request, progress)
}
