//! SQLite backups are one consistent snapshot, even while the application keeps
//! writing: in WAL mode the writer goes on during the backup, in rollback-journal
//! mode it waits (busy_timeout) and then goes on. A WAL that was never
//! checkpointed is part of the snapshot. And a host holding only age recipients
//! verifies what it can and refuses to restore.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use common::{Env, stderr, stdout};
use predicates::prelude::*;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

/// Rows in `bulk`; with 400-byte random payloads the database is about 45 MB,
/// enough for the backup to take a while and so overlap the writer.
const BULK_ROWS: i64 = 100_000;
const LINES_PER_ORDER: i64 = 3;

/// A database whose invariants hold in every committed state and break in any
/// torn copy: each writer transaction adds one order and its lines, bumps the
/// totals and rewrites one `bulk` row somewhere in the file (its `gen` goes up).
fn create_db(path: &Path, journal_mode: &str) {
    let mut conn = Connection::open(path).unwrap();
    let mode: String = conn
        .query_row(&format!("PRAGMA journal_mode = {journal_mode}"), [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(mode, journal_mode.to_lowercase());
    conn.execute_batch(
        "PRAGMA foreign_keys = ON;
         CREATE TABLE bulk (id INTEGER PRIMARY KEY, gen INTEGER NOT NULL, payload BLOB NOT NULL);
         CREATE TABLE orders (id INTEGER PRIMARY KEY, created TEXT NOT NULL, note TEXT);
         CREATE TABLE order_lines (id INTEGER PRIMARY KEY,
             order_id INTEGER NOT NULL REFERENCES orders(id), qty INTEGER NOT NULL, payload BLOB);
         CREATE INDEX order_lines_order ON order_lines(order_id);
         CREATE TABLE totals (id INTEGER PRIMARY KEY CHECK (id = 1),
             orders INTEGER NOT NULL, lines INTEGER NOT NULL);
         INSERT INTO totals VALUES (1, 0, 0);",
    )
    .unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare("INSERT INTO bulk (id, gen, payload) VALUES (?1, 0, randomblob(400))")
            .unwrap();
        for id in 1..=BULK_ROWS {
            insert.execute([id]).unwrap();
        }
    }
    tx.commit().unwrap();
    if journal_mode == "WAL" {
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
    }
    let size = std::fs::metadata(path).unwrap().len();
    assert!(size > 40_000_000, "database is only {size} bytes");
}

struct WriterLog {
    /// (order id, when its commit had returned), in commit order.
    commits: Vec<(i64, SystemTime)>,
    /// The longest a single transaction took, waits included.
    longest: Duration,
    errors: Vec<String>,
}

struct Writer {
    stop: Arc<AtomicBool>,
    committed: Arc<Mutex<i64>>,
    handle: JoinHandle<WriterLog>,
}

impl Writer {
    /// An application writing small transactions continuously, on its own
    /// connection, waiting on locks up to its busy_timeout.
    fn start(db: &Path) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(Mutex::new(0));
        let db = db.to_path_buf();
        let handle = {
            let stop = stop.clone();
            let committed = committed.clone();
            std::thread::spawn(move || {
                let mut log = WriterLog {
                    commits: Vec::new(),
                    longest: Duration::ZERO,
                    errors: Vec::new(),
                };
                let mut conn = Connection::open(&db).unwrap();
                conn.busy_timeout(Duration::from_secs(30)).unwrap();
                conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
                let mut n: i64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let started = Instant::now();
                    match write_order(&mut conn, n) {
                        Ok(id) => {
                            log.commits.push((id, SystemTime::now()));
                            *committed.lock().unwrap() = id;
                        }
                        Err(e) => {
                            log.errors.push(e.to_string());
                            break;
                        }
                    }
                    log.longest = log.longest.max(started.elapsed());
                    std::thread::sleep(Duration::from_micros(500));
                }
                log
            })
        };
        Writer {
            stop,
            committed,
            handle,
        }
    }

    fn wait_for_commits(&self, at_least: i64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while *self.committed.lock().unwrap() < at_least {
            assert!(Instant::now() < deadline, "the writer does not commit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn stop(self) -> WriterLog {
        self.stop.store(true, Ordering::Relaxed);
        let log = self.handle.join().expect("writer thread");
        assert!(log.errors.is_empty(), "writer failed: {:?}", log.errors);
        log
    }
}

fn write_order(conn: &mut Connection, n: i64) -> rusqlite::Result<i64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO orders (created, note) VALUES (strftime('%Y-%m-%dT%H:%M:%f', 'now'), ?1)",
        [format!("order {n}")],
    )?;
    let id = tx.last_insert_rowid();
    for qty in 1..=LINES_PER_ORDER {
        tx.execute(
            "INSERT INTO order_lines (order_id, qty, payload) VALUES (?1, ?2, randomblob(100))",
            (id, qty),
        )?;
    }
    tx.execute(
        "UPDATE totals SET orders = orders + 1, lines = lines + ?1 WHERE id = 1",
        [LINES_PER_ORDER],
    )?;
    // Rows far apart in the file, so that pages all over it change.
    let row = 1 + (n * 7919) % BULK_ROWS;
    tx.execute(
        "UPDATE bulk SET gen = gen + 1, payload = randomblob(400) WHERE id = ?1",
        [row],
    )?;
    tx.commit()?;
    Ok(id)
}

