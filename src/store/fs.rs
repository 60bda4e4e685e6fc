//! A destination in a local (or mounted) folder.
//!
//! Data objects are written to `<job>/.partial/` under a unique name, fsynced,
//! renamed into place and the folder fsynced; small objects likewise. Files are
//! created 0600 and folders 0700.
//!
//! Nothing below the destination's folder is reached through a symbolic link:
//! every folder is opened relative to its parent without following links
//! (`fs_at`), listing skips links with a warning, reading and deleting refuse
//! them, and uploads never write through a linked folder.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rand::Rng;

use super::fs_at::{self, Dir, Kind};
use super::{Destination, ObjectInfo, Upload};
use crate::error::StorageKind;
use crate::pipeline::Source;
use crate::{Error, Result};

/// Where unfinished uploads live, inside each job folder.
pub const PARTIAL_DIR: &str = ".partial";

pub struct FsDestination {
    name: String,
    root: PathBuf,
}

/// The folder part and the file name of a key.
fn split_key(key: &str) -> (Vec<&str>, &str) {
    let mut parts: Vec<&str> = key.split('/').collect();
    let file = parts.pop().unwrap_or_default();
    (parts, file)
}

impl FsDestination {
    pub fn new(name: &str, root: PathBuf) -> Self {
        FsDestination {
            name: name.to_string(),
            root,
        }
    }

    fn check_key(&self, key: &str) -> Result<()> {
        super::naming::check_key(&self.name, key)
    }

    fn err(&self, message: impl std::fmt::Display) -> Error {
        Error::destination(&self.name, message)
    }

    fn io_err(&self, what: &str, path: &Path, e: io::Error) -> Error {
        Error::storage(
            &self.name,
            StorageKind::of_io(&e),
            format!("{what} {}: {e}{}", path.display(), hint(&e)),
        )
    }

    /// Opens the folder reached by `parts` below the root, one component at a
    /// time and never through a link; with `create`, missing folders are made.
    /// `None` when a folder does not exist (and `create` is off).
    fn folder(&self, parts: &[&str], create: bool) -> Result<Option<Dir>> {
        if create {
            ensure_dir(&self.root)
                .map_err(|e| self.io_err("cannot create folder", &self.root, e))?;
        }
        let mut dir = match Dir::open_root(&self.root) {
            Ok(dir) => dir,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io_err("cannot open folder", &self.root, e)),
        };
        for part in parts {
            dir = match dir.open_dir(part, create) {
                Ok(next) => next,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(self.io_err("cannot open folder", &dir.path.join(part), e)),
            };
        }
        Ok(Some(dir))
    }

    /// The folder holding `key` and the key's file name.
    fn parent_of<'k>(&self, key: &'k str, create: bool) -> Result<(Option<Dir>, &'k str)> {
        self.check_key(key)?;
        let (parts, file) = split_key(key);
        Ok((self.folder(&parts, create)?, file))
    }

    fn temp_name(file: &str) -> String {
        let nonce: u32 = rand::thread_rng().r#gen();
        format!(
            "{file}{PARTIAL_MARK}{}-{nonce:08x}-{}",
            std::process::id(),
            this_host()
        )
    }

    fn list_folder(&self, dir: &Dir) -> Result<Vec<fs_at::Entry>> {
        let entries = dir
            .entries()
            .map_err(|e| self.io_err("cannot list", &dir.path, e))?;
        Ok(entries
            .into_iter()
            .filter(|entry| {
                if entry.kind == Kind::Symlink {
                    tracing::warn!(
                        destination = %self.name,
                        path = %dir.path.join(&entry.name).display(),
                        "skipped a symbolic link: cairn never follows links inside a destination"
                    );
                }
                entry.kind == Kind::File
            })
            .collect())
    }
}

/// Separates a partial upload's file name from its owner (`pid-nonce-host`).
const PARTIAL_MARK: &str = ".cairn-";

fn this_host() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().replace(['/', '.'], "_"))
        .unwrap_or_default()
}

pub use crate::leftovers::process_alive;

