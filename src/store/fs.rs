//! A destination in a local (or mounted) folder.
//!
//! Data objects are written to `<job>/.partial/` under a unique name, fsynced,
//! renamed into place and the folder fsynced; small objects likewise. Files are
//! created 0600 and folders 0700.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rand::Rng;

use super::{Destination, ObjectInfo, Upload};
use crate::pipeline::Source;
use crate::{Error, Result};

/// Where unfinished uploads live, inside each job folder.
pub const PARTIAL_DIR: &str = ".partial";

pub struct FsDestination {
    name: String,
    root: PathBuf,
}

impl FsDestination {
    pub fn new(name: &str, root: PathBuf) -> Self {
        FsDestination {
            name: name.to_string(),
            root,
        }
    }

    fn path_of(&self, key: &str) -> Result<PathBuf> {
        let valid = !key.is_empty()
            && key
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..");
        if !valid {
            return Err(self.err(format!("invalid object key {key:?}")));
        }
        Ok(self.root.join(key))
    }

    fn err(&self, message: impl std::fmt::Display) -> Error {
        Error::destination(&self.name, message)
    }

    fn io_err(&self, what: &str, path: &Path, e: io::Error) -> Error {
        self.err(format!("{what} {}: {e}{}", path.display(), hint(&e)))
    }

    fn temp_path(&self, key: &str) -> Result<PathBuf> {
        let path = self.path_of(key)?;
        let parent = path.parent().unwrap_or(&self.root).join(PARTIAL_DIR);
        ensure_dir(&parent).map_err(|e| self.io_err("cannot create folder", &parent, e))?;
        remove_dead_partials(&parent);
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let nonce: u32 = rand::thread_rng().r#gen();
        Ok(parent.join(format!(
            "{file}{PARTIAL_MARK}{}-{nonce:08x}-{}",
            std::process::id(),
            this_host()
        )))
    }
}

/// Separates a partial upload's file name from its owner (`pid-nonce-host`).
const PARTIAL_MARK: &str = ".cairn-";

fn this_host() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().replace(['/', '.'], "_"))
        .unwrap_or_default()
}

/// Whether a process with this id runs on this host.
pub fn process_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks whether the process exists.
    // EPERM means it exists but belongs to someone else: alive.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// Removes uploads left by processes of this host that died (killed backups).
/// Uploads of other hosts sharing the folder are left to `prune`.
fn remove_dead_partials(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let host = this_host();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((_, owner)) = name.rsplit_once(PARTIAL_MARK) else {
            continue;
        };
        let mut parts = owner.splitn(3, '-');
        let (Some(pid), Some(_nonce), Some(owner_host)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if owner_host == host && pid.parse().is_ok_and(|pid| !process_alive(pid)) {
            tracing::info!(path = %entry.path().display(), "removing the leftover of an interrupted backup");
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn modified_of(meta: &fs::Metadata) -> Option<jiff::Timestamp> {
    meta.modified()
        .ok()
        .and_then(|t| jiff::Timestamp::try_from(t).ok())
}

/// What to do about common I/O failures, for messages.
pub fn hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
            " (the disk is full: free space or point the destination elsewhere)"
        }
        Some(libc::EACCES) | Some(libc::EPERM) => {
            " (permission denied: check the folder's owner and mode)"
        }
        Some(libc::EROFS) => " (read-only file system)",
        _ => "",
    }
}

/// Creates `path` and its missing parents with mode 0700.
pub fn ensure_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Creates a new file with mode 0600, failing if it exists.
pub fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Makes a rename or creation inside `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

struct FsUpload {
    temp: PathBuf,
    target: PathBuf,
    file: Option<io::BufWriter<File>>,
    destination: String,
}

impl Write for FsUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot write {}: {e}{}", self.temp.display(), hint(&e)),
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
            Error::destination(&self.destination, format!("{what} {}: {e}", path.display()))
        };
        let Some(writer) = self.file.take() else {
            return Err(Error::destination(
                &self.destination,
                "upload already closed",
            ));
        };
        let file = writer
            .into_inner()
            .map_err(|e| fail("cannot write", &self.temp, e.into_error()))?;
        file.sync_all()
            .map_err(|e| fail("cannot sync", &self.temp, e))?;
        drop(file);
        fs::rename(&self.temp, &self.target)
            .map_err(|e| fail("cannot rename into", &self.target, e))?;
        if let Some(dir) = self.target.parent() {
            sync_dir(dir).map_err(|e| fail("cannot sync folder", dir, e))?;
        }
        Ok(())
    }

    fn abort(mut self: Box<Self>) {
        self.file = None;
        let _ = fs::remove_file(&self.temp);
    }
}

impl Drop for FsUpload {
    fn drop(&mut self) {
        // Neither committed nor aborted: an error path. Leave nothing behind.
        if self.file.is_some() {
            self.file = None;
            let _ = fs::remove_file(&self.temp);
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
        let target = self.path_of(key)?;
        let temp = self.temp_path(key)?;
        let file = create_private(&temp).map_err(|e| self.io_err("cannot create", &temp, e))?;
        Ok(Box::new(FsUpload {
            temp,
            target,
            file: Some(io::BufWriter::with_capacity(crate::pipeline::CHUNK, file)),
            destination: self.name.clone(),
        }))
    }

    fn put_atomic(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let mut upload = self.create(key)?;
        upload
            .write_all(bytes)
            .map_err(|e| self.err(format!("cannot write {key}: {e}")))?;
        upload.commit()
    }

    fn open(&self, key: &str) -> Result<Source> {
        let path = self.path_of(key)?;
        let file = File::open(&path).map_err(|e| self.io_err("cannot open", &path, e))?;
        Ok(Box::new(io::BufReader::with_capacity(
            crate::pipeline::CHUNK,
            file,
        )))
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        let path = self.path_of(key)?;
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_err("cannot stat", &path, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let dir_part = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let dir = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.path_of(dir_part)?
        };
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !self.root.is_dir() {
                    tracing::warn!(
                        destination = %self.name,
                        "folder {} does not exist yet (the first backup creates it)",
                        self.root.display()
                    );
                }
                return Ok(out);
            }
            Err(e) => return Err(self.io_err("cannot list", &dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| self.io_err("cannot list", &dir, e))?;
            let meta = entry
                .metadata()
                .map_err(|e| self.io_err("cannot stat", &entry.path(), e))?;
            if !meta.is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = if dir_part.is_empty() {
                name
            } else {
                format!("{dir_part}/{name}")
            };
            if key.starts_with(prefix) {
                out.push(ObjectInfo {
                    key,
                    size: meta.len(),
                    modified: modified_of(&meta),
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn list_partial(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let dir_key = format!("{}{PARTIAL_DIR}", prefix);
        let dir = self.path_of(&dir_key)?;
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io_err("cannot list", &dir, e)),
        };
        Ok(entries
            .flatten()
            .filter_map(|entry| {
                let meta = entry.metadata().ok().filter(|m| m.is_file())?;
                Some(ObjectInfo {
                    key: format!("{dir_key}/{}", entry.file_name().to_string_lossy()),
                    size: meta.len(),
                    modified: modified_of(&meta),
                })
            })
            .collect())
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path_of(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io_err("cannot delete", &path, e)),
        }
    }
}
