//! `restore`: write an artifact's content to a path, safely.
//!
//! The content is streamed into a temporary file or folder beside the target,
//! its hashes are checked against the manifest and its kind-specific check
//! (e.g. `PRAGMA integrity_check`) is run; only then does it replace the
//! target, atomically where the kernel allows. An existing target is replaced
//! only with `force`, and is then kept as a safety copy.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::{Located, read};
use crate::config::Job;
use crate::keys;
use crate::progress::Progress;
use crate::source::{self, Restorer, TargetShape};
use crate::{Error, Result};

const TEMP_MARK: &str = ".cairn-restore-";

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub target: PathBuf,
    pub dry_run: bool,
    pub force: bool,
    /// Replace a database file that another process has open (`--force` twice).
    pub replace_open: bool,
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

pub fn restore(
    job: &Job,
    located: &Located,
    options: &RestoreOptions,
    progress: Arc<dyn Progress>,
) -> Result<RestoreReport> {
    let manifest = &located.manifest;
    let restorer = source::restorer_for(&manifest.source.kind)?;
    let key = keys::decrypt_key(job)?;
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

    let mut actions = vec![format!(
        "read artifact {} of job `{}` ({} bytes stored, {} bytes of {})",
        manifest.id, job.name, manifest.data.size, manifest.plaintext.size, manifest.source.kind
    )];
    if !options.dry_run {
        remove_stale_temps(&parent, &file_name);
    }

    let mut last_error = None;
    for (dest, _) in &located.copies {
        progress.start(
            &format!("restore {} from {}", manifest.id, dest.name()),
            Some(manifest.data.size),
        );
        let temp = temp_path(&parent, &file_name);
        let result = if options.dry_run {
            read::read_artifact(
                dest.as_ref(),
                manifest,
                &key,
                progress.clone(),
                &mut read::discard,
            )
        } else {
            let result = read::read_artifact(
                dest.as_ref(),
                manifest,
                &key,
                progress.clone(),
                &mut |stream| restorer.write(stream, &temp),
            )
            .and_then(|outcome| restorer.check(&temp).map(|()| outcome));
            if result.is_err() {
                remove_path(&temp);
            }
            result
        };
        progress.finish();
        match result {
            Ok(outcome) => {
                actions.push(format!(
                    "checked stored SHA-256 and plaintext SHA-256 against the manifest (copy in `{}`)",
                    dest.name()
                ));
                let mut report = RestoreReport {
                    job: job.name.clone(),
                    id: manifest.id.clone(),
                    destination: dest.name().to_string(),
                    target: target.display().to_string(),
                    dry_run: options.dry_run,
                    safety_copy: None,
                    plaintext_bytes: outcome.plaintext.size,
                    actions,
                };
                let safety = exists.then(|| safety_path(&target));
                if options.dry_run {
                    if let Some(safety) = &safety {
                        report.actions.push(format!(
                            "would move the existing {} to {}",
                            target.display(),
                            safety.display()
                        ));
                    }
                    report
                        .actions
                        .push(format!("would write {}", target.display()));
                    return Ok(report);
                }
                if !options.replace_open {
                    // It may have been opened while the artifact was read.
                    if let Err(e) = refuse_open_target(restorer.as_ref(), &target) {
                        remove_path(&temp);
                        return Err(e);
                    }
                }
                report.safety_copy =
                    put_in_place(restorer.as_ref(), &temp, &target, safety.as_deref())?;
                if let Some(safety) = &report.safety_copy {
                    report
                        .actions
                        .push(format!("kept the previous content as {}", safety.display()));
                }
                report.actions.push(format!("wrote {}", target.display()));
                return Ok(report);
            }
            // Another copy may be good; a key or target problem will not change.
            Err(e @ (Error::Integrity { .. } | Error::Destination { .. }))
                if located.copies.len() > 1 =>
            {
                tracing::warn!(job = %job.name, destination = %dest.name(), error = %e, "copy unusable, trying the next destination");
                last_error = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error
        .unwrap_or_else(|| Error::NotFound(format!("no copy of {} to read", manifest.id))))
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

/// Removes temporaries of earlier restores of this target whose process is gone
/// (a restore that was killed leaves one behind).
fn remove_stale_temps(parent: &Path, file_name: &std::ffi::OsStr) {
    let prefix = format!(".{}{TEMP_MARK}", file_name.to_string_lossy());
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<i32>().ok());
        let alive = pid.is_some_and(crate::store::fs::process_alive);
        if !alive {
            tracing::info!(path = %entry.path().display(), "removing a leftover of an interrupted restore");
            remove_path(&entry.path());
        }
    }
}

fn remove_path(path: &Path) {
    let _ = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    };
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
        remove_path(temp);
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
    match rename2(temp, target, libc::RENAME_EXCHANGE) {
        Ok(()) => {
            // `temp` now holds the previous content.
            fs::rename(temp, safety).map_err(|e| {
                target_error(
                    target,
                    format!(
                        "restored, but the previous content stays at {}: {e}",
                        temp.display()
                    ),
                )
            })?;
        }
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
