//! Restore drills: an artifact is restored into a scratch target (a temporary
//! SQLite file, PostgreSQL or MySQL database, or folder), checked, and the
//! target is removed again.
//!
//! The flow is the same for every kind: remove leftovers of earlier drills whose
//! process died, create the scratch target behind a guard that removes it on
//! every path (errors and panics included), restore through the same read path
//! as `cairn restore` (both hashes checked, damaged data never committed), then
//! the kind's integrity checks, the row counts recorded in the manifest, the
//! job's `expect_tables` and `assert` queries. A drill killed with SIGKILL
//! cannot clean up; its scratch target carries its pid and host, and the next
//! drill removes it.

pub mod assert;
pub mod files;
pub mod mysql;
pub mod postgres;
pub mod sqlite;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::config::Job;
use crate::engine::Located;
use crate::progress::Progress;
use crate::state::{RunEnd, StateStore};
use crate::{Error, Result};

// Bad marks live with the state store and checks with validation; drills use both.
pub use crate::engine::validate::Check;
pub use crate::state::marks::{clear_copy_mark, mark_copy_bad};

/// Prefix of scratch databases: `cairn_drill_<job>_<host>_<pid>_<random>`.
pub const DB_PREFIX: &str = "cairn_drill_";
/// Prefix of scratch files and folders: `.cairn-drill-<pid>-<random>`.
pub const PATH_PREFIX: &str = ".cairn-drill-";

/// A table's rows as recorded at backup time and as restored.
#[derive(Debug, Clone, Serialize)]
pub struct TableCount {
    pub table: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored: Option<i64>,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub job: String,
    pub id: String,
    pub kind: String,
    /// The scratch target, without credentials.
    pub target: String,
    pub destination: String,
    /// Every check passed.
    pub ok: bool,
    /// The artifact itself is damaged (it was marked bad).
    pub damaged: bool,
    /// The measured time to restore: the job's real recovery time.
    pub restore_seconds: f64,
    /// The whole drill, checks and clean-up included.
    pub total_seconds: f64,
    /// Size of the restored database or files.
    pub restored_bytes: u64,
    pub plaintext_bytes: u64,
    pub checks: Vec<Check>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableCount>,
    /// The scratch target was removed.
    pub cleaned_up: bool,
    /// Scratch targets of killed drills removed before this one started.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub leftovers_removed: Vec<String>,
}

impl DrillReport {
    /// The first failed check, for messages and the history.
    pub fn failure(&self) -> Option<String> {
        self.checks
            .iter()
            .find(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
    }
}

impl crate::engine::runs::Summary for DrillReport {
    fn run_end(&self) -> RunEnd {
        RunEnd {
            success: self.ok,
            bytes: Some(self.restored_bytes),
            artifact_id: Some(self.id.clone()),
            error: self.failure(),
            details: serde_json::to_value(self).ok(),
        }
    }
}

/// A scratch restore target of one kind. Dropping it removes it.
pub(crate) trait Scratch {
    fn describe(&self) -> String;
    /// Restores the artifact; returns (destination, plaintext bytes).
    fn restore(
        &mut self,
        job: &Job,
        located: &Located,
        progress: Arc<dyn Progress>,
    ) -> Result<(String, u64)>;
    /// The kind's integrity checks. `Err` means the checks could not run.
    fn integrity(&self) -> Result<Vec<Check>>;
    /// Size of what was restored.
    fn size(&self) -> Result<u64>;
    /// Exact row count of every user table.
    fn row_counts(&self) -> Result<BTreeMap<String, i64>> {
        Ok(BTreeMap::new())
    }
    /// Runs a query that returns one value; its text.
    fn query_value(&self, sql: &str) -> Result<String> {
        let _ = sql;
        Err(Error::Usage("this target takes no SQL".into()))
    }
    /// Removes the target now (dropping it does the same, ignoring errors).
    fn removes(&mut self) -> Result<()>;
}

type Cleanup = Box<dyn Fn() + Send>;

fn cleanups() -> &'static std::sync::Mutex<Vec<(u64, Cleanup)>> {
    static CLEANUPS: std::sync::OnceLock<std::sync::Mutex<Vec<(u64, Cleanup)>>> =
        std::sync::OnceLock::new();
    CLEANUPS.get_or_init(Default::default)
}