/// Committed orders, as another connection sees them now.
fn committed_orders(db: &Path) -> i64 {
    let conn = Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    conn.query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
        .unwrap()
}

fn manifest_of(env: &Env, entry: &serde_json::Value) -> serde_json::Value {
    let data = env.data_path(entry);
    let path = data.parent().unwrap().join(format!(
        "{}-{}.manifest.json",
        entry["job"].as_str().unwrap(),
        entry["id"].as_str().unwrap()
    ));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn age_job(env: &Env, db: &str) {
    let (_, recipient) = env.keygen("identity.txt");
    env.write_config(&env.single_job_config(
        &format!(r#"{{ kind = "sqlite", path = "{db}" }}"#),
        &format!(
            r#"{{ kind = "age", recipients = ["{recipient}"], identity_file = "identity.txt" }}"#
        ),
    ));
}

fn restore_to(env: &Env, target: &Path) {
    let out = env
        .cairn()
        .args(["restore", "app", "--to"])
        .arg(target)
        .output()
        .unwrap();
    assert!(out.status.success(), "restore failed: {}", stderr(&out));
}

/// Opens a restored file without letting SQLite create anything beside it.
fn open_restored(path: &Path) -> Connection {
    Connection::open_with_flags(
        format!("file:{}?immutable=1", path.display()),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    )
    .unwrap()
}

fn query_i64(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Sound, consistent, and exactly the snapshot the manifest describes; returns
/// the number of orders in it.
fn assert_consistent_snapshot(restored: &Path, manifest: &serde_json::Value) -> i64 {
    let conn = open_restored(restored);
    let integrity: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(integrity, vec!["ok".to_string()]);
    let fk_violations: i64 = conn
        .prepare("PRAGMA foreign_key_check")
        .unwrap()
        .query_map([], |_| Ok(()))
        .unwrap()
        .count() as i64;
    assert_eq!(fk_violations, 0, "foreign_key_check found violations");

    let orders = query_i64(&conn, "SELECT count(*) FROM orders");
    let lines = query_i64(&conn, "SELECT count(*) FROM order_lines");
    assert_eq!(
        lines,
        LINES_PER_ORDER * orders,
        "an order without all its lines"
    );
    assert_eq!(
        query_i64(&conn, "SELECT coalesce(max(id), 0) FROM orders"),
        orders,
        "orders are not a prefix of the writer's commits"
    );
    assert_eq!(query_i64(&conn, "SELECT orders FROM totals"), orders);
    assert_eq!(query_i64(&conn, "SELECT lines FROM totals"), lines);
    assert_eq!(
        query_i64(&conn, "SELECT sum(gen) FROM bulk"),
        orders,
        "bulk rows were copied from a different moment than the orders"
    );

    // The manifest's row counts are this snapshot's, table by table.
    let tables = manifest["source"]["facts"]["tables"]
        .as_object()
        .expect("facts.tables");
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let mut listed: Vec<&String> = tables.keys().collect();
    listed.sort();
    assert_eq!(listed, names.iter().collect::<Vec<_>>());
    for name in &names {
        assert_eq!(
            tables[name].as_i64(),
            Some(query_i64(
                &conn,
                &format!("SELECT count(*) FROM \"{name}\"")
            )),
            "manifest row count of {name}"
        );
    }
    assert_eq!(tables["bulk"].as_i64(), Some(BULK_ROWS));
    orders
}

/// Backs up while the writer runs; returns (orders before, in the snapshot,
/// after, the writer's log, the manifest).
fn backup_under_writes(env: &Env, db: &Path) -> (i64, i64, i64, WriterLog, serde_json::Value) {
    let writer = Writer::start(db);
    writer.wait_for_commits(20);
    let before = committed_orders(db);
    let started = Instant::now();
    let out = env.cairn().args(["backup", "app"]).output().unwrap();
    let backup_took = started.elapsed();
    assert!(out.status.success(), "backup failed: {}", stderr(&out));
    let after = committed_orders(db);
    // Let the writer go on a little after the backup, then stop it.
    writer.wait_for_commits(after + 5);
    let log = writer.stop();

    let entry = env.list().pop().expect("an artifact");
    let manifest = manifest_of(env, &entry);
    let restored = env.path("restored.db");
    restore_to(env, &restored);
    let in_snapshot = assert_consistent_snapshot(&restored, &manifest);
    assert!(
        before <= in_snapshot && in_snapshot <= after,
        "the snapshot holds {in_snapshot} orders, not between {before} (before the backup) and {after} (after it)"
    );
    assert!(
        after > before,
        "the writer committed nothing while the backup ran ({backup_took:?}): the test proves nothing"
    );
    eprintln!(
        "backup took {backup_took:?}; orders before {before}, in snapshot {in_snapshot}, after {after}; writer's longest transaction {:?}",
        log.longest
    );
    (before, in_snapshot, after, log, manifest)
}

#[test]
fn wal_database_snapshot_is_consistent_while_the_application_writes() {
    let env = Env::new();
    let db = env.path("app.db");
    create_db(&db, "WAL");
    age_job(&env, "app.db");
    let (_, in_snapshot, _, log, manifest) = backup_under_writes(&env, &db);
    assert_eq!(manifest["source"]["facts"]["journal_mode"], "wal");

    // The writer was not stopped by the backup: commits that are not in the
    // snapshot returned before the backup had finished.
    let finished: jiff::Timestamp = manifest["finished_at"].as_str().unwrap().parse().unwrap();
    let finished = SystemTime::from(finished);
    let overlapping = log
        .commits
        .iter()
        .filter(|(id, at)| *id > in_snapshot && *at < finished)
        .count();
    assert!(
        overlapping > 0,
        "no commit landed between the snapshot and the end of the backup"
    );
}

#[test]
fn rollback_journal_database_snapshot_is_consistent_while_the_application_writes() {
    let env = Env::new();
    let db = env.path("app.db");
    create_db(&db, "DELETE");
    age_job(&env, "app.db");
    let (_, _, _, log, manifest) = backup_under_writes(&env, &db);
    assert_eq!(manifest["source"]["facts"]["journal_mode"], "delete");
    // The writer waited on the backup's read lock instead of failing.
    assert!(
        log.longest > Duration::from_millis(20),
        "the writer never waited ({:?}): did the backup hold its snapshot?",
        log.longest
    );
    assert!(!env.path("app.db-journal").exists());
}

#[test]
fn a_wal_that_was_never_checkpointed_is_in_the_backup() {
    let env = Env::new();
    let db = env.path("app.db");
    common::create_sample_db(&db, 1_000);
    {
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
    }
    // The application: no automatic checkpoints, and its connection stays open
    // so that nothing checkpoints the WAL on close.
    let mut app = Connection::open(&db).unwrap();
    app.execute_batch("PRAGMA wal_autocheckpoint = 0").unwrap();
    for batch in 0..10 {
        let tx = app.transaction().unwrap();
        for i in 0..2_000 {
            tx.execute(
                "INSERT INTO items (sku, name, quantity, supplier_id) VALUES (?1, ?2, 7, 1)",
                (
                    format!("WAL-{batch}-{i}"),
                    format!("only in the WAL {i} {}", "x".repeat(200)),
                ),
            )
            .unwrap();
        }
        tx.execute(
            "INSERT INTO suppliers (name) VALUES (?1)",
            [format!("wal supplier {batch}")],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let wal = std::fs::metadata(env.path("app.db-wal")).unwrap().len();
    assert!(wal > 4_000_000, "WAL is only {wal} bytes");
    // The main file alone does not have the new rows.
    let main_only = open_restored(&db);
    assert_eq!(query_i64(&main_only, "SELECT count(*) FROM items"), 1_000);
    drop(main_only);

    age_job(&env, "app.db");
    let entry = env.backup("app");
    let manifest = manifest_of(&env, &entry);
    assert_eq!(manifest["source"]["facts"]["tables"]["items"], 21_000);
    assert_eq!(manifest["source"]["facts"]["tables"]["suppliers"], 11);

    let restored = env.path("restored.db");
    restore_to(&env, &restored);
    for suffix in ["-wal", "-shm", "-journal"] {
        let companion = PathBuf::from(format!("{}{suffix}", restored.display()));
        assert!(
            !companion.exists(),
            "{} beside the restored file",
            companion.display()
        );
    }
    // Everything is in the restored file itself (read without any WAL).
    let conn = open_restored(&restored);
    assert_eq!(
        conn.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
            .unwrap(),
        "ok"
    );
    assert_eq!(query_i64(&conn, "SELECT count(*) FROM items"), 21_000);
    assert_eq!(
        query_i64(&conn, "SELECT count(*) FROM items WHERE sku LIKE 'WAL-%'"),
        20_000
    );
    assert_eq!(query_i64(&conn, "SELECT count(*) FROM suppliers"), 11);
    drop(conn);
    // The application's WAL was left alone, and it still sees its rows.
    assert_eq!(query_i64(&app, "SELECT count(*) FROM items"), 21_000);
    assert!(std::fs::metadata(env.path("app.db-wal")).unwrap().len() >= wal);
}

#[test]
fn a_host_without_the_identity_verifies_stored_bytes_only_and_cannot_restore() {
    let env = Env::new();
    common::create_sample_db(&env.path("app.db"), 200);
    let (_, recipient) = env.keygen("identity.txt");
    let with_identity = env.single_job_config(
        r#"{ kind = "sqlite", path = "app.db" }"#,
        &format!(
            r#"{{ kind = "age", recipients = ["{recipient}"], identity_file = "identity.txt" }}"#
        ),
    );
    let recipients_only = env.single_job_config(
        r#"{ kind = "sqlite", path = "app.db" }"#,
        &format!(r#"{{ kind = "age", recipients = ["{recipient}"] }}"#),
    );
    // The backing-up host needs no secret.
    env.write_config(&recipients_only);
    let entry = env.backup("app");

    let out = env.cairn().args(["verify", "app"]).output().unwrap();
    assert!(out.status.success(), "verify failed: {}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("ok") && text.contains("stored bytes only"),
        "{text}"
    );
    assert!(text.contains("identity_file"), "{text}");
    let out = env
        .cairn()
        .args(["verify", "app", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["copies"][0]["ok"], true);
    assert_eq!(report["copies"][0]["depth"], "stored-only");

    let target = env.path("restored.db");
    env.cairn()
        .args(["restore", "app", "--to"])
        .arg(&target)
        .assert()
        .failure()
        .stderr(predicate::str::contains("identity_file"));
    assert!(!target.exists());
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("cairn-restore"))
        .collect();
    assert!(leftovers.is_empty());
    env.cairn()
        .args(["cat", "app"])
        .assert()
        .failure()
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("identity_file"));

    // Stored-only verification still catches damage to the stored bytes.
    let data = env.data_path(&entry);
    let mut bytes = std::fs::read(&data).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&data, &bytes).unwrap();
    env.cairn()
        .args(["verify", "app"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("FAILED"));
    bytes[middle] ^= 0x40;
    std::fs::write(&data, &bytes).unwrap();

    // With the identity the same artifact verifies fully and restores. The
    // failed verification marked it bad, so it is named; verifying it cleanly
    // clears the mark.
    env.write_config(&with_identity);
    let id = entry["id"].as_str().unwrap();
    let out = env
        .cairn()
        .args(["verify", "app", id, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["copies"][0]["depth"], "full");
    restore_to(&env, &target);
    assert_eq!(common::count_rows(&target, "items"), 200);
}
