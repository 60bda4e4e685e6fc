//! Shared test harness: a temporary folder with a config, sample data and a
//! `cairn` command bound to that config. Every test gets its own folder, so
//! tests run in parallel.
#![allow(dead_code)]

pub mod cairn_command;
pub mod objstores;
pub mod receivers;
pub mod secrets;
pub mod servers;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use assert_cmd::Command;
use rusqlite::Connection;

use cairn_command::CairnCommand;
use secrets::SecretScan;

/// Set on the crash matrix's own test binary: it is then cairn with this fault
/// point armed (tests/crash_matrix.rs).
pub const FAULT_VAR: &str = "CAIRN_TEST_FAULT_POINT";

/// One test's folder. Everything cairn prints through [`Env::cairn`], and
/// what it stores here (state store, logs, manifests), is checked for the
/// harness's secrets and the test's own ([`Env::register_secret`]).
pub struct Env {
    pub dir: tempfile::TempDir,
    secrets: Arc<Mutex<SecretScan>>,
}

impl Env {
    pub fn new() -> Self {
        Env {
            dir: tempfile::Builder::new()
                .prefix("cairn-test-")
                .tempdir()
                .expect("temp dir"),
            secrets: Arc::new(Mutex::new(SecretScan::with_harness_secrets())),
        }
    }

    /// A secret this test planted: from now on no output of cairn's and
    /// nothing it stores in this folder may contain it.
    pub fn register_secret(&self, secret: &str) {
        self.secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .register(secret);
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn config_path(&self) -> PathBuf {
        self.path("cairn.toml")
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config_path(), text).expect("write config");
    }

    /// `cairn --config <this env's config>`, run in the env's folder, with a
    /// clean environment for cairn's own variables.
    pub fn cairn(&self) -> CairnCommand {
        let mut cmd = Command::cargo_bin("cairn").expect("cairn binary");
        cmd.current_dir(self.dir.path())
            .env_remove("CAIRN_CONFIG")
            .env_remove("CAIRN_LOG")
            .arg("--config")
            .arg(self.config_path());
        CairnCommand::new(cmd, self.secrets.clone())
    }

    /// [`Env::cairn`] as the crash matrix runs it: its own test binary, which
    /// arms the fault point `spec` (see src/fault_point.rs) and runs cairn's
    /// command line when [`FAULT_VAR`] is set.
    pub fn cairn_faulted(&self, spec: &str) -> CairnCommand {
        let mut cmd = Command::new(std::env::current_exe().expect("the test binary"));
        cmd.current_dir(self.dir.path())
            .env_remove("CAIRN_CONFIG")
            .env_remove("CAIRN_LOG")
            .env(FAULT_VAR, spec)
            .arg("--config")
            .arg(self.config_path());
        CairnCommand::new(cmd, self.secrets.clone())
    }

    /// The same as [`Env::cairn`] as a `std::process::Command`, for tests that
    /// spawn cairn and act on it while it runs.
    pub fn cairn_process(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("cairn"));
        cmd.current_dir(self.dir.path())
            .env_remove("CAIRN_CONFIG")
            .env_remove("CAIRN_LOG")
            .arg("--config")
            .arg(self.config_path());
        cmd
    }

    /// Creates an age identity with `cairn keygen`; returns (identity path, recipient).
    pub fn keygen(&self, name: &str) -> (PathBuf, String) {
        let path = self.path(name);
        let out = self
            .cairn()
            .args(["keygen", "--output"])
            .arg(&path)
            .output()
            .expect("keygen");
        assert!(out.status.success(), "keygen failed: {out:?}");
        if let Ok(identity) = std::fs::read_to_string(&path) {
            for line in identity
                .lines()
                .filter(|l| l.starts_with("AGE-SECRET-KEY-"))
            {
                self.register_secret(line);
            }
        }
        let recipient = String::from_utf8(out.stdout)
            .expect("utf8")
            .trim()
            .to_string();
        (path, recipient)
    }

    /// A config with one fs destination `local` at ./backups and one job `app`
    /// with the given source and encryption inline tables.
    pub fn single_job_config(&self, source: &str, encryption: &str) -> String {
        format!(
            "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[jobs.app]\nsource = {source}\ndestinations = [\"local\"]\nencryption = {encryption}\n"
        )
    }

    /// A sqlite job `app` on ./app.db, age-encrypted to a fresh key.
    pub fn sqlite_age_setup(&self, rows: u32) -> (PathBuf, String) {
        create_sample_db(&self.path("app.db"), rows);
        let (identity, recipient) = self.keygen("identity.txt");
        self.write_config(&self.single_job_config(
            r#"{ kind = "sqlite", path = "app.db" }"#,
            &format!(
                r#"{{ kind = "age", recipients = ["{recipient}"], identity_file = "identity.txt" }}"#
            ),
        ));
        (identity, recipient)
    }

    /// `cairn list --json` parsed.
    pub fn list(&self) -> Vec<serde_json::Value> {
        let out = self
            .cairn()
            .args(["list", "--json"])
            .output()
            .expect("list");
        assert!(
            out.status.success(),
            "list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("list --json is JSON")
    }

    /// Runs a backup of `job` and returns the new artifact's list entry.
    pub fn backup(&self, job: &str) -> serde_json::Value {
        let out = self.cairn().args(["backup", job]).output().expect("backup");
        assert!(
            out.status.success(),
            "backup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.list()
            .into_iter()
            .filter(|e| e["job"] == job)
            .max_by_key(|e| e["created_at"].as_str().unwrap_or_default().to_string())
            .expect("an artifact after backup")
    }

    /// Path of an artifact's data object in the `local` destination.
    pub fn data_path(&self, entry: &serde_json::Value) -> PathBuf {
        self.path("backups")
            .join(entry["key"].as_str().expect("key"))
    }
}

impl Drop for Env {
    /// The stored side of the secret scan; skipped when the test already failed.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let scan = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        scan.assert_written_by_cairn(self.dir.path());
    }
}

