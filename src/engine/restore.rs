//! `restore`: write an artifact's content to a path, safely.
//!
//! The content is streamed into a temporary file or folder beside the target,
//! its hashes are checked against the manifest and its kind-specific check
//! (SQLite: `PRAGMA quick_check`, or the full checks on request) is run; only then does it replace the
//! target, atomically where the kernel allows. An existing target is replaced
//! only with `force`, and is then kept as a safety copy.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::{Located, fallback, read};
use crate::config::Job;
use crate::keys;
use crate::progress::Progress;
use crate::source::{self, CheckLevel, Restorer, TargetShape};
use crate::{Error, Result};

const TEMP_MARK: &str = ".cairn-restore-";

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub target: PathBuf,
    pub force: bool,
    /// Replace a database file that another process has open (`--force` twice).
    pub replace_open: bool,
    /// How thoroughly the restored copy is checked before it is put in place.
    pub check: CheckLevel,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub job: String,
    pub id: String,
    pub destination: String,
    /// A path, a database URL without credentials, or a command.
    pub target: String,
    pub dry_run: bool,
    /// Where the previous content of the target was kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safety_copy: Option<PathBuf>,
    pub plaintext_bytes: u64,
    /// What was (or, on a dry run, would be) done.
    pub actions: Vec<String>,
}

impl crate::engine::runs::Summary for RestoreReport {
    fn run_end(&self) -> crate::state::RunEnd {
        crate::state::RunEnd {
            success: true,
            bytes: Some(self.plaintext_bytes),
            artifact_id: Some(self.id.clone()),
            error: None,
            details: serde_json::to_value(self).ok(),
        }
    }
}

/// The artifact a restore reads, as its plan names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedArtifact {
    pub job: String,
    pub id: String,
    pub kind: String,
    pub stored_bytes: u64,
    pub plaintext_bytes: u64,
    /// The destinations holding a good copy, in the order they are read: the
    /// next is tried when a copy turns out damaged or unreachable.
    pub copies: Vec<String>,
}

impl PlannedArtifact {
    pub fn of(located: &Located) -> Self {
        let manifest = &located.manifest;
        PlannedArtifact {
            job: manifest.job.clone(),
            id: manifest.id.clone(),
            kind: manifest.source.kind.clone(),
            stored_bytes: manifest.data.size,
            plaintext_bytes: manifest.plaintext.size,
            copies: located
                .copies
                .iter()
                .map(|(d, _)| d.name().to_string())
                .collect(),
        }
    }

    /// The first line of every restore's actions.
    pub fn read_line(&self) -> String {
        format!(
            "read artifact {} of job `{}` ({} bytes stored, {} bytes of {})",
            self.id, self.job, self.stored_bytes, self.plaintext_bytes, self.kind
        )
    }

    /// The order copies are read in, when there is a choice.
    pub fn copies_line(&self) -> Option<String> {
        (self.copies.len() > 1).then(|| {
            let named: Vec<String> = self.copies.iter().map(|c| format!("`{c}`")).collect();
            format!(
                "would read the copies in this order, each next one only if the one before is damaged or unreachable: {}",
                named.join(", ")
            )
        })
    }
}

/// What restoring to a path will do, decided from the target and the located
/// artifact before anything is written. A dry run renders it; `apply` does it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestorePlan {
    pub artifact: PlannedArtifact,
    pub target: PathBuf,
    /// The target exists (and `--force` was given): it is replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replace: Option<Replacement>,
    /// Temporaries of killed restores of this target, removed first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub leftovers: Vec<PathBuf>,
    /// Replace the target even while another process has it open.
    pub replace_open: bool,
    /// How thoroughly the restored copy is checked before it is put in place.
    pub check: CheckLevel,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replacement {
    /// Where the current content goes.
    pub safety_copy: PathBuf,
    /// Files that belong to the current content (SQLite's `-wal`), which go with it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub companions: Vec<PathBuf>,
}

impl RestorePlan {
    /// What applying the plan would do, after the artifact was read and checked.
    pub fn intentions(&self) -> Vec<String> {
        let mut lines = Vec::new();
        lines.extend(self.artifact.copies_line());
        for leftover in &self.leftovers {
            lines.push(format!(
                "would remove {}, left by an interrupted restore",
                leftover.display()
            ));
        }
        if let Some(replace) = &self.replace {
            lines.push(format!(
                "would move the existing {} to {}",
                self.target.display(),
                replace.safety_copy.display()
            ));
            for companion in &replace.companions {
                lines.push(format!(
                    "would move {} (it belongs to the existing content) beside the safety copy",
                    companion.display()
                ));
            }
        }
        lines.push(format!("would write {}", self.target.display()));
        lines
    }
}