/// Registers how to remove a scratch target if the process is told to stop
/// (see [`run_cleanups`]); returns the handle for [`unregister_cleanup`].
pub(crate) fn register_cleanup(cleanup: Cleanup) -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    cleanups()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((id, cleanup));
    id
}

pub(crate) fn unregister_cleanup(id: u64) {
    cleanups()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|(i, _)| *i != id);
}

/// Removes every scratch target of drills running in this process. The CLI
/// calls it when SIGTERM or SIGINT arrive, before it exits; SIGKILL leaves the
/// target to the next drill.
/// Restores the artifact into the scratch database at `url` (PostgreSQL or
/// MySQL), exactly as `cairn restore --to URL` would.
pub(crate) fn restore_to_scratch_database(
    url: &str,
    job: &Job,
    located: &Located,
    progress: Arc<dyn Progress>,
) -> Result<(String, u64)> {
    let options = crate::engine::restore_server::ServerRestoreOptions {
        target_url: url.to_string(),
        force: false,
        clean: false,
        // A scratch database is dropped when anything fails.
        verify_first: false,
    };
    let report =
        crate::engine::restore_server::restore_to_server(job, located, &options, progress)?;
    Ok((report.destination, report.plaintext_bytes))
}

pub fn run_cleanups() {
    let list = std::mem::take(&mut *cleanups().lock().unwrap_or_else(|p| p.into_inner()));
    for (_, cleanup) in list {
        cleanup();
    }
}

/// Streams the artifact into the local scratch `path` with `restorer` (through
/// the same read path as `cairn restore`: both hashes checked), trying the next
/// copy when one is damaged or unreachable, after removing a partial write.
pub(crate) fn restore_local(
    job: &Job,
    located: &Located,
    progress: Arc<dyn Progress>,
    restorer: &dyn crate::source::Restorer,
    path: &std::path::Path,
) -> Result<(String, u64)> {
    let key = crate::keys::decrypt_key(job)?;
    let found = crate::engine::fallback::first_good_copy(located, "drill", &progress, |dest| {
        // What a failed copy left is not restored over.
        let _ = remove_path(path);
        crate::engine::read::read_artifact(
            dest,
            &located.manifest,
            &key,
            progress.clone(),
            &mut |stream| restorer.write(stream, path),
        )
    })?;
    Ok((found.destination, found.value.plaintext.size))
}

