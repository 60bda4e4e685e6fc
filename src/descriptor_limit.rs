//! The soft limit of open descriptors: raised by the daemon for itself, and
//! given back to every program it starts, as Go does. Programs such as
//! `pg_dump` or a user's hook were written for the usual soft limit of 1,024
//! (`select(2)` cannot see descriptors above it).

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

const NOT_RAISED: u64 = u64::MAX;

/// The soft limit this process started with, once `raise` changed it.
static STARTED_WITH: AtomicU64 = AtomicU64::new(NOT_RAISED);

/// Lifts this process's soft limit to its hard one. Returns the limit now in
/// force, or the error that kept it where it was.
pub fn raise() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let soft = limit.rlim_cur;
        if soft == limit.rlim_max {
            return Ok(soft);
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let _ = STARTED_WITH.compare_exchange(NOT_RAISED, soft, Ordering::SeqCst, Ordering::SeqCst);
    }
    Ok(limit.rlim_max)
}

/// Makes `cmd`'s program start with the soft limit this process started
/// with, if `raise` changed it; otherwise leaves `cmd` as it is.
pub fn give_back_to(cmd: &mut Command) {
    let soft = STARTED_WITH.load(Ordering::SeqCst);
    if soft != NOT_RAISED {
        start_with_soft_limit(cmd, soft);
    }
}

/// Makes `cmd`'s program start with a soft limit of `soft` open descriptors
/// (at most its hard limit), as systemd starts a service.
pub fn start_with_soft_limit(cmd: &mut Command, soft: u64) {
    // SAFETY: between fork and exec only getrlimit and setrlimit run; both
    // are system calls, safe in a forked child.
    unsafe {
        cmd.pre_exec(move || {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            limit.rlim_cur = soft.min(limit.rlim_max);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
