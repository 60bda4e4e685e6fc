//! What killed processes leave behind: restore temporaries, drill scratch files
//! and databases, unfinished uploads. Each carries its owner's pid in its name;
//! the next run of the same kind removes those whose process is gone.
//!
//! A leaf module (std and libc only), so that the state store, destinations,
//! the engine and the drills share one notion of "that process is dead".

use std::io;
use std::path::{Path, PathBuf};

/// Whether a process with this id runs on this host.
pub fn process_alive(pid: i32) -> bool {
    // Zero and negative ids name process groups for kill(2): never an owner.
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks whether the process exists.
    // EPERM means it exists but belongs to someone else: alive.
    let found = unsafe { libc::kill(pid, 0) } == 0;
    found || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether `pid` (as text) names a process of this host that is gone. Text
/// that is not a pid names no owner, so nothing is judged dead from it.
pub fn owner_dead(pid: &str) -> bool {
    pid.parse::<i32>()
        .is_ok_and(|pid| pid > 0 && !process_alive(pid))
}

/// The pid in a name `<prefix><pid>-<anything>`, as text.
pub fn pid_after<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    name.strip_prefix(prefix)?.split('-').next()
}

/// Removes every candidate whose owner is dead; returns what was removed.
/// `dead` judges a candidate's name, `remove` removes it (a failure leaves it
/// for the next run and is not reported as removed).
pub fn sweep<T, E>(
    candidates: impl IntoIterator<Item = T>,
    dead: impl Fn(&T) -> bool,
    mut remove: impl FnMut(&T) -> Result<(), E>,
) -> Vec<T> {
    let mut removed = Vec::new();
    for candidate in candidates {
        if dead(&candidate) && remove(&candidate).is_ok() {
            removed.push(candidate);
        }
    }
    removed
}

/// The files and folders in `dir` named `<prefix><pid>-…` whose process is gone.
pub fn dead_in_dir(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dead: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| pid_after(n, prefix))
                .is_some_and(owner_dead)
        })
        .collect();
    dead.sort();
    dead
}

/// Removes leftovers found by [`dead_in_dir`]; `what` names their owner in
/// the log ("an interrupted restore"). Returns those that are gone.
pub fn sweep_paths(paths: Vec<PathBuf>, what: &str) -> Vec<PathBuf> {
    sweep(
        paths,
        |_| true,
        |path| {
            tracing::info!(path = %path.display(), "removing the leftover of {what}");
            remove_path(path)
        },
    )
}

/// Removes what [`dead_in_dir`] finds.
pub fn sweep_dir(dir: &Path, prefix: &str, what: &str) -> Vec<PathBuf> {
    sweep_paths(dead_in_dir(dir, prefix), what)
}

/// Removes a file or folder (a missing one is fine), making read-only folders
/// writable first so that a restored tree with 0500 folders goes too.
pub fn remove_path(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return std::fs::remove_file(path);
    }
    if std::fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    make_writable(path);
    std::fs::remove_dir_all(path)
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.is_dir()
    {
        let _ = std::fs::set_permissions(
            path,
            std::fs::Permissions::from_mode(meta.permissions().mode() | 0o700),
        );
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                make_writable(&entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pid that is not running: a child that has exited and been reaped.
    fn dead_pid() -> i32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        pid
    }

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_not() {
        assert!(process_alive(std::process::id() as i32));
        assert!(!process_alive(dead_pid()));
    }

    #[test]
    fn a_process_of_another_user_is_alive() {
        // pid 1 belongs to root: kill(1, 0) is EPERM for other users, 0 for root.
        assert!(process_alive(1));
    }

    #[test]
    fn no_pid_names_no_dead_owner() {
        assert!(!process_alive(0));
        assert!(!process_alive(-1));
        assert!(!owner_dead("0"));
        assert!(!owner_dead("abc"));
        assert!(!owner_dead(""));
        assert!(!owner_dead(&std::process::id().to_string()));
        assert!(owner_dead(&dead_pid().to_string()));
    }

    #[test]
    fn the_pid_follows_the_prefix() {
        assert_eq!(
            pid_after(".cairn-drill-42-abc", ".cairn-drill-"),
            Some("42")
        );
        assert_eq!(pid_after("other-42", ".cairn-drill-"), None);
    }

    #[test]
    fn only_leftovers_of_dead_processes_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join(format!(".x-{}-a", dead_pid()));
        let alive = dir.path().join(format!(".x-{}-b", std::process::id()));
        let other = dir.path().join("notes.txt");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("f"), b"x").unwrap();
        std::fs::write(&alive, b"x").unwrap();
        std::fs::write(&other, b"x").unwrap();
        // A read-only folder inside goes too.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir(dead.join("ro")).unwrap();
            std::fs::write(dead.join("ro/g"), b"x").unwrap();
            std::fs::set_permissions(dead.join("ro"), std::fs::Permissions::from_mode(0o500))
                .unwrap();
        }
        let removed = sweep_dir(dir.path(), ".x-", "a test");
        assert_eq!(removed, vec![dead.clone()]);
        assert!(!dead.exists());
        assert!(alive.exists());
        assert!(other.exists());
    }
}