/// A random suffix for scratch names.
fn nonce() -> String {
    format!("{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// A short, stable tag of this host for scratch database names.
pub fn host_tag() -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(crate::state::host().as_bytes());
    hex::encode(&digest[..3])
}

/// `cairn_drill_<job>_<host>_<pid>_<random>`, within the 63 characters that
/// PostgreSQL and MySQL allow.
pub fn scratch_db_name(job: &str) -> String {
    let job: String = job
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(24)
        .collect();
    format!(
        "{DB_PREFIX}{job}_{}_{}_{}",
        host_tag(),
        std::process::id(),
        nonce()
    )
}

/// Whether `name` is a scratch database of a drill of this host whose process is gone.
pub fn is_dead_scratch_db(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(DB_PREFIX) else {
        return false;
    };
    let mut parts = rest.rsplitn(4, '_');
    let (Some(_nonce), Some(pid), Some(host), Some(_job)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    host == host_tag() && crate::leftovers::owner_dead(pid)
}

/// `<scratch_dir>/.cairn-drill-<pid>-<random><suffix>`.
pub fn scratch_path(dir: &Path, suffix: &str) -> PathBuf {
    dir.join(format!(
        "{PATH_PREFIX}{}-{}{suffix}",
        std::process::id(),
        nonce()
    ))
}

/// Removes scratch files and folders in `dir` of drills whose process is gone.
pub fn remove_dead_scratch_paths(dir: &Path) -> Vec<String> {
    crate::leftovers::sweep_dir(dir, PATH_PREFIX, "an interrupted drill")
        .iter()
        .map(|p| p.display().to_string())
        .collect()
}

pub use crate::leftovers::remove_path;

/// Free bytes for an unprivileged user in the file system holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    crate::local_fs::free_space(dir).ok().map(|(free, _)| free)
}

/// Refuses a local drill that cannot fit: the restore needs the plaintext size.
fn check_space(dir: &Path, needed: u64) -> Result<()> {
    match free_bytes(dir) {
        Some(free) if free < needed => Err(Error::Target {
            path: dir.to_path_buf(),
            message: format!(
                "the drill needs {needed} bytes of scratch space and only {free} are free here; set drill.scratch_dir to a bigger folder"
            ),
        }),
        _ => Ok(()),
    }
}

/// The scratch target for `job`'s artifact, with leftovers of killed drills removed.
fn scratch_for(job: &Job, located: &Located) -> Result<(Box<dyn Scratch>, Vec<String>)> {
    let manifest = &located.manifest;
    match manifest.source.kind.as_str() {
        "sqlite" => {
            let dir = job.drill.scratch_dir();
            let leftovers = remove_dead_scratch_paths(&dir);
            let scratch = sqlite::SqliteScratch::new(&dir)?;
            check_space(&dir, manifest.plaintext.size)?;
            Ok((Box::new(scratch), leftovers))
        }
        "files" => {
            let dir = job.drill.scratch_dir();
            let leftovers = remove_dead_scratch_paths(&dir);
            crate::local_fs::ensure_dir(&dir).ok();
            check_space(
                &dir,
                manifest.source.facts["file_bytes"].as_u64().unwrap_or(0),
            )?;
            Ok((
                Box::new(files::FilesScratch::new(&dir, &manifest.source.facts)?),
                leftovers,
            ))
        }
        "postgres" => {
            let scratch = postgres::PgScratch::new(job, manifest)?;
            let leftovers = scratch.remove_dead();
            Ok((Box::new(scratch), leftovers))
        }
        "mysql" => {
            let scratch = mysql::MyScratch::new(job)?;
            let leftovers = scratch.remove_dead();
            Ok((Box::new(scratch), leftovers))
        }
        other => Err(Error::Usage(format!(
            "artifacts of source kind `{other}` cannot be drilled: cairn cannot check what their restore produces"
        ))),
    }
}

/// For `cairn check`: whether a configured drill of `job` can create its
/// scratch target on this host; `None` when the job has no `drill` table.
pub fn readiness(job: &Job) -> Option<(bool, String)> {
    if !job.drill.configured {
        return None;
    }
    Some(match &job.source {
        crate::config::SourceConfig::Sqlite { .. } | crate::config::SourceConfig::Files { .. } => {
            let dir = job.drill.scratch_dir();
            let probe = scratch_path(&dir, ".probe");
            match crate::local_fs::ensure_dir(&dir)
                .and_then(|()| crate::local_fs::create_private(&probe).map(drop))
            {
                Ok(()) => {
                    let _ = std::fs::remove_file(&probe);
                    let free = free_bytes(&dir).unwrap_or(0);
                    (
                        true,
                        format!(
                            "scratch folder {} is writable ({free} bytes free)",
                            dir.display()
                        ),
                    )
                }
                Err(e) => (
                    false,
                    format!(
                        "scratch folder {} cannot be written: {e} (set drill.scratch_dir)",
                        dir.display()
                    ),
                ),
            }
        }
        crate::config::SourceConfig::Postgres { .. } => {
            let probe = postgres::PgScratch::can_create(job);
            match probe {
                Ok(server) => (true, format!("may create scratch databases on {server}")),
                Err(e) => (false, e.to_string()),
            }
        }
        crate::config::SourceConfig::Mysql { .. } => {
            match mysql::MyScratch::new(job).and_then(|s| s.reachable()) {
                Ok(server) => (true, format!("scratch databases go to {server}")),
                Err(e) => (false, e.to_string()),
            }
        }
        crate::config::SourceConfig::Command { .. } => {
            (false, "command jobs cannot be drilled".to_string())
        }
    })
}

/// Drills the located artifact of `job`. Damage found in the artifact marks it
/// bad in `store`; failed assertions fail the drill but leave the artifact good.
pub fn drill(
    job: &Job,
    located: &Located,
    store: Option<&dyn StateStore>,
    progress: Arc<dyn Progress>,
) -> Result<DrillReport> {
    let started = Instant::now();
    let manifest = &located.manifest;
    // A drill decrypts: fail before creating anything on a host without the key.
    crate::keys::decrypt_key(job).map_err(|e| {
        Error::Crypto(format!(
            "{e}; a drill decrypts the artifact: run it on a host that holds the key (it may share this config and the storage)"
        ))
    })?;
    let (mut scratch, leftovers_removed) = scratch_for(job, located)?;
    for leftover in &leftovers_removed {
        tracing::warn!(job = %job.name, "removed the scratch target of an interrupted drill: {leftover}");
    }
    let mut report = DrillReport {
        job: job.name.clone(),
        id: manifest.id.clone(),
        kind: manifest.source.kind.clone(),
        target: scratch.describe(),
        destination: String::new(),
        ok: false,
        damaged: false,
        restore_seconds: 0.0,
        total_seconds: 0.0,
        restored_bytes: 0,
        plaintext_bytes: 0,
        checks: Vec::new(),
        tables: Vec::new(),
        cleaned_up: false,
        leftovers_removed,
    };
    tracing::info!(job = %job.name, id = %manifest.id, target = %report.target, "drill: restoring into a scratch target");
    let restore_started = Instant::now();
    let restored = scratch.restore(job, located, progress);
    report.restore_seconds = restore_started.elapsed().as_secs_f64();
    match restored {
        Ok((destination, bytes)) => {
            report.destination = destination;
            report.plaintext_bytes = bytes;
            report.checks.push(Check::new(
                "restore",
                true,
                format!(
                    "restored {bytes} bytes into {} in {:.2}s; stored and plaintext SHA-256 match the manifest",
                    report.target, report.restore_seconds
                ),
            ));
            run_checks(job, located, scratch.as_ref(), &mut report);
        }
        Err(e) => {
            report.damaged = matches!(e, Error::Integrity { .. });
            report
                .checks
                .push(Check::new("restore", false, e.to_string()));
        }
    }
    match crate::fault_point::reached("drill.before_cleanup")
        .map_err(|e| Error::Run(e.to_string()))
        .and_then(|()| scratch.removes())
    {
        Ok(()) => report.cleaned_up = true,
        Err(e) => {
            tracing::error!(job = %job.name, target = %report.target, error = %e, "cannot remove the scratch target");
            report
                .checks
                .push(Check::new("clean-up", false, e.to_string()));
        }
    }
    drop(scratch);
    report.ok = report.checks.iter().all(|c| c.ok);
    report.total_seconds = started.elapsed().as_secs_f64();
    if report.damaged
        && let Some(store) = store
    {
        let reason = format!(
            "drill: {}",
            report.failure().unwrap_or_else(|| "damaged".into())
        );
        mark_damaged_copies(job, located, &report.destination, store, &reason);
    }
    if report.ok
        && let Some(store) = store
    {
        let marks = store.copy_marks(&job.name).unwrap_or_default();
        let own = marks
            .0
            .get(&(manifest.id.clone(), report.destination.clone()))
            .is_some_and(|m| m.bad);
        if own {
            clear_copy_mark(
                store,
                &job.name,
                &manifest.id,
                &report.destination,
                "a drill restored and checked it",
            );
        }
        let whole = marks
            .0
            .get(&(manifest.id.clone(), crate::state::EVERY_COPY.to_string()))
            .is_some_and(|m| m.bad);
        if whole && let Err(e) = store.forget_whole_mark(&job.name, &manifest.id) {
            tracing::error!(job = %job.name, id = %manifest.id, error = %e, "cannot update the artifact's marks");
        }
    }
    if report.ok {
        tracing::info!(job = %job.name, id = %manifest.id, seconds = report.restore_seconds, "drill passed");
    } else {
        tracing::error!(job = %job.name, id = %manifest.id, "drill failed: {}", report.failure().unwrap_or_default());
    }
    Ok(report)
}

/// Marks the copies a damaged drill speaks for. When the restore worked and a
/// check failed, the copy it read holds data that was broken when it was
/// backed up. When the restore itself failed, each copy's stored bytes are
/// checked: those that do not match are marked; if all match, the damage is
/// in what was stored and every copy is marked.
fn mark_damaged_copies(
    job: &Job,
    located: &Located,
    restored_from: &str,
    store: &dyn StateStore,
    reason: &str,
) {
    let mut damaged: Vec<String> = Vec::new();
    if restored_from.is_empty() {
        let quick = crate::engine::verify::verify_with(
            job,
            located,
            crate::engine::verify::Depth::Quick,
            Arc::new(crate::progress::Silent),
        );
        if let Ok(report) = quick {
            damaged = report
                .copies
                .iter()
                .filter(|c| c.damaged)
                .map(|c| c.destination.clone())
                .collect();
        }
        if damaged.is_empty() {
            damaged = located
                .copies
                .iter()
                .map(|(d, _)| d.name().to_string())
                .collect();
        }
    } else {
        damaged.push(restored_from.to_string());
    }
    for destination in damaged {
        mark_copy_bad(store, &job.name, &located.manifest.id, &destination, reason);
    }
}

fn run_checks(job: &Job, located: &Located, scratch: &dyn Scratch, report: &mut DrillReport) {
    match scratch.integrity() {
        Ok(checks) => {
            // An integrity failure of what hashed correctly is still damage: the
            // data was already broken when it was backed up.
            if checks.iter().any(|c| !c.ok) {
                report.damaged = true;
            }
            report.checks.extend(checks);
        }
        Err(e) => report
            .checks
            .push(Check::new("integrity", false, e.to_string())),
    }
    match scratch.size() {
        Ok(bytes) => report.restored_bytes = bytes,
        Err(e) => tracing::warn!(job = %job.name, error = %e, "cannot measure the restored size"),
    }
    if !matches!(
        located.manifest.source.kind.as_str(),
        "sqlite" | "postgres" | "mysql"
    ) {
        return;
    }
    let restored = match scratch.row_counts() {
        Ok(counts) => counts,
        Err(e) => {
            report
                .checks
                .push(Check::new("row counts", false, e.to_string()));
            return;
        }
    };
    let recorded = located.manifest.source.facts["tables"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    // Manifests name the tables whose counts are estimates; older ones of the
    // servers recorded estimates only.
    let facts = &located.manifest.source.facts;
    let estimated: Option<Vec<String>> =
        serde_json::from_value(facts["estimated_tables"].clone()).ok();
    let all_estimated = estimated.is_none() && located.manifest.source.kind != "sqlite";
    let (tables, check) = assert::compare_rows(
        &recorded,
        &restored,
        job.drill.row_count_tolerance,
        |table| {
            all_estimated
                || estimated
                    .as_ref()
                    .is_some_and(|e| e.iter().any(|t| t == table))
        },
    );
    report.tables = tables;
    report.checks.push(check);
    if !job.drill.expect_tables.is_empty() {
        report
            .checks
            .push(assert::expect_tables(&job.drill.expect_tables, &restored));
    }
    for sql in &job.drill.assert {
        report
            .checks
            .push(assert::assertion(sql, |q| scratch.query_value(q)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_database_names_carry_host_and_pid_and_fit_identifiers() {
        let name = scratch_db_name("Shop-Orders.eu_west_with_a_very_long_name_indeed");
        assert!(name.len() <= 63, "{name}");
        assert!(
            name.starts_with("cairn_drill_shop_orders_eu_west_with_"),
            "{name}"
        );
        assert!(name.contains(&format!("_{}_{}_", host_tag(), std::process::id())));
        // This process is alive: not a leftover.
        assert!(!is_dead_scratch_db(&name));
        // A dead pid on this host is; another host's or a foreign name is not.
        let dead = format!("{DB_PREFIX}shop_{}_{}_abcdef", host_tag(), i32::MAX - 1);
        assert!(is_dead_scratch_db(&dead));
        assert!(!is_dead_scratch_db(&format!(
            "{DB_PREFIX}shop_000000_{}_abcdef",
            i32::MAX - 1
        )));
        assert!(!is_dead_scratch_db("cairn_drill_"));
        assert!(!is_dead_scratch_db("shop"));
    }

    #[test]
    fn a_drill_that_cannot_fit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).is_some_and(|b| b > 0));
        assert!(check_space(dir.path(), 1).is_ok());
        let err = check_space(dir.path(), u64::MAX).unwrap_err().to_string();
        assert!(err.contains("drill.scratch_dir"), "{err}");
    }

    #[test]
    fn dead_scratch_paths_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let live = scratch_path(dir.path(), ".sqlite");
        std::fs::write(&live, b"x").unwrap();
        let dead = dir
            .path()
            .join(format!("{PATH_PREFIX}{}-abcdef", i32::MAX - 1));
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("f"), b"x").unwrap();
        let other = dir.path().join("unrelated");
        std::fs::write(&other, b"x").unwrap();
        let removed = remove_dead_scratch_paths(dir.path());
        assert_eq!(removed.len(), 1);
        assert!(!dead.exists() && live.exists() && other.exists());
    }
}
