//! Restoring one artifact of a job where its caller says: the one entry point
//! of `cairn restore` and of the web API's restore. It locates the artifact,
//! picks the restore of its kind (a file or folder, a database server, a
//! command job's `restore` program), plans, then rehearses (a dry run) or
//! applies.

use std::path::PathBuf;
use std::sync::Arc;

use super::{Selector, restore, restore_server};
use crate::config::{Config, Job};
use crate::progress::Progress;
pub use crate::source::CheckLevel;
use crate::{Error, Result};

/// What to restore and how (`cairn restore`'s options).
#[derive(Debug, Clone, Default)]
pub struct RestoreRequest {
    pub selector: Selector,
    /// A file or folder path, or a database URL; command jobs take none.
    pub to: Option<String>,
    /// Read and check everything, say what would happen, write nothing.
    pub dry_run: bool,
    /// Replace an existing target (kept as a safety copy); 2: even an open SQLite file.
    pub force: u8,
    /// Databases: drop the target's objects first.
    pub clean: bool,
    /// Command and MySQL targets: read and check the whole artifact before streaming.
    pub verify_first: bool,
    /// How thoroughly a restored file is checked before it replaces the target.
    pub check: CheckLevel,
}

/// Locates the artifact and restores it as `request` says. A dry run's report
/// names the safety copy a real restore would keep.
pub fn restore_job(
    config: &Config,
    job: &Job,
    request: &RestoreRequest,
    progress: Arc<dyn Progress>,
) -> Result<restore::RestoreReport> {
    let selector = &request.selector;
    let destinations = super::destinations_of(config, job, selector.from.as_deref())?;
    let located = super::locate(config, job, &destinations, selector)?;
    let kind = located.manifest.source.kind.clone();
    if request.check == CheckLevel::Full && kind != "sqlite" {
        return Err(Error::Usage(format!(
            "a full check applies to SQLite restores; artifacts of `{kind}` are checked by their hashes (and a database server checks what it loads): drop --check full"
        )));
    }
    Ok(match (kind.as_str(), request.to.clone()) {
        ("command", None) => {
            let planned = restore_server::plan_command(job, &located, request.verify_first)?;
            if request.dry_run {
                restore_server::rehearse_command(job, &located, &planned, progress)?
            } else {
                restore_server::apply_command(job, &located, &planned, progress)?
            }
        }
        ("command", Some(_)) => {
            return Err(Error::Usage(format!(
                "job `{}` restores through its `restore` command: drop --to",
                job.name
            )));
        }
        (kind, Some(url)) if crate::source::restores_to_server(kind) => {
            let options = restore_server::ServerRestoreOptions {
                target_url: url,
                force: request.force > 0,
                clean: request.clean,
                verify_first: request.verify_first,
            };
            let planned = restore_server::plan(job, &located, &options)?;
            if request.dry_run {
                restore_server::rehearse(job, &located, &planned, progress)?
            } else {
                restore_server::apply(job, &located, &planned, progress)?
            }
        }
        (kind, None) if crate::source::restores_to_server(kind) => {
            return Err(Error::Usage(format!(
                "say where to restore job `{}`: --to {}://USER@HOST:PORT/DATABASE",
                job.name, kind
            )));
        }
        (_, None) => {
            return Err(Error::Usage(format!(
                "say where to restore job `{}`: --to PATH",
                job.name
            )));
        }
        (_, Some(path)) => {
            if request.clean {
                return Err(Error::Usage(
                    "--clean applies to database restores only".into(),
                ));
            }
            let options = restore::RestoreOptions {
                target: PathBuf::from(path),
                force: request.force > 0,
                replace_open: request.force > 1,
                check: request.check,
            };
            let plan = restore::plan(&located, &options)?;
            if request.dry_run {
                let mut report = restore::rehearse(job, &located, &plan, progress)?;
                report.safety_copy = plan.replace.as_ref().map(|r| r.safety_copy.clone());
                report
            } else {
                restore::apply(job, &located, &plan, progress)?
            }
        }
    })
}

/// Where a job's own source lives on this host, for a restore back into it:
/// the SQLite file or the folder. Database servers and command jobs have none
/// (`None`): they restore through a URL or their own program.
pub fn own_path(job: &Job) -> Option<PathBuf> {
    match &job.source {
        crate::config::SourceConfig::Sqlite { path } => Some(path.clone()),
        crate::config::SourceConfig::Files { path, .. } => Some(path.clone()),
        _ => None,
    }
}
