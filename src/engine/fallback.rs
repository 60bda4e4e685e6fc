//! The one copy-fallback loop: restore (paths, servers, commands), drills and
//! the checks before a restore try the located copies in order, and move on
//! or stop by the kind of the error.

use std::sync::Arc;

use serde::Serialize;

use super::Located;
use crate::progress::Progress;
use crate::store::Destination;
use crate::{Error, Result, StorageKind};

/// What to do after a copy failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The copy or its destination is at fault: another copy may be good.
    TryNextCopy,
    /// The target, the key or the request is at fault: every copy would fail.
    Stop,
}

/// Decides by the error's storage kind. Only storage errors move on: a target
/// that cannot be written, a key that does not decrypt, a usage error or a
/// hostile archive will be the same with every copy.
pub fn next_after(error: &Error) -> Next {
    match error.storage_kind() {
        Some(_) => Next::TryNextCopy,
        None => Next::Stop,
    }
}

/// A copy that was passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedCopy {
    pub destination: String,
    pub kind: StorageKind,
    pub error: String,
}

/// The copy that worked, what the attempt returned, and the copies before it.
#[derive(Debug)]
pub struct Found<T> {
    pub destination: String,
    pub value: T,
    pub skipped: Vec<SkippedCopy>,
}

/// Tries `attempt` on each copy of `located` in order until one succeeds.
/// `label` starts the progress line ("restore", "drill", "check").
/// A failed attempt must leave nothing behind that the next one would trip on.
pub fn first_good_copy<T>(
    located: &Located,
    label: &str,
    progress: &Arc<dyn Progress>,
    attempt: impl FnMut(&dyn Destination) -> Result<T>,
) -> Result<Found<T>> {
    first_good_copy_preferring(located, None, label, progress, attempt)
}

/// [`first_good_copy`], reading the copy in `prefer` first (one that a check
/// already proved good), then the others in order.
pub fn first_good_copy_preferring<T>(
    located: &Located,
    prefer: Option<&str>,
    label: &str,
    progress: &Arc<dyn Progress>,
    mut attempt: impl FnMut(&dyn Destination) -> Result<T>,
) -> Result<Found<T>> {
    let manifest = &located.manifest;
    let mut order: Vec<&dyn Destination> = located.copies.iter().map(|(d, _)| d.as_ref()).collect();
    if let Some(first) = order.iter().position(|d| Some(d.name()) == prefer) {
        let preferred = order.remove(first);
        order.insert(0, preferred);
    }
    let mut skipped = Vec::new();
    let mut last_error = None;
    for (index, dest) in order.iter().enumerate() {
        progress.start(
            &format!("{label} {} from {}", manifest.id, dest.name()),
            Some(manifest.data.size),
        );
        let result = attempt(*dest);
        progress.finish();
        let error = match result {
            Ok(value) => {
                return Ok(Found {
                    destination: dest.name().to_string(),
                    value,
                    skipped,
                });
            }
            Err(e) => e,
        };
        let kind = match (next_after(&error), error.storage_kind()) {
            (Next::TryNextCopy, Some(kind)) => kind,
            _ => return Err(error),
        };
        let more = index + 1 < order.len();
        if more {
            let message = moved_on(dest.name(), kind, &error);
            if kind == StorageKind::Denied {
                tracing::error!(job = %manifest.job, destination = %dest.name(), "{message}");
            } else {
                tracing::warn!(job = %manifest.job, destination = %dest.name(), "{message}");
            }
        }
        skipped.push(SkippedCopy {
            destination: dest.name().to_string(),
            kind,
            error: error.to_string(),
        });
        last_error = Some(error);
    }
    Err(match last_error {
        Some(last) => no_good_copy(last, &skipped),
        None => Error::NotFound(format!("no copy of {} to read", manifest.id)),
    })
}

/// A kind in words, for messages.
pub fn kind_words(kind: StorageKind) -> &'static str {
    match kind {
        StorageKind::NotFound => "not found",
        StorageKind::Denied => "access denied",
        StorageKind::Transient => "unreachable for now",
        StorageKind::NoSpace => "out of space",
        StorageKind::Damaged => "damaged",
        StorageKind::Other => "unusable",
    }
}

/// The warning when a copy is passed over for the next one.
pub fn moved_on(destination: &str, kind: StorageKind, error: &Error) -> String {
    let hint = match kind {
        StorageKind::Denied => ": check the destination's credentials and permissions",
        _ => "",
    };
    format!(
        "copy unusable in `{destination}` ({}{hint}), trying the next destination: {error}",
        kind_words(kind)
    )
}

/// A copy passed over, as a line of a report's actions.
pub fn skipped_line(skipped: &SkippedCopy) -> String {
    format!(
        "passed over the copy in `{}` ({}): {}",
        skipped.destination,
        kind_words(skipped.kind),
        skipped.error
    )
}

/// The error when every copy failed: the last copy's error (its variant is
/// kept, so damage stays damage), naming what was wrong with the others.
pub fn no_good_copy(last: Error, skipped: &[SkippedCopy]) -> Error {
    if skipped.len() < 2 {
        return last;
    }
    let summary: Vec<String> = skipped
        .iter()
        .map(|s| format!("`{}` {}", s.destination, kind_words(s.kind)))
        .collect();
    let note = format!("; no copy could be used ({})", summary.join(", "));
    with_note(last, &note)
}

