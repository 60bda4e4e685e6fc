//! Folder drills: the tar stream is unpacked into a temporary folder, and its
//! files are counted, sized and hashed against what the backup recorded.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Check, Scratch};
use crate::config::Job;
use crate::engine::Located;
use crate::progress::Progress;
use crate::source::files::{FileHash, FilesRestorer, digest_folder};
use crate::{Error, Result};

pub struct FilesScratch {
    path: PathBuf,
    facts: serde_json::Value,
    cleanup: u64,
}

impl FilesScratch {
    pub fn new(dir: &Path, facts: &serde_json::Value) -> Result<Self> {
        crate::store::fs::ensure_dir(dir).map_err(|e| Error::Target {
            path: dir.to_path_buf(),
            message: format!("cannot use it as the drill's scratch folder: {e}"),
        })?;
        let path = super::scratch_path(dir, "");
        let target = path.clone();
        let cleanup = super::register_cleanup(Box::new(move || {
            let _ = super::remove_path(&target);
        }));
        Ok(FilesScratch {
            path,
            facts: facts.clone(),
            cleanup,
        })
    }
}

impl Scratch for FilesScratch {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn restore(
        &mut self,
        job: &Job,
        located: &Located,
        progress: Arc<dyn Progress>,
    ) -> Result<(String, u64)> {
        super::restore_local(job, located, progress, &FilesRestorer, &self.path)
    }

    fn integrity(&self) -> Result<Vec<Check>> {
        let tree = digest_folder(&self.path)
            .map_err(|e| Error::Run(format!("cannot read the restored folder: {e}")))?;
        let mut checks = Vec::new();
        let files = self.facts["files"].as_u64();
        let bytes = self.facts["file_bytes"].as_u64();
        checks.push(match files {
            Some(n) => Check::new(
                "file count",
                n == tree.files,
                format!("{} files restored, {n} backed up", tree.files),
            ),
            None => Check::new("file count", true, "the manifest records no file count"),
        });
        checks.push(match bytes {
            Some(n) => Check::new(
                "total size",
                n == tree.bytes,
                format!("{} bytes restored, {n} backed up", tree.bytes),
            ),
            None => Check::new("total size", true, "the manifest records no total size"),
        });
        match self.facts["tree_sha256"].as_str() {
            None => checks.push(Check::new(
                "file hashes",
                true,
                "made by a cairn that recorded no per-file hashes: counted and sized only",
            )),
            Some(recorded) if recorded == tree.sha256() => checks.push(Check::new(
                "file hashes",
                true,
                format!(
                    "every file's path, size and SHA-256 match ({} files)",
                    tree.files
                ),
            )),
            Some(_) => {
                let recorded: Option<Vec<FileHash>> =
                    serde_json::from_value(self.facts["file_hashes"].clone()).ok();
                let detail = match (recorded, &tree.list) {
                    (Some(recorded), Some(restored)) => differences(&recorded, restored),
                    _ => "the restored files differ from the backup (the folder has too many files for a per-file list)".to_string(),
                };
                checks.push(Check::new("file hashes", false, detail));
            }
        }
        Ok(checks)
    }

    fn size(&self) -> Result<u64> {
        digest_folder(&self.path)
            .map(|t| t.bytes)
            .map_err(|e| Error::Run(format!("cannot read the restored folder: {e}")))
    }

    fn removes(&mut self) -> Result<()> {
        super::remove_path(&self.path)
            .map_err(|e| Error::Run(format!("cannot remove {}: {e}", self.path.display())))
    }
}

/// The first few files that differ, are missing or are extra.
fn differences(recorded: &[FileHash], restored: &[FileHash]) -> String {
    use std::collections::BTreeMap;
    let before: BTreeMap<&str, &FileHash> = recorded.iter().map(|f| (f.path.as_str(), f)).collect();
    let after: BTreeMap<&str, &FileHash> = restored.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut problems = Vec::new();
    for (path, f) in &before {
        match after.get(path) {
            None => problems.push(format!("{path} is missing")),
            Some(g) if g.sha256 != f.sha256 || g.size != f.size => problems.push(format!(
                "{path} differs ({} bytes restored, {} backed up)",
                g.size, f.size
            )),
            Some(_) => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        problems.push(format!("{path} was not in the backup"));
    }
    let total = problems.len();
    problems.truncate(5);
    format!(
        "{total} files differ from the backup: {}",
        problems.join("; ")
    )
}

impl Drop for FilesScratch {
    fn drop(&mut self) {
        super::unregister_cleanup(self.cleanup);
        let _ = super::remove_path(&self.path);
    }
}
