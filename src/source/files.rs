//! A folder as a tar stream (GNU format, readable by `tar -x`).
//!
//! Regular files, folders and symlinks are stored with their modes, owners and
//! mtimes; symlinks are stored as links and never followed. `exclude` patterns
//! without a `/` match any path component (like `.gitignore`); patterns with a
//! `/` match the path relative to the folder (`**` crosses folders).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use serde_json::json;

use super::archive_guard::{Accepted, Guard};
use super::{Dump, Restorer, TargetShape};
use crate::{Error, Result};

pub struct FilesSource {
    job: String,
    root: PathBuf,
    exclude: Vec<String>,
}

struct Excludes {
    by_name: GlobSet,
    by_path: GlobSet,
}

impl Excludes {
    fn new(patterns: &[String]) -> std::result::Result<Self, globset::Error> {
        let mut by_name = GlobSetBuilder::new();
        let mut by_path = GlobSetBuilder::new();
        for pattern in patterns {
            let trimmed = pattern.trim_start_matches("./").trim_end_matches('/');
            if trimmed.contains('/') {
                by_path.add(GlobBuilder::new(trimmed).literal_separator(true).build()?);
            } else {
                by_name.add(Glob::new(trimmed)?);
            }
        }
        Ok(Excludes {
            by_name: by_name.build()?,
            by_path: by_path.build()?,
        })
    }

    fn excludes(&self, relative: &Path) -> bool {
        self.by_path.is_match(relative)
            || relative
                .file_name()
                .is_some_and(|name| self.by_name.is_match(name))
    }
}

#[derive(Default)]
struct Tally {
    files: u64,
    folders: u64,
    symlinks: u64,
    bytes: u64,
    skipped: Vec<String>,
    changed: Vec<String>,
    tree: TreeDigest,
}

/// Manifests list each file's hash only up to this many files (about 1 MB of
/// JSON); beyond it, only the tree digest is kept, so memory stays bounded.
pub const FILE_LIST_LIMIT: usize = 10_000;

/// Path, size and SHA-256 of every regular file, in the walk's order (sorted
/// names, depth first), folded into one digest; the list itself is kept up to
/// [`FILE_LIST_LIMIT`] files. A restore drill computes the same over the
/// restored folder.
pub struct TreeDigest {
    hasher: sha2::Sha256,
    pub files: u64,
    pub bytes: u64,
    /// `None` once the folder had more than `FILE_LIST_LIMIT` files.
    pub list: Option<Vec<FileHash>>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileHash {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

impl Default for TreeDigest {
    fn default() -> Self {
        use sha2::Digest as _;
        TreeDigest {
            hasher: sha2::Sha256::new(),
            files: 0,
            bytes: 0,
            list: Some(Vec::new()),
        }
    }
}

impl TreeDigest {
    pub fn add(&mut self, path: &str, size: u64, sha256: &str) {
        use sha2::Digest as _;
        self.hasher.update(path.as_bytes());
        self.hasher.update([0]);
        self.hasher.update(size.to_string().as_bytes());
        self.hasher.update([0]);
        self.hasher.update(sha256.as_bytes());
        self.hasher.update(b"\n");
        self.files += 1;
        self.bytes += size;
        if let Some(list) = &mut self.list {
            if list.len() < FILE_LIST_LIMIT {
                list.push(FileHash {
                    path: path.to_string(),
                    size,
                    sha256: sha256.to_string(),
                });
            } else {
                self.list = None;
            }
        }
    }

    pub fn sha256(&self) -> String {
        use sha2::Digest as _;
        hex::encode(self.hasher.clone().finalize())
    }
}

/// A reader that hashes what passes through it.
struct HashingBody<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R: Read> Read for HashingBody<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use sha2::Digest as _;
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The tree digest of a folder as restored: the same walk as the backup's, over
/// every regular file (symlinks and folders are not hashed).
pub fn digest_folder(root: &Path) -> io::Result<TreeDigest> {
    fn walk(root: &Path, relative: &Path, tree: &mut TreeDigest) -> io::Result<()> {
        let mut entries: Vec<fs::DirEntry> =
            fs::read_dir(root.join(relative))?.collect::<io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let rel = relative.join(entry.file_name());
            let meta = fs::symlink_metadata(entry.path())?;
            if meta.is_dir() {
                walk(root, &rel, tree)?;
            } else if meta.is_file() {
                let digest = crate::pipeline::hash::digest_of(File::open(entry.path())?)?;
                tree.add(&rel.display().to_string(), digest.size, &digest.sha256);
            }
        }
        Ok(())
    }
    let mut tree = TreeDigest::default();
    walk(root, Path::new(""), &mut tree)?;
    Ok(tree)
}

impl FilesSource {
    pub fn new(job: &str, root: &Path, exclude: &[String]) -> Self {
        FilesSource {
            job: job.to_string(),
            root: root.to_path_buf(),
            exclude: exclude.to_vec(),
        }
    }

