//! Folder handles that never follow a symbolic link.
//!
//! Every path below a destination's folder is opened one component at a time
//! relative to its parent's descriptor with `O_NOFOLLOW`, and files are created,
//! renamed and removed with the `*at` calls on those descriptors. A link planted
//! inside the destination (`DEST/JOB/.partial -> /etc`) therefore makes the
//! operation fail instead of reaching outside the folder, even when another
//! process swaps a folder for a link between two calls.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// An open folder, and its path for messages.
pub struct Dir {
    fd: OwnedFd,
    pub path: PathBuf,
}

/// What a folder entry is, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Folder,
    Symlink,
    Other,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    pub size: u64,
    pub modified: Option<jiff::Timestamp>,
}

fn c_name(name: &str) -> io::Result<CString> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a single file name"),
        ));
    }
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn kind_of(mode: libc::mode_t) -> Kind {
    match mode & libc::S_IFMT {
        libc::S_IFREG => Kind::File,
        libc::S_IFDIR => Kind::Folder,
        libc::S_IFLNK => Kind::Symlink,
        _ => Kind::Other,
    }
}

impl Dir {
    /// Opens the destination's own folder. Its path comes from the config, so a
    /// link there (`/backup -> /mnt/disk`) is the user's choice and is followed.
    pub fn open_root(path: &Path) -> io::Result<Dir> {
        let c_path = CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: c_path is a valid NUL-terminated string.
        let fd = check(unsafe {
            libc::open(
                c_path.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        Ok(Dir {
            // SAFETY: fd was just opened and is owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_path_buf(),
        })
    }

    /// Opens the sub-folder `name`, creating it (0700) first when asked. Fails
    /// with `ELOOP`/`ENOTDIR` when `name` is a link or not a folder.
    pub fn open_dir(&self, name: &str, create: bool) -> io::Result<Dir> {
        let c = c_name(name)?;
        if create {
            // SAFETY: valid descriptor and NUL-terminated name.
            let rc = unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), 0o700) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::AlreadyExists {
                    return Err(e);
                }
            }
        }
        // SAFETY: valid descriptor and NUL-terminated name.
        let fd = check(unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        })?;
        Ok(Dir {
            // SAFETY: fd was just opened and is owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: self.path.join(name),
        })
    }

    /// Creates a new file (0600), failing if anything has that name.
    pub fn create_file(&self, name: &str) -> io::Result<File> {
        let c = c_name(name)?;
        // SAFETY: valid descriptor and NUL-terminated name.
        let fd = check(unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        })?;
        // SAFETY: fd was just opened and is owned by nobody else.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Opens a regular file for reading; a link or anything else is refused.
    pub fn open_file(&self, name: &str) -> io::Result<File> {
        let c = c_name(name)?;
        // O_NONBLOCK: opening a planted FIFO must not hang.
        // SAFETY: valid descriptor and NUL-terminated name.
        let fd = check(unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK,
            )
        })?;
        // SAFETY: fd was just opened and is owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        if !file.metadata()?.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        // SAFETY: valid descriptor; clears O_NONBLOCK again for plain reads.
        check(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, 0) })?;
        Ok(file)
    }

    /// What `name` is, without following it; `None` when nothing has that name.
    pub fn stat(&self, name: &str) -> io::Result<Option<Entry>> {
        let c = c_name(name)?;
        // SAFETY: all-zero is a valid `stat` to be filled in.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor, NUL-terminated name, and a stat buffer.
        let rc = unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::NotFound {
                Ok(None)
            } else {
                Err(e)
            };
        }
        Ok(Some(Entry {
            name: name.to_string(),
            kind: kind_of(st.st_mode),
            size: u64::try_from(st.st_size).unwrap_or(0),
            modified: jiff::Timestamp::new(
                st.st_mtime,
                i32::try_from(st.st_mtime_nsec).unwrap_or(0),
            )
            .ok(),
        }))
    }

    /// Removes the file (or link itself) `name`, never what a link points to.
    pub fn unlink(&self, name: &str) -> io::Result<()> {
        let c = c_name(name)?;
        // SAFETY: valid descriptor and NUL-terminated name.
        check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) }).map(drop)
    }

    /// Removes the sub-folder `name` if it is empty (a link is never followed).
    pub fn remove_empty_dir(&self, name: &str) -> io::Result<()> {
        let c = c_name(name)?;
        // SAFETY: valid descriptor and NUL-terminated name.
        check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) })
            .map(drop)
    }

    /// Renames `from` in this folder to `to` in `target` (replacing it).
    pub fn rename(&self, from: &str, target: &Dir, to: &str) -> io::Result<()> {
        let a = c_name(from)?;
        let b = c_name(to)?;
        // SAFETY: valid descriptors and NUL-terminated names.
        check(unsafe {
            libc::renameat(
                self.fd.as_raw_fd(),
                a.as_ptr(),
                target.fd.as_raw_fd(),
                b.as_ptr(),
            )
        })
        .map(drop)
    }

    /// Makes renames and creations in this folder durable.
    pub fn sync(&self) -> io::Result<()> {
        // SAFETY: valid descriptor.
        check(unsafe { libc::fsync(self.fd.as_raw_fd()) }).map(drop)
    }

    /// The entries of this folder with their kind (links are not followed).
    /// Names that are not UTF-8 cannot be object keys and are left out.
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        // fdopendir takes ownership of its descriptor: give it a duplicate.
        // SAFETY: valid descriptor.
        let dup = check(unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
        // SAFETY: dup is an open folder descriptor, owned by the stream from now on.
        let stream = unsafe { libc::fdopendir(dup) };
        if stream.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so dup is still ours to close.
            unsafe { libc::close(dup) };
            return Err(e);
        }
        struct Stream(*mut libc::DIR);
        impl Drop for Stream {
            fn drop(&mut self) {
                // SAFETY: the stream was opened by fdopendir and is closed once.
                unsafe { libc::closedir(self.0) };
            }
        }
        let stream = Stream(stream);
        let mut names = Vec::new();
        loop {
            // SAFETY: errno is thread-local; readdir reports errors only through it.
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: the stream is open.
            let entry = unsafe { libc::readdir(stream.0) };
            if entry.is_null() {
                let e = io::Error::last_os_error();
                if e.raw_os_error().is_some_and(|code| code != 0) {
                    return Err(e);
                }
                break;
            }
            // SAFETY: d_name is NUL-terminated within the entry readdir returned.
            let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
            if let Ok(name) = name.to_str()
                && name != "."
                && name != ".."
            {
                names.push(name.to_string());
            }
        }
        drop(stream);
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            // An entry removed since it was listed is simply gone.
            if let Some(entry) = self.stat(&name)? {
                out.push(entry);
            }
        }
        Ok(out)
    }
}