/// Removes uploads left by processes of this host that died (killed backups).
/// Uploads of other hosts sharing the folder are left to `prune`.
fn remove_dead_partials(dir: &Dir) {
    let Ok(entries) = dir.entries() else {
        return;
    };
    let host = this_host();
    for entry in entries.into_iter().filter(|e| e.kind == Kind::File) {
        let Some((_, owner)) = entry.name.rsplit_once(PARTIAL_MARK) else {
            continue;
        };
        let mut parts = owner.splitn(3, '-');
        let (Some(pid), Some(_nonce), Some(owner_host)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if owner_host == host && crate::leftovers::owner_dead(pid) {
            tracing::info!(path = %dir.path.join(&entry.name).display(), "removing the leftover of an interrupted backup");
            let _ = dir.unlink(&entry.name);
        }
    }
}

pub use crate::local_fs::{create_private, ensure_dir, hint, sync_dir};

struct FsUpload {
    /// The `.partial` folder and the temporary name in it.
    partial: Dir,
    temp: String,
    /// The folder of the final key and the final name in it.
    folder: Dir,
    target: String,
    file: Option<io::BufWriter<File>>,
    destination: String,
}

impl FsUpload {
    fn temp_path(&self) -> PathBuf {
        self.partial.path.join(&self.temp)
    }
}

impl Write for FsUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot write {}: {e}{}",
                        self.partial.path.join(&self.temp).display(),
                        hint(&e)
                    ),
                )
            }),
            None => Err(io::Error::other("upload already closed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Upload for FsUpload {
    fn commit(mut self: Box<Self>) -> Result<()> {
        let fail = |what: &str, path: &Path, e: io::Error| {
            Error::storage(
                &self.destination,
                StorageKind::of_io(&e),
                format!("{what} {}: {e}{}", path.display(), hint(&e)),
            )
        };
        let Some(writer) = self.file.take() else {
            return Err(Error::destination(
                &self.destination,
                "upload already closed",
            ));
        };
        let file = writer
            .into_inner()
            .map_err(|e| fail("cannot write", &self.temp_path(), e.into_error()))?;
        file.sync_all()
            .map_err(|e| fail("cannot sync", &self.temp_path(), e))?;
        drop(file);
        let target = self.folder.path.join(&self.target);
        if let Err(e) = crate::fault_point::reached("store.fs.before_rename")
            .and_then(|()| self.partial.rename(&self.temp, &self.folder, &self.target))
        {
            let _ = self.partial.unlink(&self.temp);
            return Err(fail("cannot rename into", &target, e));
        }
        self.folder
            .sync()
            .map_err(|e| fail("cannot sync folder", &self.folder.path, e))?;
        Ok(())
    }

    fn abort(mut self: Box<Self>) {
        self.file = None;
        let _ = self.partial.unlink(&self.temp);
    }
}

impl Drop for FsUpload {
    fn drop(&mut self) {
        // Neither committed nor aborted: an error path. Leave nothing behind.
        if self.file.is_some() {
            self.file = None;
            let _ = self.partial.unlink(&self.temp);
        }
    }
}

impl Destination for FsDestination {
    fn name(&self) -> &str {
        &self.name
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self, key: &str) -> Result<Box<dyn Upload>> {
        let (folder, target) = self.parent_of(key, true)?;
        let folder =
            folder.ok_or_else(|| self.err(format!("cannot create the folder of {key}")))?;
        let partial = folder
            .open_dir(PARTIAL_DIR, true)
            .map_err(|e| self.io_err("cannot create folder", &folder.path.join(PARTIAL_DIR), e))?;
        remove_dead_partials(&partial);
        let temp = Self::temp_name(target);
        let file = partial
            .create_file(&temp)
            .map_err(|e| self.io_err("cannot create", &partial.path.join(&temp), e))?;
        Ok(Box::new(FsUpload {
            partial,
            temp,
            target: target.to_string(),
            folder,
            file: Some(io::BufWriter::with_capacity(crate::pipeline::CHUNK, file)),
            destination: self.name.clone(),
        }))
    }

    fn put_atomic(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let mut upload = self.create(key)?;
        upload.write_all(bytes).map_err(|e| {
            Error::storage(
                &self.name,
                StorageKind::of_io(&e),
                format!("cannot write {key}: {e}"),
            )
        })?;
        upload.commit()
    }

    fn open(&self, key: &str) -> Result<Source> {
        let (folder, file) = self.parent_of(key, false)?;
        let path = self.root.join(key);
        let Some(folder) = folder else {
            return Err(self.io_err(
                "cannot open",
                &path,
                io::Error::from(io::ErrorKind::NotFound),
            ));
        };
        let file = folder
            .open_file(file)
            .map_err(|e| self.io_err("cannot open", &path, e))?;
        Ok(Box::new(io::BufReader::with_capacity(
            crate::pipeline::CHUNK,
            file,
        )))
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        let (folder, file) = self.parent_of(key, false)?;
        let Some(folder) = folder else {
            return Ok(None);
        };
        match folder.stat(file) {
            Ok(Some(entry)) if entry.kind == Kind::File => Ok(Some(entry.size)),
            Ok(_) => Ok(None),
            Err(e) => Err(self.io_err("cannot stat", &self.root.join(key), e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let dir_part = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let parts: Vec<&str> = if dir_part.is_empty() {
            Vec::new()
        } else {
            self.check_key(dir_part)?;
            dir_part.split('/').collect()
        };
        let Some(dir) = self.folder(&parts, false)? else {
            if !self.root.is_dir() {
                tracing::warn!(
                    destination = %self.name,
                    "folder {} does not exist yet (the first backup creates it)",
                    self.root.display()
                );
            }
            return Ok(Vec::new());
        };
        let mut out: Vec<ObjectInfo> = self
            .list_folder(&dir)?
            .into_iter()
            .map(|entry| ObjectInfo {
                key: if dir_part.is_empty() {
                    entry.name
                } else {
                    format!("{dir_part}/{}", entry.name)
                },
                size: entry.size,
                modified: entry.modified,
            })
            .filter(|o| o.key.starts_with(prefix))
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn list_partial(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let dir_key = format!("{}{PARTIAL_DIR}", prefix);
        self.check_key(&dir_key)?;
        let parts: Vec<&str> = dir_key.split('/').collect();
        let Some(dir) = self.folder(&parts, false)? else {
            return Ok(Vec::new());
        };
        Ok(self
            .list_folder(&dir)?
            .into_iter()
            .map(|entry| ObjectInfo {
                key: format!("{dir_key}/{}", entry.name),
                size: entry.size,
                modified: entry.modified,
            })
            .collect())
    }

    fn delete(&self, key: &str) -> Result<()> {
        let (folder, file) = self.parent_of(key, false)?;
        let path = self.root.join(key);
        let Some(folder) = folder else {
            return Ok(());
        };
        match folder.stat(file) {
            Ok(None) => Ok(()),
            Ok(Some(entry)) if entry.kind == Kind::File => match folder.unlink(file) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(self.io_err("cannot delete", &path, e)),
            },
            Ok(Some(_)) => Err(self.err(format!(
                "not deleting {}: it is not a regular file (cairn never follows or removes links or folders it did not write)",
                path.display()
            ))),
            Err(e) => Err(self.io_err("cannot stat", &path, e)),
        }
    }

    fn remove_empty_folder(&self, key: &str) -> Result<()> {
        let (folder, name) = self.parent_of(key, false)?;
        let Some(folder) = folder else {
            return Ok(());
        };
        match folder.remove_empty_dir(name) {
            Ok(()) => Ok(()),
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.kind() == io::ErrorKind::DirectoryNotEmpty =>
            {
                Ok(())
            }
            Err(e) => Err(self.io_err("cannot remove folder", &self.root.join(key), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, FsDestination, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("dest");
        let outside = dir.path().join("outside");
        fs::create_dir_all(root.join("job")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("important.txt"), b"keep").unwrap();
        symlink(&outside, root.join("job/link")).unwrap();
        symlink(outside.join("important.txt"), root.join("job/file-link")).unwrap();
        (dir, FsDestination::new("d", root), outside)
    }

    #[test]
    fn links_are_neither_deleted_through_nor_read_nor_listed() {
        let (_dir, dest, outside) = setup();
        assert!(dest.delete("job/link/important.txt").is_err());
        let e = dest.delete("job/file-link").unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        assert!(dest.open("job/file-link").is_err());
        assert!(dest.open("job/link/important.txt").is_err());
        assert!(dest.list("job/link/").is_err());
        assert!(dest.list("job/").unwrap().is_empty());
        assert_eq!(dest.size("job/file-link").unwrap(), None);
        assert_eq!(fs::read(outside.join("important.txt")).unwrap(), b"keep");
        assert!(fs::symlink_metadata(dest.root.join("job/file-link")).is_ok());
    }

    #[test]
    fn uploads_never_write_through_a_linked_folder() {
        let (_dir, dest, outside) = setup();
        assert!(dest.put_atomic("job/link/new.txt", b"x").is_err());
        symlink(&outside, dest.root.join("job/.partial")).unwrap();
        let e = dest
            .put_atomic("job/new.txt", b"x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
        assert!(dest.list_partial("job/").is_err());
    }

    #[test]
    fn objects_round_trip_and_partials_are_listed() {
        let (_dir, dest, _) = setup();
        dest.put_atomic("job/a.txt", b"hello").unwrap();
        let mut upload = dest.create("job/b.bin").unwrap();
        upload.write_all(b"unfinished").unwrap();
        let partial = dest.list_partial("job/").unwrap();
        assert_eq!(partial.len(), 1);
        assert!(partial[0].key.starts_with("job/.partial/b.bin.cairn-"));
        upload.commit().unwrap();
        assert_eq!(dest.get("job/a.txt").unwrap(), b"hello");
        let keys: Vec<String> = dest
            .list("job/")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["job/a.txt", "job/b.bin"]);
        assert_eq!(dest.size("job/b.bin").unwrap(), Some(10));
        dest.delete("job/a.txt").unwrap();
        assert_eq!(dest.size("job/a.txt").unwrap(), None);
        dest.remove_empty_folder("job/.partial").unwrap();
        assert!(!dest.root.join("job/.partial").exists());
    }
}
