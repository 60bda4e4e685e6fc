//! The audit log: recording an entry, and verifying the hash chain page by
//! page (never holding the whole log), naming the first entry that breaks it.

use jiff::Timestamp;
use serde::Serialize;

use crate::Result;
use crate::state::access::AUDIT_GENESIS;
use crate::state::{AuditEntry, NewAudit, StateStore, audit_hash};

/// Entries read per page while verifying.
const PAGE: usize = 1000;

/// Appends an entry (`at` is the caller's clock).
pub fn record(
    store: &dyn StateStore,
    at: Timestamp,
    actor: &str,
    action: &str,
    target: &str,
    address: &str,
    result: &str,
) -> Result<AuditEntry> {
    store.append_audit(&NewAudit {
        at,
        actor: actor.to_string(),
        action: action.to_string(),
        target: target.to_string(),
        address: address.to_string(),
        result: result.to_string(),
    })
}

/// How the chain breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BrokenKind {
    /// Entries before this one are missing (removed).
    Gap,
    /// The entry's fields do not match its hash (edited).
    Edited,
    /// The entry is intact but does not follow the one before it (entries
    /// reordered, or one before it replaced).
    BrokenLink,
}

/// The first entry where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Broken {
    pub seq: i64,
    pub kind: BrokenKind,
    pub message: String,
}

/// The result of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// The last entry's number and hash (0 and empty for an empty log). A
    /// removed tail cannot be seen from inside the log: compare these with a
    /// copy kept elsewhere.
    pub last_seq: i64,
    pub last_hash: String,
    /// `None`: the chain is intact.
    pub broken: Option<Broken>,
}

/// Checks every entry in order: consecutive numbers from 1, each hash
/// matching the entry, each `prev_hash` matching the entry before.
pub fn verify(store: &dyn StateStore) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        entries: 0,
        last_seq: 0,
        last_hash: AUDIT_GENESIS.to_string(),
        broken: None,
    };
    loop {
        let page = store.audit_after(report.last_seq, PAGE)?;
        let Some(last) = page.last() else {
            return Ok(report);
        };
        let full = page.len() == PAGE;
        let last_seq = last.seq;
        for entry in &page {
            if let Some(broken) = check(entry, report.last_seq, &report.last_hash) {
                report.broken = Some(broken);
                return Ok(report);
            }
            report.entries += 1;
            report.last_seq = entry.seq;
            report.last_hash = entry.hash.clone();
        }
        debug_assert_eq!(report.last_seq, last_seq);
        if !full {
            return Ok(report);
        }
    }
}

fn check(entry: &AuditEntry, prev_seq: i64, prev_hash: &str) -> Option<Broken> {
    let seq = entry.seq;
    let broken = |kind, message: String| Some(Broken { seq, kind, message });
    if seq != prev_seq + 1 {
        let missing = if seq == prev_seq + 2 {
            format!("entry {} is missing", prev_seq + 1)
        } else {
            format!("entries {} to {} are missing", prev_seq + 1, seq - 1)
        };
        return broken(BrokenKind::Gap, format!("before entry {seq}: {missing}"));
    }
    if audit_hash(seq, &entry.prev_hash, &entry.entry) != entry.hash {
        return broken(
            BrokenKind::Edited,
            format!("entry {seq} was changed after it was written (its hash does not match)"),
        );
    }
    if entry.prev_hash != prev_hash {
        let before = if prev_seq == 0 {
            "the start of the log".to_string()
        } else {
            format!("entry {prev_seq}")
        };
        return broken(
            BrokenKind::BrokenLink,
            format!("entry {seq} does not follow {before} (entries reordered or replaced)"),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::sqlite::SqliteState;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    /// A store with `n` entries, and a second connection to tamper with it.
    fn log(n: i64) -> (tempfile::TempDir, SqliteState, rusqlite::Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = SqliteState::open(&path).unwrap();
        for i in 1..=n {
            let target = format!("job{i}");
            record(
                &store,
                at(i),
                "cli:ann@host",
                "run.backup",
                &target,
                "",
                "ok",
            )
            .unwrap();
        }
        let conn = rusqlite::Connection::open(&path).unwrap();
        (dir, store, conn)
    }

    #[test]
    fn an_intact_log_verifies_across_pages() {
        let (_dir, store, _conn) = log(PAGE as i64 * 2 + 5);
        let report = verify(&store).unwrap();
        assert_eq!(report.broken, None);
        assert_eq!(report.entries, PAGE as u64 * 2 + 5);
        assert_eq!(report.last_seq, PAGE as i64 * 2 + 5);
        assert_eq!(report.last_hash, store.audit_newest(1).unwrap()[0].hash);

        let (_dir, empty, _conn) = log(0);
        let report = verify(&empty).unwrap();
        assert_eq!((report.entries, report.broken), (0, None));
    }

    #[test]
    fn an_edit_is_found_at_its_entry() {
        let (_dir, store, conn) = log(10);
        conn.execute("UPDATE audit SET result = 'denied' WHERE seq = 7", [])
            .unwrap();
        let broken = verify(&store).unwrap().broken.unwrap();
        assert_eq!((broken.seq, broken.kind), (7, BrokenKind::Edited));
        assert!(broken.message.contains("entry 7"), "{}", broken.message);
    }

    #[test]
    fn a_gap_is_found_after_the_last_intact_entry() {
        let (_dir, store, conn) = log(10);
        conn.execute("DELETE FROM audit WHERE seq IN (4, 5)", [])
            .unwrap();
        let report = verify(&store).unwrap();
        let broken = report.broken.unwrap();
        assert_eq!((broken.seq, broken.kind), (6, BrokenKind::Gap));
        assert!(
            broken.message.contains("entries 4 to 5"),
            "{}",
            broken.message
        );
        assert_eq!(report.entries, 3);

        let (_dir, store, conn) = log(3);
        conn.execute("DELETE FROM audit WHERE seq = 1", []).unwrap();
        let broken = verify(&store).unwrap().broken.unwrap();
        assert_eq!((broken.seq, broken.kind), (2, BrokenKind::Gap));
    }

    #[test]
    fn reordered_entries_are_found() {
        // Swapping the fields of two entries (keeping the numbers) breaks their hashes.
        let (_dir, store, conn) = log(10);
        conn.execute_batch(
            "UPDATE audit SET seq = -3 WHERE seq = 3;
             UPDATE audit SET seq = 3 WHERE seq = 4;
             UPDATE audit SET seq = 4 WHERE seq = -3;",
        )
        .unwrap();
        let broken = verify(&store).unwrap().broken.unwrap();
        assert_eq!(broken.seq, 3);
        assert_ne!(broken.kind, BrokenKind::Gap);
    }

    #[test]
    fn a_rewritten_entry_with_a_fresh_hash_breaks_the_link() {
        // Someone who knows the hash function rewrites entry 5 and its hash:
        // entry 5 now verifies on its own, but entry 6 no longer follows it.
        let (_dir, store, conn) = log(10);
        let mut entry = store.audit_after(4, 1).unwrap().remove(0);
        entry.entry.actor = "user:mallory".into();
        let hash = audit_hash(5, &entry.prev_hash, &entry.entry);
        conn.execute(
            "UPDATE audit SET actor = 'user:mallory', hash = ?1 WHERE seq = 5",
            [hash],
        )
        .unwrap();
        let broken = verify(&store).unwrap().broken.unwrap();
        assert_eq!((broken.seq, broken.kind), (6, BrokenKind::BrokenLink));
        assert!(broken.message.contains("entry 5"), "{}", broken.message);
    }
}