    fn fail(&self, what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
        Error::source(&self.job, format!("{what} {}: {e}", path.display()))
    }

    fn walk(
        &self,
        builder: &mut tar::Builder<&mut dyn Write>,
        excludes: &Excludes,
        relative: &Path,
        tally: &mut Tally,
    ) -> Result<()> {
        let dir = self.root.join(relative);
        let mut entries: Vec<fs::DirEntry> = fs::read_dir(&dir)
            .map_err(|e| self.fail("cannot list folder", &dir, e))?
            .collect::<io::Result<_>>()
            .map_err(|e| self.fail("cannot list folder", &dir, e))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let rel = relative.join(entry.file_name());
            if excludes.excludes(&rel) {
                continue;
            }
            let full = entry.path();
            let meta =
                fs::symlink_metadata(&full).map_err(|e| self.fail("cannot stat", &full, e))?;
            let file_type = meta.file_type();
            let write_err = |e: io::Error| self.fail("cannot add to the archive:", &full, e);
            if file_type.is_symlink() {
                let target =
                    fs::read_link(&full).map_err(|e| self.fail("cannot read link", &full, e))?;
                let mut header = tar::Header::new_gnu();
                header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder
                    .append_link(&mut header, &rel, &target)
                    .map_err(write_err)?;
                tally.symlinks += 1;
            } else if file_type.is_dir() {
                let mut header = tar::Header::new_gnu();
                header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder
                    .append_data(&mut header, &rel, io::empty())
                    .map_err(write_err)?;
                tally.folders += 1;
                self.walk(builder, excludes, &rel, tally)?;
            } else if file_type.is_file() {
                let file = File::open(&full).map_err(|e| {
                    self.fail(
                        "cannot read",
                        &full,
                        format!("{e} (fix its permissions or add it to source.exclude)"),
                    )
                })?;
                let size = meta.len();
                let mut header = tar::Header::new_gnu();
                header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
                header.set_size(size);
                // The header promised `size` bytes: a file that shrinks while it is
                // read is padded with zeros, one that grows is cut, and both are
                // reported, so the archive stays well formed.
                let mut body = HashingBody {
                    inner: ExactSize::new(file, size),
                    hasher: sha2::Digest::new(),
                };
                builder
                    .append_data(&mut header, &rel, &mut body)
                    .map_err(write_err)?;
                if body.inner.changed {
                    tally.changed.push(rel.display().to_string());
                }
                let sha = hex::encode(sha2::Digest::finalize(body.hasher));
                tally.tree.add(&rel.display().to_string(), size, &sha);
                tally.files += 1;
                tally.bytes += size;
            } else {
                tally.skipped.push(rel.display().to_string());
            }
        }
        Ok(())
    }
}