/// Decides what restoring `located` to `options.target` does: refuses a target
/// that cannot be written, an existing one without `force`, an open database
/// file without `replace_open`. Reads the file system, writes nothing.
pub fn plan(located: &Located, options: &RestoreOptions) -> Result<RestorePlan> {
    let restorer = source::restorer_for(&located.manifest.source.kind)?;
    let target = std::path::absolute(&options.target).unwrap_or(options.target.clone());
    let parent = target
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| target_error(&target, "has no parent folder"))?;
    let file_name = target
        .file_name()
        .ok_or_else(|| target_error(&target, "names no file or folder"))?
        .to_os_string();
    check_target(&target, &parent, options.force)?;
    let exists = fs::symlink_metadata(&target).is_ok();
    if exists && !options.replace_open {
        refuse_open_target(restorer.as_ref(), &target)?;
    }
    let replace = exists.then(|| Replacement {
        safety_copy: safety_path(&target),
        companions: existing_companions(restorer.as_ref(), &target),
    });
    Ok(RestorePlan {
        artifact: PlannedArtifact::of(located),
        leftovers: crate::leftovers::dead_in_dir(&parent, &temp_prefix(&file_name)),
        target,
        replace,
        replace_open: options.replace_open,
        check: options.check,
    })
}

/// Plans and applies in one go.
pub fn restore(
    job: &Job,
    located: &Located,
    options: &RestoreOptions,
    progress: Arc<dyn Progress>,
) -> Result<RestoreReport> {
    let plan = plan(located, options)?;
    apply(job, located, &plan, progress)
}

/// Reads the artifact through every check and renders the plan: nothing is
/// written (a dry run).
pub fn rehearse(
    job: &Job,
    located: &Located,
    plan: &RestorePlan,
    progress: Arc<dyn Progress>,
) -> Result<RestoreReport> {
    let key = keys::decrypt_key(job)?;
    let found = fallback::first_good_copy(located, "restore", &progress, |dest| {
        read::read_artifact(
            dest,
            &located.manifest,
            &key,
            progress.clone(),
            &mut read::discard,
        )
    })?;
    let bytes = found.value.plaintext.size;
    let mut report = report_of(plan, &found, bytes, true);
    report.actions.extend(plan.intentions());
    Ok(report)
}

/// Carries out `plan`: streams a good copy into a temporary beside the target,
/// checks it, then puts it in place (keeping the old content as the safety copy).
pub fn apply(
    job: &Job,
    located: &Located,
    plan: &RestorePlan,
    progress: Arc<dyn Progress>,
) -> Result<RestoreReport> {
    let manifest = &located.manifest;
    let restorer = source::restorer_for(&manifest.source.kind)?;
    let key = keys::decrypt_key(job)?;
    let target = &plan.target;
    let parent = target.parent().unwrap_or(Path::new("."));
    let file_name = target.file_name().unwrap_or_default();
    let removed = crate::leftovers::sweep_paths(plan.leftovers.clone(), "an interrupted restore");
    let found = fallback::first_good_copy(located, "restore", &progress, |dest| {
        let temp = temp_path(parent, file_name);
        let result = read::read_artifact(dest, manifest, &key, progress.clone(), &mut |stream| {
            restorer.write(stream, &temp)
        })
        .and_then(|outcome| {
            restorer
                .check(&temp, plan.check)
                .map(|checked| (outcome, checked))
        });
        match result {
            Ok((outcome, checked)) => Ok((outcome, checked, temp)),
            Err(e) => {
                let _ = crate::leftovers::remove_path(&temp);
                Err(e)
            }
        }
    })?;
    let (outcome, checked, temp) = &found.value;
    let temp = temp.clone();
    let mut report = report_of(plan, &found, outcome.plaintext.size, false);
    report.actions.extend(checked.clone());
    report.actions.splice(
        1..1,
        removed
            .iter()
            .map(|p| format!("removed {}, left by an interrupted restore", p.display())),
    );
    if !plan.replace_open {
        // It may have been opened while the artifact was read.
        if let Err(e) = refuse_open_target(restorer.as_ref(), target) {
            let _ = crate::leftovers::remove_path(&temp);
            return Err(e);
        }
    }
    // The planned name may have been taken while the artifact was read.
    let safety = plan.replace.as_ref().map(|r| {
        if fs::symlink_metadata(&r.safety_copy).is_ok() {
            safety_path(target)
        } else {
            r.safety_copy.clone()
        }
    });
    report.safety_copy = put_in_place(restorer.as_ref(), &temp, target, safety.as_deref())?;
    if let Some(safety) = &report.safety_copy {
        report
            .actions
            .push(format!("kept the previous content as {}", safety.display()));
    }
    report.actions.push(format!("wrote {}", target.display()));
    Ok(report)
}

