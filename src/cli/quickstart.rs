//! `cairn quickstart`: a sample SQLite database backed up to a local folder,
//! verified, restored into a new file and compared with the original.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use sha2::Digest as _;

use crate::config::Config;
use crate::engine::{self, Selector, backup, restore, runs, verify};
use crate::state::{RunKind, Trigger};
use crate::{Error, Result, keys};

use super::{Context, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder for the sample database, key, config and backups
    #[arg(long, default_value = "cairn-quickstart")]
    dir: PathBuf,
    /// Rows in the sample items table
    #[arg(long, default_value_t = 20_000)]
    rows: u32,
}

fn run_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Run(format!("{what}: {e}"))
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    let dir = std::path::absolute(&args.dir).unwrap_or(args.dir.clone());
    crate::store::fs::ensure_dir(&dir)
        .map_err(|e| run_err(&format!("cannot create {}", dir.display()), e))?;
    let db = dir.join("inventory.db");
    let identity = dir.join("identity.txt");
    let config_path = dir.join("cairn.toml");
    let say = |line: String| {
        if !context.json {
            println!("{line}");
        }
    };

    if !db.exists() {
        create_sample(&db, args.rows)
            .map_err(|e| run_err("cannot create the sample database", e))?;
        say(format!(
            "1. created a sample SQLite database {} ({} items)",
            db.display(),
            args.rows
        ));
    } else {
        say(format!(
            "1. using the sample database {} from an earlier quickstart (delete {} to start over)",
            db.display(),
            dir.display()
        ));
    }
    let recipient = if identity.exists() {
        recipient_of(&identity)?
    } else {
        let key = keys::generate();
        keys::write_identity(&identity, &key)?;
        key.recipient
    };
    say(format!(
        "2. age identity {} (recipient {recipient})",
        identity.display()
    ));
    if !config_path.exists() {
        std::fs::write(&config_path, quickstart_config(&recipient))
            .map_err(|e| run_err("cannot write the config", e))?;
    }
    say(format!("3. config {}", config_path.display()));

    let config = Config::load(&config_path)?;
    let job = config.job("inventory")?;
    let store = crate::state::open_or_warn(&config);
    let store = store.as_deref();
    let destinations = engine::destinations_of(&config, job, None)?;
    let report = runs::recorded(store, &job.name, RunKind::Backup, Trigger::Manual, || {
        backup::backup(
            job,
            &destinations,
            &backup::BackupOptions::default(),
            output::progress(context.progress),
        )
    })?;
    say(format!(
        "4. backed up {} → {} ({} stored, zstd + age) in {:.2}s",
        output::bytes(report.manifest.plaintext.size),
        dir.join("backups")
            .join(&report.manifest.data.key)
            .display(),
        output::bytes(report.manifest.data.size),
        report.duration.as_secs_f64()
    ));
    let artifacts = crate::store::open(&config, "local")
        .and_then(|dest| crate::store::catalog::list_job(dest.as_ref(), &job.name))
        .map(|listing| listing.artifacts.len())
        .unwrap_or(1);
    if artifacts > 1 {
        say(format!(
            "   (this folder now holds {artifacts} artifacts: each quickstart adds one)"
        ));
    }

    let selector = Selector {
        id: Some(report.id.clone()),
        ..Selector::default()
    };
    let located = engine::locate(&config, job, &destinations, &selector)?;
    let verdict = runs::recorded(store, &job.name, RunKind::Verify, Trigger::Manual, || {
        verify::verify(job, &located, output::progress(context.progress))
    })?;
    if !verdict.ok() {
        return Err(Error::Run(format!(
            "verification failed: {:?}",
            verdict.copies
        )));
    }
    say("5. verified: stored SHA-256 and plaintext SHA-256 match the manifest".to_string());

    let restored_dir = dir.join("restored");
    crate::store::fs::ensure_dir(&restored_dir)
        .map_err(|e| run_err("cannot create the restore folder", e))?;
    let target = restored_dir.join(format!("inventory-{}.db", report.id));
    runs::recorded(store, &job.name, RunKind::Restore, Trigger::Manual, || {
        restore::restore(
            job,
            &located,
            &restore::RestoreOptions {
                target: target.clone(),
                force: false,
                replace_open: false,
                check: crate::source::CheckLevel::Full,
            },
            output::progress(context.progress),
        )
    })?;
    let original = Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|conn| fingerprint(&conn))
        .map_err(|e| run_err("cannot read the original", e))?;
    let copy = crate::source::sqlite::open_immutable(&target)
        .and_then(|conn| fingerprint(&conn))
        .map_err(|e| run_err("cannot read the restored copy", e))?;
    if original != copy {
        return Err(Error::Run(
            "the restored database differs from the original".into(),
        ));
    }
    say(format!(
        "6. restored to {}: integrity_check ok, {} tables with identical rows",
        target.display(),
        original.len()
    ));
    say(format!(
        "\nRestore without cairn:\n  age -d -i {} {} | zstd -d > copy.db",
        identity.display(),
        dir.join("backups")
            .join(&report.manifest.data.key)
            .display()
    ));
    let cairn = invoked_as();
    say(format!(
        "\nNext, try (each line is a command):\n  {cairn} --config {0} list\n  {cairn} --config {0} status\n  {cairn} --config {0} history\n  {cairn} --config {0} prune --dry-run\n  {cairn} --config {0} daemon      # runs the schedule; Ctrl-C stops it",
        config_path.display()
    ));
    if context.json {
        output::print_json(&serde_json::json!({
            "backup": report,
            "verified": true,
            "restored_to": target,
            "identical": true,
        }));
    }
    Ok(0)
}