/// A WAL-mode database with a few related tables, indexes and non-ASCII text.
pub fn create_sample_db(path: &Path, rows: u32) {
    let mut conn = Connection::open(path).expect("open sample db");
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE IF NOT EXISTS suppliers (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
         CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, sku TEXT UNIQUE, name TEXT,
             quantity INTEGER CHECK (quantity >= 0), supplier_id INTEGER REFERENCES suppliers(id));
         CREATE INDEX IF NOT EXISTS items_supplier ON items(supplier_id);",
    )
    .expect("schema");
    let tx = conn.transaction().expect("tx");
    tx.execute(
        "INSERT OR IGNORE INTO suppliers (id, name) VALUES (1, 'Acme Ümlaut')",
        [],
    )
    .expect("supplier");
    for i in 0..rows {
        tx.execute(
            "INSERT INTO items (sku, name, quantity, supplier_id) VALUES (?1, ?2, ?3, 1)",
            (
                format!("SKU-{i:08}-{}", rand_suffix()),
                format!("item {i} — naïve café"),
                i % 100,
            ),
        )
        .expect("insert");
    }
    tx.commit().expect("commit");
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Row count of a table in a database file.
pub fn count_rows(path: &Path, table: &str) -> i64 {
    let conn = Connection::open(path).expect("open");
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .expect("count")
}

pub fn integrity(path: &Path) -> String {
    let conn = Connection::open(path).expect("open");
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check")
}

/// Flips one byte in the middle of a file; its size stays the same.
pub fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether an external tool is on PATH; tests that need it fail loudly when it
/// is missing, because `.ci/run` installs it.
pub fn require_tool(name: &str) {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{name}` is not installed: run .ci/install-deps (or `scripts/test`)"
    );
}

/// Sets a path's mtime (and atime) without following symlinks.
pub fn set_mtime(path: &Path, secs: i64) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let t = libc::timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: valid NUL-terminated path and a two-element timespec array.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0, "utimensat {}", path.display());
}

/// A folder `data` in the env holding one file `blob.bin` of `bytes` random bytes.
pub fn random_data_folder(env: &Env, bytes: u64) -> PathBuf {
    let data = env.path("data");
    std::fs::create_dir(&data).expect("data folder");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c {bytes} /dev/urandom > '{}/blob.bin'",
            data.display()
        ))
        .status()
        .expect("head");
    assert!(status.success());
    data
}

/// Asserts that a restored copy holds orders and their lines from one snapshot:
/// the writer of the snapshot tests adds each order with exactly 3 lines.
pub fn assert_one_snapshot(count_rows: impl Fn(&str) -> i64) {
    let orders = count_rows("orders");
    let lines = count_rows("order_lines");
    assert!(orders > 0);
    assert_eq!(
        lines,
        orders * 3,
        "orders and their lines come from one snapshot"
    );
}