/// The report of a read that worked: the read line, the copies passed over, the check.
fn report_of<T>(
    plan: &RestorePlan,
    found: &fallback::Found<T>,
    plaintext_bytes: u64,
    dry_run: bool,
) -> RestoreReport {
    let mut actions = vec![plan.artifact.read_line()];
    actions.extend(found.skipped.iter().map(fallback::skipped_line));
    actions.push(format!(
        "checked stored SHA-256 and plaintext SHA-256 against the manifest (copy in `{}`)",
        found.destination
    ));
    RestoreReport {
        job: plan.artifact.job.clone(),
        id: plan.artifact.id.clone(),
        destination: found.destination.clone(),
        target: plan.target.display().to_string(),
        dry_run,
        safety_copy: None,
        plaintext_bytes,
        actions,
    }
}

fn existing_companions(restorer: &dyn Restorer, target: &Path) -> Vec<PathBuf> {
    if restorer.shape() != TargetShape::File {
        return Vec::new();
    }
    restorer
        .companions(target)
        .into_iter()
        .filter(|c| fs::symlink_metadata(c).is_ok())
        .collect()
}

fn target_error(target: &Path, message: impl Into<String>) -> Error {
    Error::Target {
        path: target.to_path_buf(),
        message: message.into(),
    }
}

fn check_target(target: &Path, parent: &Path, force: bool) -> Result<()> {
    match fs::metadata(parent) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(target_error(
                target,
                format!("{} is not a folder", parent.display()),
            ));
        }
        Err(e) => {
            return Err(target_error(
                target,
                format!(
                    "its folder {} cannot be used: {e} (create it first)",
                    parent.display()
                ),
            ));
        }
    }
    if !writable(parent) {
        return Err(target_error(
            target,
            format!(
                "its folder {} is not writable by this user",
                parent.display()
            ),
        ));
    }
    if fs::symlink_metadata(target).is_ok() && !force {
        return Err(target_error(
            target,
            "already exists; pass --force to replace it (the current content is kept as a safety copy)",
        ));
    }
    Ok(())
}

/// Refuses to swap a database file that another process has open: the
/// process would keep writing to the old file (now the safety copy), and
/// whatever it writes after the swap would be lost from the restored one.
fn refuse_open_target(restorer: &dyn Restorer, target: &Path) -> Result<()> {
    if restorer.shape() != TargetShape::File {
        return Ok(());
    }
    let companions = restorer.companions(target);
    if companions.is_empty() {
        return Ok(());
    }
    let files: Vec<PathBuf> = std::iter::once(target.to_path_buf())
        .chain(companions)
        .collect();
    let users = processes_with_open(&files);
    if users.is_empty() {
        return Ok(());
    }
    let named: Vec<String> = users
        .iter()
        .take(5)
        .map(|(pid, name)| format!("pid {pid} ({name})"))
        .collect();
    Err(target_error(
        target,
        format!(
            "is open in another process: {}; replacing it now would swap the file under that process, which keeps writing to the old file and loses those writes. Stop it first (or pass --force twice to replace the file anyway)",
            named.join(", ")
        ),
    ))
}

/// Processes other than this one that hold one of `files` open, as far as
/// `/proc` lets this user see (every process, for root).
fn processes_with_open(files: &[PathBuf]) -> Vec<(i32, String)> {
    use std::os::unix::fs::MetadataExt;
    let wanted: Vec<(u64, u64)> = files
        .iter()
        .filter_map(|f| fs::metadata(f).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    if wanted.is_empty() {
        return found;
    }
    let Ok(procs) = fs::read_dir("/proc") else {
        return found;
    };
    for proc_entry in procs.flatten() {
        let Some(pid) = proc_entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| fs::metadata(fd.path()).is_ok_and(|m| wanted.contains(&(m.dev(), m.ino()))));
        if holds {
            let name = fs::read_to_string(proc_entry.path().join("comm"))
                .map(|n| n.trim().to_string())
                .unwrap_or_default();
            found.push((pid, name));
        }
    }
    found
}

fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: c_path is a valid NUL-terminated string that outlives the call.
    unsafe { libc::access(c_path.as_ptr(), libc::W_OK) == 0 }
}

/// `.<name>.cairn-restore-`: what every temporary of a restore to `<name>` starts with.
fn temp_prefix(file_name: &std::ffi::OsStr) -> String {
    format!(".{}{TEMP_MARK}", file_name.to_string_lossy())
}

