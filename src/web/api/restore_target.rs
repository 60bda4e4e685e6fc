//! Where a restore asked for over the web may write: the job's own source, or
//! a relative path inside `[daemon] restore_root`. A requested path is checked
//! component by component and then by the real folder it lands in, so `..`,
//! absolute paths and symbolic links leading out of the root are refused.

use std::path::{Component, Path, PathBuf};

/// `requested` (relative) resolved inside `root`, or why it is refused. The
/// folder it goes into must exist; the last component, if it exists, must not
/// be a symbolic link.
pub fn under_root(root: &Path, requested: &str) -> Result<PathBuf, String> {
    if requested.trim().is_empty() {
        return Err("the target is empty: name a path under restore_root".into());
    }
    if requested.contains('\0') {
        return Err("the target holds a NUL byte".into());
    }
    let relative = Path::new(requested);
    let mut names = 0;
    for component in relative.components() {
        match component {
            Component::Normal(_) => names += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                return Err("the target may not contain `..`".into());
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(
                    "the target must be a path relative to restore_root, not an absolute one"
                        .into(),
                );
            }
        }
    }
    if names == 0 {
        return Err("the target names no file or folder under restore_root".into());
    }
    let root = std::fs::canonicalize(root)
        .map_err(|e| format!("[daemon] restore_root cannot be opened: {e}"))?;
    let joined = root.join(relative);
    let (Some(parent), Some(name)) = (joined.parent(), joined.file_name()) else {
        return Err("the target names no file or folder under restore_root".into());
    };
    let parent = std::fs::canonicalize(parent).map_err(|_| {
        "the folder the target goes into does not exist under restore_root".to_string()
    })?;
    if !parent.starts_with(&root) {
        return Err("the target leads out of restore_root (through a symbolic link)".into());
    }
    let target = parent.join(name);
    if std::fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err("the target is a symbolic link; restores never follow one".into());
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_inside_the_root_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("out")).unwrap();
        std::os::unix::fs::symlink(outside.join("x"), root.join("link.db")).unwrap();
        let canonical = std::fs::canonicalize(&root).unwrap();

        assert_eq!(
            under_root(&root, "app.db").unwrap(),
            canonical.join("app.db")
        );
        assert_eq!(
            under_root(&root, "./sub/app.db").unwrap(),
            canonical.join("sub/app.db")
        );
        for refused in [
            "",
            "../x",
            "sub/../../x",
            "/etc/passwd",
            ".",
            "out/x",
            "link.db",
            "missing/x",
        ] {
            assert!(under_root(&root, refused).is_err(), "{refused:?} accepted");
        }
    }
}