impl Dump for FilesSource {
    fn kind(&self) -> &'static str {
        "files"
    }

    fn extension(&self) -> &str {
        "tar"
    }

    fn describe(&self) -> String {
        format!("folder {}", self.root.display())
    }

    fn size_hint(&self) -> Option<u64> {
        None
    }

    fn dump(&self, out: &mut dyn Write) -> Result<serde_json::Value> {
        let meta =
            fs::metadata(&self.root).map_err(|e| self.fail("cannot read folder", &self.root, e))?;
        if !meta.is_dir() {
            return Err(self.fail("not a folder:", &self.root, "check source.path"));
        }
        let excludes = Excludes::new(&self.exclude)
            .map_err(|e| Error::source(&self.job, format!("bad exclude pattern: {e}")))?;
        let mut builder = tar::Builder::new(out);
        builder.follow_symlinks(false);
        let mut tally = Tally::default();
        // The top folder's own mode and time, as the `./` entry (as `tar -C DIR .` does).
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        builder
            .append_data(&mut header, "./", io::empty())
            .map_err(|e| self.fail("cannot add to the archive:", &self.root, e))?;
        self.walk(&mut builder, &excludes, Path::new(""), &mut tally)?;
        builder
            .finish()
            .map_err(|e| self.fail("cannot finish the archive of", &self.root, e))?;
        for path in &tally.changed {
            tracing::warn!(job = %self.job, file = %path, "file changed size while it was read; the artifact holds what was read");
        }
        for path in &tally.skipped {
            tracing::warn!(job = %self.job, file = %path, "skipped: not a regular file, folder or symlink");
        }
        Ok(json!({
            "path": self.root.display().to_string(),
            "files": tally.files,
            "folders": tally.folders,
            "symlinks": tally.symlinks,
            "file_bytes": tally.bytes,
            "exclude": self.exclude,
            "skipped": tally.skipped,
            "changed_while_reading": tally.changed,
            // Per-file hashes for restore drills (see TreeDigest).
            "tree_sha256": tally.tree.sha256(),
            "file_hashes": tally.tree.list,
        }))
    }
}

/// Yields exactly `size` bytes of `inner`: cut if longer, zero-padded if shorter.
struct ExactSize<R> {
    inner: R,
    remaining: u64,
    inner_done: bool,
    changed: bool,
}

impl<R: Read> ExactSize<R> {
    fn new(inner: R, size: u64) -> Self {
        ExactSize {
            inner,
            remaining: size,
            inner_done: false,
            changed: false,
        }
    }
}

impl<R: Read> Read for ExactSize<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            if !self.inner_done && !self.changed {
                let mut probe = [0u8; 1];
                if self.inner.read(&mut probe)? > 0 {
                    self.changed = true;
                }
                self.inner_done = true;
            }
            return Ok(0);
        }
        let want = buf.len().min(self.remaining as usize);
        let n = if self.inner_done {
            0
        } else {
            self.inner.read(&mut buf[..want])?
        };
        let n = if n == 0 {
            self.inner_done = true;
            self.changed = true;
            buf[..want].fill(0);
            want
        } else {
            n
        };
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Remembers whether reading the stream failed.
struct ReadTracker<'a> {
    inner: &'a mut dyn Read,
    failed: std::rc::Rc<std::cell::Cell<bool>>,
}

impl Read for ReadTracker<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|_| self.failed.set(true))
    }
}

/// Unpacks a tar stream into a folder, keeping modes and mtimes.
pub struct FilesRestorer;

impl Restorer for FilesRestorer {
    fn shape(&self) -> TargetShape {
        TargetShape::Folder
    }