fn temp_path(parent: &Path, file_name: &std::ffi::OsStr) -> PathBuf {
    let nonce: u32 = rand::random();
    let mut name = OsString::from(".");
    name.push(file_name);
    name.push(format!("{TEMP_MARK}{}-{nonce:08x}", std::process::id()));
    parent.join(name)
}

fn safety_path(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(format!(
        ".cairn-safety-{}",
        jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")
    ));
    let mut path = PathBuf::from(&name);
    let mut n = 1;
    while fs::symlink_metadata(&path).is_ok() {
        let mut numbered = name.clone();
        numbered.push(format!("-{n}"));
        path = PathBuf::from(numbered);
        n += 1;
    }
    path
}

/// Moves the checked temporary into place, keeping what was there as `safety`.
fn put_in_place(
    restorer: &dyn Restorer,
    temp: &Path,
    target: &Path,
    safety: Option<&Path>,
) -> Result<Option<PathBuf>> {
    let parent = target.parent().unwrap_or(Path::new("."));
    sync_tree(temp);
    let fail = |what: &str, e: io::Error| {
        let _ = crate::leftovers::remove_path(temp);
        target_error(target, format!("{what}: {e}"))
    };
    let Some(safety) = safety else {
        // Never replace a target that appeared since it was checked.
        rename2(temp, target, libc::RENAME_NOREPLACE)
            .or_else(|e| match e.raw_os_error() {
                Some(libc::EINVAL) | Some(libc::ENOSYS)
                    if fs::symlink_metadata(target).is_err() =>
                {
                    fs::rename(temp, target)
                }
                _ => Err(e),
            })
            .map_err(|e| fail("cannot move the restored data into place", e))?;
        let _ = crate::store::fs::sync_dir(parent);
        return Ok(None);
    };
    // The restored content takes the place of the old: same owner and mode, so
    // the application can still open it.
    if let Ok(meta) = fs::metadata(target) {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let _ = std::os::unix::fs::chown(temp, Some(meta.uid()), Some(meta.gid()));
        let _ = fs::set_permissions(temp, fs::Permissions::from_mode(meta.mode() & 0o7777));
    }
    // Files that belong to the old content (SQLite's -wal) must not be applied to
    // the new; they go with it to the safety copy, and come back on failure.
    let mut moved: Vec<(PathBuf, PathBuf)> = Vec::new();
    let put_back = |moved: &[(PathBuf, PathBuf)]| {
        for (from, to) in moved {
            let _ = fs::rename(to, from);
        }
    };
    if restorer.shape() == TargetShape::File {
        for companion in restorer.companions(target) {
            if fs::symlink_metadata(&companion).is_err() {
                continue;
            }
            let suffix = companion
                .as_os_str()
                .to_string_lossy()
                .strip_prefix(&*target.as_os_str().to_string_lossy())
                .unwrap_or_default()
                .to_string();
            let mut aside = safety.as_os_str().to_owned();
            aside.push(suffix);
            let aside = PathBuf::from(aside);
            if let Err(e) = fs::rename(&companion, &aside) {
                put_back(&moved);
                return Err(fail(
                    &format!("cannot move {} aside", companion.display()),
                    e,
                ));
            }
            moved.push((companion, aside));
        }
    }
    if let Err(e) = crate::fault_point::reached("restore.before_exchange") {
        put_back(&moved);
        return Err(fail("cannot move the restored data into place", e));
    }
    let replaced = || {
        crate::fault_point::reached("restore.after_exchange").map_err(|e| {
            target_error(
                target,
                format!(
                    "restored (the previous content is kept as {}), but: {e}",
                    safety.display()
                ),
            )
        })
    };
    // A file keeps a name for its previous content at every instant: linked as
    // the safety copy first, then replaced in one rename.
    if restorer.shape() == TargetShape::File && fs::hard_link(target, safety).is_ok() {
        if let Err(e) = fs::rename(temp, target) {
            let _ = fs::remove_file(safety);
            put_back(&moved);
            return Err(fail("cannot move the restored data into place", e));
        }
        replaced()?;
        let _ = crate::store::fs::sync_dir(parent);
        return Ok(Some(safety.to_path_buf()));
    }
    // A folder is staged under the safety name, then exchanged with the target
    // in one step: the previous content has a name at every instant, and a
    // process killed in between leaves the target as it was.
    let exchanged = fs::rename(temp, safety).and_then(|()| {
        rename2(safety, target, libc::RENAME_EXCHANGE).inspect_err(|_| {
            let _ = fs::rename(safety, temp);
        })
    });
    match exchanged {
        Ok(()) => {
            replaced()?;
        }
        // No exchange on this file system: two renames.
        Err(_) => {
            if let Err(e) = fs::rename(target, safety) {
                put_back(&moved);
                return Err(fail("cannot move the existing target aside", e));
            }
            if let Err(e) = fs::rename(temp, target) {
                let _ = fs::rename(safety, target);
                put_back(&moved);
                return Err(fail("cannot move the restored data into place", e));
            }
        }
    }
    let _ = crate::store::fs::sync_dir(parent);
    Ok(Some(safety.to_path_buf()))
}

