//! Bad marks on stored copies of artifacts: set when verification or a drill
//! finds a copy damaged, cleared when it proves good again or is repaired.
//! A marked copy is not read, and is never the newest good one, without
//! `--allow-bad`.

use super::{ArtifactMark, StateStore};

/// Records that the copy of an artifact in `destination` is damaged: it is
/// then not read, and is never the newest good one there, without --allow-bad.
pub fn mark_copy_bad(store: &dyn StateStore, job: &str, id: &str, destination: &str, reason: &str) {
    let mark = ArtifactMark {
        bad: true,
        reason: reason.to_string(),
        at: jiff::Timestamp::now(),
    };
    match store.mark_copy(job, id, destination, &mark) {
        Ok(()) => {
            tracing::warn!(job = %job, id = %id, destination = %destination, "copy marked bad: {reason}")
        }
        Err(e) => {
            tracing::error!(job = %job, id = %id, destination = %destination, error = %e, "cannot mark the copy bad")
        }
    }
}

/// Records that a copy marked bad proved good again (or was repaired).
pub fn clear_copy_mark(
    store: &dyn StateStore,
    job: &str,
    id: &str,
    destination: &str,
    reason: &str,
) {
    let mark = ArtifactMark {
        bad: false,
        reason: reason.to_string(),
        at: jiff::Timestamp::now(),
    };
    match store.mark_copy(job, id, destination, &mark) {
        Ok(()) => {
            tracing::info!(job = %job, id = %id, destination = %destination, "copy no longer marked bad: {reason}")
        }
        Err(e) => {
            tracing::error!(job = %job, id = %id, destination = %destination, error = %e, "cannot clear the copy's mark")
        }
    }
}