/// How to call this very binary in a pasted command: `cairn` when that is what
/// the PATH finds, else the binary's own path (e.g. ./target/release/cairn
/// after `cargo run`).
fn invoked_as() -> String {
    let me = std::env::current_exe().ok();
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("cairn"))
            .find(|p| p.is_file())
    });
    match (me, on_path) {
        (Some(me), Some(found))
            if std::fs::canonicalize(&me).ok() == std::fs::canonicalize(&found).ok() =>
        {
            "cairn".to_string()
        }
        (Some(me), _) => {
            let shown = std::env::current_dir()
                .ok()
                .and_then(|cwd| me.strip_prefix(cwd).ok().map(|p| Path::new(".").join(p)))
                .unwrap_or(me);
            shown.display().to_string()
        }
        (None, _) => "cairn".to_string(),
    }
}

fn quickstart_config(recipient: &str) -> String {
    format!(
        r#"# Written by `cairn quickstart`. Paths are relative to this file.
[destinations.local]
kind = "fs"
path = "backups"

[jobs.inventory]
source = {{ kind = "sqlite", path = "inventory.db" }}
destinations = ["local"]
compression = "zstd"
encryption = {{ kind = "age", recipients = ["{recipient}"], identity_file = "identity.txt" }}
# `cairn daemon` backs it up at 02:00 UTC and keeps 7 daily, 4 weekly, 12 monthly.
schedules = [{{ cron = "0 2 * * *", tag = "daily" }}]
retention = {{ keep_daily = 7, keep_weekly = 4, keep_monthly = 12 }}
"#
    )
}

fn recipient_of(identity: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(identity).map_err(|e| run_err("cannot read the identity", e))?;
    text.lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .map(str::to_string)
        .ok_or_else(|| {
            Error::Run(format!(
                "{} has no `# public key:` line",
                identity.display()
            ))
        })
}

fn create_sample(path: &Path, rows: u32) -> rusqlite::Result<()> {
    let mut conn = Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE suppliers (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, email TEXT);
         CREATE TABLE items (
             id INTEGER PRIMARY KEY,
             sku TEXT NOT NULL UNIQUE,
             name TEXT NOT NULL,
             quantity INTEGER NOT NULL CHECK (quantity >= 0),
             reorder_level INTEGER NOT NULL DEFAULT 10,
             price_cents INTEGER NOT NULL,
             supplier_id INTEGER REFERENCES suppliers(id),
             updated_at TEXT NOT NULL);
         CREATE INDEX items_supplier ON items(supplier_id);
         CREATE TABLE movements (id INTEGER PRIMARY KEY, item_id INTEGER NOT NULL REFERENCES items(id),
             delta INTEGER NOT NULL, note TEXT, at TEXT NOT NULL);
         CREATE INDEX movements_item ON movements(item_id, at);",
    )?;
    let tx = conn.transaction()?;
    for s in 0..50 {
        tx.execute(
            "INSERT INTO suppliers (name, email) VALUES (?1, ?2)",
            (
                format!("Supplier {s}"),
                format!("orders@supplier{s}.example"),
            ),
        )?;
    }
    for i in 0..rows {
        tx.execute(
            "INSERT INTO items (sku, name, quantity, reorder_level, price_cents, supplier_id, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, datetime('now'))",
            (
                format!("SKU-{i:07}"),
                format!("Item {i} — größe {}", i % 13),
                (i * 7) % 500,
                10 + i % 20,
                100 + (i * 37) % 10_000,
                1 + i % 50,
            ),
        )?;
        tx.execute(
            "INSERT INTO movements (item_id, delta, note, at) VALUES (?1, ?2, ?3, datetime('now'))",
            (i + 1, (i % 11) as i64 - 5, format!("stock count {i}")),
        )?;
    }
    tx.commit()
}

/// Per table: name, row count and a SHA-256 over every row in rowid order.
fn fingerprint(conn: &Connection) -> rusqlite::Result<Vec<(String, i64, String)>> {
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(rusqlite::Error::InvalidQuery);
    }
    let counts = crate::source::sqlite::table_row_counts(conn)?;
    let mut out = Vec::new();
    for (table, rows) in counts {
        let mut stmt = conn.prepare(&format!(
            "SELECT * FROM \"{}\" ORDER BY rowid",
            table.replace('"', "\"\"")
        ))?;
        let columns = stmt.column_count();
        let mut hasher = sha2::Sha256::new();
        let mut rows_iter = stmt.query([])?;
        while let Some(row) = rows_iter.next()? {
            for i in 0..columns {
                let value: rusqlite::types::Value = row.get(i)?;
                hasher.update(format!("{value:?}\u{1f}").as_bytes());
            }
            hasher.update(b"\x1e");
        }
        out.push((
            table,
            rows.as_i64().unwrap_or(-1),
            hex::encode(hasher.finalize()),
        ));
    }
    Ok(out)
}