/// Makes a restored folder's files durable before it replaces anything.
fn sync_tree(path: &Path) {
    if let Ok(dir) = fs::File::open(path)
        && dir.metadata().is_ok_and(|m| m.is_dir())
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open for the duration of the call.
        unsafe { libc::syncfs(dir.as_raw_fd()) };
    }
}

/// `renameat2(2)` with flags: `RENAME_EXCHANGE` swaps two paths atomically,
/// `RENAME_NOREPLACE` fails if the target exists.
fn rename2(a: &Path, b: &Path, flags: libc::c_uint) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let a = std::ffi::CString::new(a.as_os_str().as_bytes())?;
    let b = std::ffi::CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both are valid NUL-terminated paths; AT_FDCWD resolves them as given.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::located_in;

    fn options(target: &Path, force: bool) -> RestoreOptions {
        RestoreOptions {
            target: target.to_path_buf(),
            force,
            replace_open: false,
            check: CheckLevel::Quick,
        }
    }

    /// Paths inside the temporary folder, as `/restore/…`, so snapshots hold.
    fn tidy(text: &str, dir: &Path) -> String {
        text.replace(&dir.display().to_string(), "/restore")
    }

    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn a_new_target_is_written_and_nothing_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let located = located_in(&["local", "offsite"]);
        let plan = plan(&located, &options(&dir.path().join("app.db"), false)).unwrap();
        assert_eq!(plan.replace, None);
        assert_eq!(plan.artifact.copies, ["local", "offsite"]);
        let lines = [plan.artifact.read_line()]
            .into_iter()
            .chain(plan.intentions())
            .collect::<Vec<_>>()
            .join("\n");
        insta::assert_snapshot!(tidy(&lines, dir.path()));
    }

    #[test]
    fn an_existing_target_needs_force_and_is_kept_with_its_companions() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("app.db");
        std::fs::write(&target, b"old").unwrap();
        std::fs::write(dir.path().join("app.db-wal"), b"old wal").unwrap();
        let located = located_in(&["local"]);
        let refused = plan(&located, &options(&target, false)).unwrap_err();
        insta::assert_snapshot!(
            "existing_target_refused",
            tidy(&refused.to_string(), dir.path())
        );

        let plan = plan(&located, &options(&target, true)).unwrap();
        let replace = plan.replace.clone().expect("the target is replaced");
        assert_eq!(replace.companions, [dir.path().join("app.db-wal")]);
        assert!(
            replace
                .safety_copy
                .display()
                .to_string()
                .starts_with(&format!("{}.cairn-safety-", target.display()))
        );
        // Nothing was touched by planning.
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        let lines = plan.intentions().join("\n").replace(
            &replace.safety_copy.display().to_string(),
            "/restore/app.db.cairn-safety-TIME",
        );
        insta::assert_snapshot!("existing_target_replaced", tidy(&lines, dir.path()));
    }

    #[test]
    fn leftovers_of_dead_restores_are_planned_and_live_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir
            .path()
            .join(format!(".app.db.cairn-restore-{}-0000abcd", dead_pid()));
        let live = dir.path().join(format!(
            ".app.db.cairn-restore-{}-0000abce",
            std::process::id()
        ));
        let other = dir
            .path()
            .join(format!(".other.db.cairn-restore-{}-0000abcf", dead_pid()));
        for p in [&dead, &live, &other] {
            std::fs::write(p, b"partial").unwrap();
        }
        let located = located_in(&["local"]);
        let plan = plan(&located, &options(&dir.path().join("app.db"), false)).unwrap();
        assert_eq!(plan.leftovers, std::slice::from_ref(&dead));
        // Planning removed nothing.
        assert!(dead.exists() && live.exists() && other.exists());
    }

    #[test]
    fn a_target_in_a_missing_folder_is_refused_before_anything_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let located = located_in(&["local"]);
        let err = plan(&located, &options(&dir.path().join("nope/app.db"), false)).unwrap_err();
        assert!(matches!(err, Error::Target { .. }), "{err}");
        assert!(err.to_string().contains("create it first"), "{err}");
    }
}