/// Appends `note` to an error's message, keeping its variant (and so its
/// storage kind and exit code) where the variant has a message.
pub fn with_note(error: Error, note: &str) -> Error {
    match error {
        Error::Integrity { job, id, message } => Error::Integrity {
            job,
            id,
            message: message + note,
        },
        Error::Destination {
            destination,
            kind,
            message,
        } => Error::Destination {
            destination,
            kind,
            message: message + note,
        },
        Error::Run(message) => Error::Run(message + note),
        Error::Target { path, message } => Error::Target {
            path,
            message: message + note,
        },
        other => Error::Run(format!("{other}{note}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{located_in, silent};
    use std::sync::Mutex;

    fn damaged() -> Error {
        Error::Integrity {
            job: "app".into(),
            id: "20260101T000000Z-abcd".into(),
            message: "the stored object app/app-20260101T000000Z-abcd.db.zst does not match its SHA-256 in the manifest (its bytes were changed)".into(),
        }
    }

    #[test]
    fn storage_errors_move_on_and_everything_else_stops() {
        for kind in [
            StorageKind::NotFound,
            StorageKind::Denied,
            StorageKind::Transient,
            StorageKind::NoSpace,
            StorageKind::Damaged,
            StorageKind::Other,
        ] {
            assert_eq!(
                next_after(&Error::storage("a", kind, "x")),
                Next::TryNextCopy
            );
        }
        assert_eq!(next_after(&damaged()), Next::TryNextCopy);
        for stop in [
            Error::Crypto("no identity matches".into()),
            Error::Target {
                path: "/srv/app.db".into(),
                message: "is not writable".into(),
            },
            Error::Usage("--clean applies to database restores only".into()),
            Error::Foreign("an entry leaves the target".into()),
            Error::Run("the client failed".into()),
        ] {
            assert_eq!(next_after(&stop), Next::Stop, "{stop}");
        }
    }

    #[test]
    fn the_next_copy_is_read_when_one_is_damaged_missing_or_unreachable() {
        for kind in [
            StorageKind::Damaged,
            StorageKind::NotFound,
            StorageKind::Transient,
            StorageKind::Denied,
        ] {
            let located = located_in(&["a", "b"]);
            let tried = Mutex::new(Vec::new());
            let found = first_good_copy(&located, "restore", &silent(), |d| {
                tried.lock().unwrap().push(d.name().to_string());
                if d.name() == "a" {
                    Err(Error::storage("a", kind, "cannot read"))
                } else {
                    Ok(7)
                }
            })
            .unwrap();
            assert_eq!(found.destination, "b");
            assert_eq!(found.value, 7);
            assert_eq!(found.skipped.len(), 1);
            assert_eq!(found.skipped[0].kind, kind);
            assert_eq!(*tried.lock().unwrap(), ["a", "b"]);
        }
    }

    #[test]
    fn a_copy_proven_good_is_read_first() {
        let located = located_in(&["a", "b", "c"]);
        let mut tried = Vec::new();
        let found = first_good_copy_preferring(&located, Some("b"), "restore", &silent(), |d| {
            tried.push(d.name().to_string());
            Ok(())
        })
        .unwrap();
        assert_eq!(found.destination, "b");
        assert_eq!(tried, ["b"]);
    }

    #[test]
    fn a_target_or_key_error_stops_at_the_first_copy() {
        let located = located_in(&["a", "b"]);
        let mut tried = 0;
        let err = first_good_copy(&located, "restore", &silent(), |_| -> Result<()> {
            tried += 1;
            Err(Error::Crypto("no identity matches the recipients".into()))
        })
        .unwrap_err();
        assert_eq!(tried, 1);
        assert!(matches!(err, Error::Crypto(_)));
    }

    #[test]
    fn one_copy_fails_with_its_own_error() {
        let located = located_in(&["a"]);
        let err = first_good_copy(&located, "restore", &silent(), |_| -> Result<()> {
            Err(damaged())
        })
        .unwrap_err();
        assert_eq!(err.to_string(), damaged().to_string());
    }

    #[test]
    fn when_every_copy_fails_damage_stays_damage_and_the_others_are_named() {
        let located = located_in(&["a", "b"]);
        let err = first_good_copy(&located, "restore", &silent(), |d| -> Result<()> {
            if d.name() == "a" {
                Err(Error::storage(
                    "a",
                    StorageKind::Transient,
                    "connection reset by peer",
                ))
            } else {
                Err(damaged())
            }
        })
        .unwrap_err();
        assert_eq!(err.storage_kind(), Some(StorageKind::Damaged));
        insta::assert_snapshot!("no_good_copy", err.to_string());
    }

    #[test]
    fn a_note_from_the_client_keeps_the_kind_so_the_next_copy_is_still_tried() {
        let noted = with_note(damaged(), "; `pg_restore` said: unexpected end of input");
        assert_eq!(noted.storage_kind(), Some(StorageKind::Damaged));
        assert!(
            noted
                .to_string()
                .ends_with("`pg_restore` said: unexpected end of input")
        );
        let noted = with_note(Error::storage("a", StorageKind::Transient, "reset"), "; x");
        assert_eq!(noted.storage_kind(), Some(StorageKind::Transient));
        assert_eq!(
            next_after(&with_note(Error::Crypto("no key".into()), "; x")),
            Next::Stop
        );
    }

    #[test]
    fn the_warning_names_the_destination_and_the_kind() {
        insta::assert_snapshot!(
            "moved_on_damaged",
            moved_on("local", StorageKind::Damaged, &damaged())
        );
        insta::assert_snapshot!(
            "moved_on_denied",
            moved_on(
                "offsite",
                StorageKind::Denied,
                &Error::storage(
                    "offsite",
                    StorageKind::Denied,
                    "cannot read app/app-1.db.zst: AccessDenied"
                )
            )
        );
    }
}