    fn write(&self, stream: &mut dyn Read, temp: &Path) -> Result<()> {
        crate::local_fs::ensure_dir(temp)
            .map_err(|e| Error::Run(format!("cannot create {}: {e}", temp.display())))?;
        let stream_failed = std::rc::Rc::new(std::cell::Cell::new(false));
        let mut archive = tar::Archive::new(ReadTracker {
            inner: stream,
            failed: stream_failed.clone(),
        });
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        archive.set_unpack_xattrs(false);
        archive.set_overwrite(false);
        // tar mixes errors of reading the stream with errors of writing files:
        // only the first kind may mean a damaged artifact; the second is the
        // target's (a full disk, say).
        let unpack_err = |e: io::Error| {
            if stream_failed.get() {
                Error::Run(format!("restore stream failed: {e}"))
            } else {
                Error::Target {
                    path: temp.to_path_buf(),
                    message: format!(
                        "cannot unpack the archive here: {e}{}",
                        crate::local_fs::hint(&e)
                    ),
                }
            }
        };
        // As `Archive::unpack` does, but folders get their mtimes back too (tar-rs
        // sets them on files and links only). Folders come last, deepest first, so
        // that unpacking into them or setting a child's mode and mtime changes nothing.
        let mut folders = Vec::new();
        let mut guard = Guard::default();
        let mut top = None;
        for entry in archive.entries().map_err(unpack_err)? {
            let mut entry = entry.map_err(unpack_err)?;
            let kind = entry.header().entry_type();
            if guard.check(&entry.path_bytes(), kind)? == Accepted::Top {
                let header = entry.header();
                top = Some((
                    header.mode().map_err(unpack_err)?,
                    header.mtime().map_err(unpack_err)?,
                ));
            } else if kind == tar::EntryType::Directory {
                folders.push(entry);
            } else {
                entry.unpack_in(temp).map_err(unpack_err)?;
            }
        }
        folders.sort_by(|a, b| b.path_bytes().cmp(&a.path_bytes()));
        for mut folder in folders {
            if !folder.unpack_in(temp).map_err(unpack_err)? {
                continue;
            }
            // The path `unpack_in` used: its normal components below `temp`.
            let relative: PathBuf = folder
                .path()
                .map_err(unpack_err)?
                .components()
                .filter(|c| matches!(c, std::path::Component::Normal(_)))
                .collect();
            let mtime = folder.header().mtime().map_err(unpack_err)?;
            set_mtime(&temp.join(relative), mtime).map_err(unpack_err)?;
        }
        // The top folder stays private while it is filled and gets its own mode last.
        if let Some((mode, mtime)) = top {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(temp, fs::Permissions::from_mode(mode & 0o7777))
                .map_err(unpack_err)?;
            set_mtime(temp, mtime).map_err(unpack_err)?;
        }
        // Consume the zero blocks after the last entry so the stream reaches its end
        // and its hashes are complete.
        io::copy(&mut archive.into_inner(), &mut io::sink())
            .map_err(|e| Error::Run(format!("restore stream failed: {e}")))?;
        Ok(())
    }

    fn check(&self, _temp: &Path, _level: super::CheckLevel) -> Result<Option<String>> {
        Ok(None)
    }
}

/// Sets the access and modification times of `path` (not following a symlink).
fn set_mtime(path: &Path, mtime: u64) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let time = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    let times = [time, time];
    // SAFETY: c_path is a valid NUL-terminated string and `times` holds two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A job's folder source as a [`SourceKind`](super::kind::SourceKind).
pub struct FilesKind<'a> {
    pub job: &'a crate::config::Job,
    pub path: &'a Path,
    pub exclude: &'a [String],
}

impl super::kind::SourceKind for FilesKind<'_> {
    fn kind(&self) -> &'static str {
        "files"
    }

    fn dumper(&self) -> Result<Box<dyn Dump>> {
        Ok(Box::new(FilesSource::new(
            &self.job.name,
            self.path,
            self.exclude,
        )))
    }

    fn probe(&self) -> Result<String> {
        fs::read_dir(self.path)
            .map(|_| format!("{} is a readable folder", self.path.display()))
            .map_err(|e| Error::Run(format!("{} cannot be listed: {e}", self.path.display())))
    }

    fn live_checks(&self) -> Result<super::kind::LiveChecks> {
        let readable = fs::read_dir(self.path);
        let check = super::kind::Check::new(
            "folder",
            readable.is_ok(),
            match readable {
                Ok(_) => format!("{} can be read", self.path.display()),
                Err(e) => format!("{}: {e}", self.path.display()),
            },
        );
        Ok(super::kind::LiveChecks {
            checks: vec![check],
            rules_can_run: false,
        })
    }

    fn no_database(&self) -> Error {
        super::kind::no_database(self.job)
    }
}
