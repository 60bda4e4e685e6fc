//! Files and folders on the local disk as cairn makes them: folders 0700,
//! files 0600 and never over an existing one, renames made durable, and a hint
//! for the I/O failures people can fix. Shared by destinations, sources
//! (restores into a temporary path) and drills, so it sits below all of them.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

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
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
            " (a symbolic link or a file stands where a folder or file was expected: cairn never follows links inside a destination; remove it)"
        }
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

/// (free bytes for unprivileged users, total bytes) of the file system at `path`.
pub fn free_space(path: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("path contains a NUL byte"))?;
    // SAFETY: an all-zero statvfs is a valid value for the call to fill in.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a statvfs struct to fill.
    if unsafe { libc::statvfs(c.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let block = stat.f_frsize as u64;
    Ok((
        (stat.f_bavail as u64).saturating_mul(block),
        (stat.f_blocks as u64).saturating_mul(block),
    ))
}
