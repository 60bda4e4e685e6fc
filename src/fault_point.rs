//! Named points where the crash matrix (`tests/crash_matrix.rs`) kills the
//! process or fails the operation: before and after each commit step of a
//! backup, restore, prune, gc, drill and state-store write.
//!
//! Only [`arm`] makes a point do anything, and nothing in cairn calls it: no
//! flag, no environment variable, no config key reaches it. The crash matrix's
//! own test binary arms one point and then runs cairn's command line in a child
//! process. (A cargo feature would compile cairn a second time for every test
//! run, seven minutes on two cores; an unarmed point costs one atomic load.)

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Every point the engine has, for the crash matrix and the engine to agree on.
pub const POINTS: &[&str] = &[
    "backup.upload_write",
    "backup.before_data_commit",
    "backup.before_manifest",
    "store.fs.before_rename",
    "store.remote.part_boundary",
    "store.remote.before_complete",
    "restore.before_exchange",
    "restore.after_exchange",
    "prune.after_manifest_delete",
    "gc.before_delete",
    "drill.before_cleanup",
    "state.before_finish_run",
];

struct Armed {
    name: &'static str,
    nth: u32,
    kill: bool,
    seen: AtomicU32,
}

static ARMED: OnceLock<Armed> = OnceLock::new();

/// Arms one point for the rest of this process: `NAME[@N][:kill|:fail]`, the
/// Nth time (1 by default) the process reaches `NAME` it sends itself SIGKILL
/// (`kill`, the default) or the operation fails with an I/O error (`fail`).
pub fn arm(spec: &str) -> Result<(), String> {
    let (point, effect) = spec.split_once(':').unwrap_or((spec, "kill"));
    let (name, nth) = point.split_once('@').unwrap_or((point, "1"));
    let name = POINTS
        .iter()
        .find(|p| **p == name)
        .ok_or_else(|| format!("no fault point `{name}` (points: {})", POINTS.join(", ")))?;
    let nth = nth
        .parse()
        .map_err(|_| format!("`{nth}` in {spec} is not a number"))?;
    let kill = match effect {
        "kill" => true,
        "fail" => false,
        other => return Err(format!("`{other}` in {spec} is neither kill nor fail")),
    };
    ARMED
        .set(Armed {
            name,
            nth,
            kill,
            seen: AtomicU32::new(0),
        })
        .map_err(|_| "a fault point is armed already".to_string())
}

/// Reached `name`: goes on, unless [`arm`] armed it for this arrival.
pub fn reached(name: &'static str) -> std::io::Result<()> {
    let Some(armed) = ARMED.get() else {
        return Ok(());
    };
    if armed.name != name || armed.seen.fetch_add(1, Ordering::SeqCst) + 1 != armed.nth {
        return Ok(());
    }
    if armed.kill {
        eprintln!("fault point {name} reached: SIGKILL");
        // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        std::process::abort();
    }
    eprintln!("fault point {name} reached: failing");
    Err(std::io::Error::other(format!("injected fault at {name}")))
}
