//! Post-backup verification and restore drills, on real SQLite files, folders,
//! and real PostgreSQL and MariaDB servers started for this test binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use common::servers::{self, PASSWORD, rand_name};
use common::{Env, flip_byte, stderr, stdout};
use serde_json::Value;

/// `cairn ARGS --json`: exit code and parsed stdout.
fn json(env: &Env, args: &[&str]) -> (i32, Value) {
    let out = env
        .cairn()
        .env("DB_PASSWORD", PASSWORD)
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "{args:?}: stdout is not JSON: {}\n{}",
            stdout(&out),
            stderr(&out)
        )
    });
    (out.status.code().unwrap_or(-1), value)
}

fn backup(env: &Env) -> String {
    let (code, value) = json(env, &["backup", "app"]);
    assert_eq!(code, 0, "{value}");
    value[0]["id"].as_str().unwrap().to_string()
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with(name))
        .unwrap_or_else(|| panic!("no check {name} in {report}"))
}

fn scratch_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".cairn-drill-"))
                .collect()
        })
        .unwrap_or_default()
}

fn manifest_path(env: &Env, job: &str, id: &str) -> PathBuf {
    env.path("backups")
        .join(job)
        .join(format!("{job}-{id}.manifest.json"))
}

/// Edits a stored manifest (manifests carry no hash of themselves): used to
/// make the recorded facts disagree with what the artifact restores.
fn edit_manifest(env: &Env, id: &str, edit: impl FnOnce(&mut Value)) {
    let path = manifest_path(env, "app", id);
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut manifest);
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
}

// ---------------------------------------------------------------- SQLite

fn sqlite_env(drill: &str) -> Env {
    let env = Env::new();
    common::create_sample_db(&env.path("app.db"), 300);
    let (_, recipient) = env.keygen("identity.txt");
    env.write_config(&format!(
        "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[jobs.app]\nsource = {{ kind = \"sqlite\", path = \"app.db\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"age\", recipients = [\"{recipient}\"], identity_file = \"identity.txt\" }}\ndrill = {{ scratch_dir = \"scratch\", max_age = \"8d\"{drill} }}\n"
    ));
    env
}

#[test]
fn sqlite_good_artifact_passes_its_drill_and_is_proven_restorable() {
    let env = sqlite_env(
        r#", assert = ["SELECT count(*) = 300 FROM items", "SELECT count(*) > 0 FROM suppliers"], expect_tables = ["items", "suppliers"]"#,
    );
    let id = backup(&env);
    let (code, status) = json(&env, &["status", "app"]);
    assert_eq!(code, 0);
    assert_eq!(
        status["jobs"][0]["drill_stale"], true,
        "never drilled: {status}"
    );

    let text = stdout(&env.cairn().arg("status").output().unwrap());
    assert!(
        text.contains("never drilled") && text.contains("STALE"),
        "{text}"
    );
    let (code, report) = json(&env, &["drill", "app"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["id"], id.as_str());
    let text = stdout(&env.cairn().arg("status").output().unwrap());
    assert!(
        text.contains("proven:      restorable") && !text.contains("STALE"),
        "{text}"
    );
    assert_eq!(check(&report, "integrity_check")["detail"], "ok");
    assert_eq!(check(&report, "foreign_key_check")["ok"], true);
    assert_eq!(check(&report, "row counts")["ok"], true);
    assert_eq!(check(&report, "expect_tables")["ok"], true);
    assert_eq!(check(&report, "assert SELECT count(*) = 300")["ok"], true);
    let items = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "items")
        .unwrap();
    assert_eq!(
        (items["recorded"].as_i64(), items["restored"].as_i64()),
        (Some(300), Some(300))
    );
    assert!(report["restore_seconds"].as_f64().unwrap() > 0.0);
    assert!(report["restored_bytes"].as_u64().unwrap() > 4096);
    assert_eq!(report["cleaned_up"], true);
    assert!(
        scratch_entries(&env.path("scratch")).is_empty(),
        "scratch file left behind"
    );

    let (_, status) = json(&env, &["status", "app"]);
    let job = &status["jobs"][0];
    assert_eq!(job["proven"]["artifact_id"], id.as_str(), "{job}");
    assert!(job["proven"]["restore_seconds"].as_f64().is_some());
    assert_eq!(job["drill_stale"], false);
    let (code, history) = json(&env, &["history", "app", "--kind", "drill"]);
    assert_eq!(code, 0);
    assert_eq!(history[0]["status"], "success", "{history}");
    assert_eq!(history[0]["bytes"], report["restored_bytes"]);
    let (code, integrity) = json(&env, &["report"]);
    assert_eq!(code, 0, "{integrity}");
    assert_eq!(integrity["jobs"][0]["last_drill"]["status"], "success");
    assert_eq!(
        integrity["jobs"][0]["last_verification"]["status"],
        "success"
    );
}

#[test]
fn flipped_byte_fails_verification_and_the_bad_artifact_is_skipped() {
    let env = sqlite_env("");
    let good = backup(&env);
    let bad = backup(&env);
    let entry = env
        .list()
        .into_iter()
        .find(|e| e["id"] == bad.as_str())
        .unwrap();
    flip_byte(&env.data_path(&entry));

    let (code, report) = json(&env, &["verify", "app"]);
    assert_eq!(code, 1, "{report}");
    assert!(
        report["copies"][0]["error"]
            .as_str()
            .unwrap()
            .contains("SHA-256"),
        "{report}"
    );
    // Marked bad: never the newest good one, never chosen without --allow-bad.
    let (_, status) = json(&env, &["status", "app"]);
    assert_eq!(
        status["jobs"][0]["newest_good"]["id"],
        good.as_str(),
        "{status}"
    );
    let (code, report) = json(&env, &["drill", "app"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["id"], good.as_str());
    let out = env
        .cairn()
        .args(["restore", "app", &bad, "--to"])
        .arg(env.path("out.db"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("marked bad"), "{}", stderr(&out));
    assert!(!env.path("out.db").exists());
    // --allow-bad reads it, and the damage still stops the drill.
    let (code, report) = json(&env, &["drill", "app", &bad, "--allow-bad"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["damaged"], true);
    assert_eq!(report["cleaned_up"], true);
    assert!(scratch_entries(&env.path("scratch")).is_empty());
    // The newest restorable one is restored.
    let out = env
        .cairn()
        .args(["restore", "app", "--to"])
        .arg(env.path("out.db"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(common::count_rows(&env.path("out.db"), "items"), 300);
}

#[test]
fn post_backup_verification_follows_the_job_setting() {
    let env = sqlite_env("");
    let (code, value) = json(&env, &["backup", "app"]);
    assert_eq!(code, 0);
    assert_eq!(
        value[0]["verification"]["copies"][0]["depth"], "full",
        "{value}"
    );
    let (_, history) = json(&env, &["history", "app", "--kind", "verify"]);
    assert_eq!(history[0]["status"], "success", "{history}");

    let config = std::fs::read_to_string(env.config_path()).unwrap();
    env.write_config(&config.replace("[jobs.app]\n", "[jobs.app]\nverify = \"quick\"\n"));
    let (code, value) = json(&env, &["backup", "app"]);
    assert_eq!(code, 0);
    let copy = &value[0]["verification"]["copies"][0];
    assert_eq!(copy["depth"], "stored-only", "{value}");
    assert!(copy["note"].as_str().unwrap().contains("quick"));

    env.write_config(&config.replace("[jobs.app]\n", "[jobs.app]\nverify = \"off\"\n"));
    let (code, value) = json(&env, &["backup", "app"]);
    assert_eq!(code, 0);
    assert!(value[0].get("verification").is_none(), "{value}");

    // Without the identity, a full verification checks the stored bytes and says so.
    let no_identity = config.replace(", identity_file = \"identity.txt\"", "");
    env.write_config(&no_identity);
    let (code, value) = json(&env, &["backup", "app"]);
    assert_eq!(code, 0);
    let copy = &value[0]["verification"]["copies"][0];
    assert_eq!(copy["depth"], "stored-only", "{value}");
    assert!(
        copy["note"].as_str().unwrap().contains("identity_file"),
        "{value}"
    );
    // A drill needs the identity, and says where to run it.
    let out = env.cairn().args(["drill", "app"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("run it on a host that holds the key"),
        "{}",
        stderr(&out)
    );
    assert!(scratch_entries(&env.path("scratch")).is_empty());
}

#[test]
fn sqlite_assertion_failure_fails_the_drill_but_the_artifact_stays_good() {
    let env = sqlite_env(r#", assert = ["SELECT count(*) = 0 FROM items WHERE quantity > 50"]"#);
    let id = backup(&env);
    let (code, report) = json(&env, &["drill", "app"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["ok"], false);
    assert_eq!(report["damaged"], false);
    let failed = check(&report, "assert");
    assert_eq!(failed["ok"], false);
    assert!(
        failed["detail"].as_str().unwrap().contains("not true"),
        "{failed}"
    );
    assert_eq!(check(&report, "integrity_check")["ok"], true);
    assert!(scratch_entries(&env.path("scratch")).is_empty());
    let (_, status) = json(&env, &["status", "app"]);
    assert_eq!(status["jobs"][0]["newest_good"]["id"], id.as_str());
    assert!(status["jobs"][0].get("proven").is_none(), "{status}");
    let (code, integrity) = json(&env, &["report"]);
    assert_eq!(code, 1);
    let problems = integrity["jobs"][0]["problems"].to_string();
    assert!(problems.contains("the last drill failed"), "{problems}");
}

#[test]
fn row_count_comparison_catches_a_restore_that_lost_a_table() {
    let env = sqlite_env(", row_count_tolerance = 0.05");
    let id = backup(&env);
    edit_manifest(&env, &id, |m| {
        m["source"]["facts"]["tables"]["orders"] = 40.into();
    });
    let (code, report) = json(&env, &["drill", "app"]);
    assert_eq!(code, 1, "{report}");
    let rows = check(&report, "row counts");
    assert_eq!(rows["ok"], false);
    assert!(
        rows["detail"]
            .as_str()
            .unwrap()
            .contains("orders is missing"),
        "{rows}"
    );
    // A count beyond the tolerance fails too; within it passes.
    edit_manifest(&env, &id, |m| {
        m["source"]["facts"]["tables"]
            .as_object_mut()
            .unwrap()
            .remove("orders");
        m["source"]["facts"]["tables"]["items"] = 330.into();
    });
    let (code, report) = json(&env, &["drill", "app"]);
    assert_eq!(code, 1);
    assert!(
        check(&report, "row counts")["detail"]
            .as_str()
            .unwrap()
            .contains("items has 300 rows, recorded 330")
    );
    edit_manifest(&env, &id, |m| {
        m["source"]["facts"]["tables"]["items"] = 310.into()
    });
    let (code, report) = json(&env, &["drill", "app"]);
    assert_eq!(code, 0, "{report}");
}

/// Waits for `ready`, failing after `secs`.
fn wait_for(secs: u64, what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < Duration::from_secs(secs), "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `cairn drill app` in the background with `sleep` for the slow assertion.
fn spawn_drill(env: &Env, sleep: &str) -> std::process::Child {
    StdCommand::new(assert_cmd::cargo::cargo_bin("cairn"))
        .current_dir(env.dir.path())
        .arg("--config")
        .arg(env.config_path())
        .args(["drill", "app"])
        .env("DB_PASSWORD", PASSWORD)
        .env("DRILL_SLEEP", sleep)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn sqlite_drill_killed_with_sigkill_leaves_a_scratch_file_that_the_next_drill_removes() {
    // A slow assertion keeps the drill busy after the restore.
    let env = sqlite_env(
        r#", assert = ["WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${DRILL_SLEEP:-0}) SELECT count(*) > 0 FROM c"]"#,
    );
    backup(&env);
    let scratch = env.path("scratch");
    let mut child = spawn_drill(&env, "2000000000");
    wait_for(30, "the drill did not restore its scratch file", || {
        scratch_entries(&scratch)
            .iter()
            .any(|n| n.ends_with(".sqlite"))
    });
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let left = scratch_entries(&scratch);
    assert_eq!(
        left.len(),
        1,
        "the killed drill leaves its scratch file: {left:?}"
    );
    let (code, report) = json_with(&env, &["drill", "app"], "10");
    assert_eq!(code, 0, "{report}");
    assert!(
        report["leftovers_removed"].to_string().contains(&left[0]),
        "{report}"
    );
    assert!(scratch_entries(&scratch).is_empty());
}

fn json_with(env: &Env, args: &[&str], sleep: &str) -> (i32, Value) {
    let out = env
        .cairn()
        .env("DB_PASSWORD", PASSWORD)
        .env("DRILL_SLEEP", sleep)
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("not JSON: {}\n{}", stdout(&out), stderr(&out)));
    (out.status.code().unwrap_or(-1), value)
}

// ---------------------------------------------------------------- folders

#[test]
fn folder_drill_checks_count_size_and_every_file_hash() {
    let env = Env::new();
    let data = env.path("data");
    std::fs::create_dir_all(data.join("sub/deeper")).unwrap();
    std::fs::write(data.join("a.txt"), "alpha").unwrap();
    std::fs::write(data.join("sub/b.bin"), vec![7u8; 100_000]).unwrap();
    std::fs::write(data.join("sub/deeper/c.txt"), "gamma").unwrap();
    std::os::unix::fs::symlink("a.txt", data.join("link")).unwrap();
    let config = env.single_job_config(
        r#"{ kind = "files", path = "data" }"#,
        r#"{ kind = "none" }"#,
    );
    env.write_config(&format!(
        "{config}drill = {{ scratch_dir = \"scratch\" }}\n"
    ));
    let id = backup(&env);
    assert_eq!(drill_finding(&env)["level"], "ok");
    let (code, report) = json(&env, &["drill", "app"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        check(&report, "file count")["detail"],
        "3 files restored, 3 backed up"
    );
    assert_eq!(check(&report, "total size")["ok"], true);
    assert_eq!(check(&report, "file hashes")["ok"], true);
    assert_eq!(report["restored_bytes"], 100_010);
    assert!(scratch_entries(&env.path("scratch")).is_empty());

    // Recorded hashes that the restore does not reproduce name the file.
    edit_manifest(&env, &id, |m| {
        let facts = &mut m["source"]["facts"];
        facts["tree_sha256"] = "0".repeat(64).into();
        facts["file_hashes"][1]["sha256"] = "0".repeat(64).into();
    });
    let (code, report) = json(&env, &["drill", "app"]);
    assert_eq!(code, 1, "{report}");
    let hashes = check(&report, "file hashes");
    assert!(
        hashes["detail"]
            .as_str()
            .unwrap()
            .contains("sub/b.bin differs"),
        "{hashes}"
    );
    assert_eq!(report["damaged"], true);
    assert!(scratch_entries(&env.path("scratch")).is_empty());
}

#[test]
fn drill_settings_are_checked_with_their_position() {
    let env = sqlite_env(", row_count_tolerance = 1.5");
    let out = env.cairn().args(["drill", "app"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("cairn.toml:") && err.contains("row_count_tolerance"),
        "{err}"
    );
    let env = sqlite_env(r#", url = "postgres://x@127.0.0.1/db""#);
    let out = env.cairn().args(["drill", "app"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("drill.url"), "{}", stderr(&out));
    let env = sqlite_env(r#", cron = "0 5 * * *""#);
    let config = cairn::config::Config::load(&env.config_path()).unwrap();
    let entries = cairn::schedule::entries(&config);
    let drill = entries
        .iter()
        .find(|e| e.key.starts_with("drill:app:"))
        .expect("a scheduled drill");
    assert_eq!(drill.args, ["drill", "app"]);
    let (code, status) = json(&env, &["status", "app"]);
    assert_eq!(code, 0);
    let schedule = &status["jobs"][0]["drill_schedule"];
    assert_eq!(schedule["cron"], "0 5 * * *", "{status}");
    assert!(
        schedule["next_run"]
            .as_str()
            .unwrap()
            .ends_with("05:00:00Z"),
        "{status}"
    );
}

// ---------------------------------------------------------------- PostgreSQL

const PG_SCHEMA: &str = r#"
CREATE TABLE suppliers (id serial PRIMARY KEY, name text NOT NULL UNIQUE);
CREATE TABLE items (id bigserial PRIMARY KEY, sku text NOT NULL UNIQUE, name text NOT NULL,
    quantity integer NOT NULL, supplier_id integer REFERENCES suppliers(id));
CREATE INDEX items_supplier ON items(supplier_id);
INSERT INTO suppliers (name) VALUES ('Grüße GmbH'), ('東京商事');
INSERT INTO items (sku, name, quantity, supplier_id)
  SELECT 'SKU-' || g, 'Item ' || g, g % 50, 1 + g % 2 FROM generate_series(1, 2000) g;
ANALYZE;
"#;

fn pg_env(drill: &str) -> (Env, String) {
    let pg = servers::postgres();
    let db = rand_name();
    pg.create_db(&db);
    pg.script(&db, PG_SCHEMA);
    let env = Env::new();
    let (_, recipient) = env.keygen("identity.txt");
    env.write_config(&format!(
        "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[jobs.app]\nsource = {{ kind = \"postgres\", url = \"{}\", password_env = \"DB_PASSWORD\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"age\", recipients = [\"{recipient}\"], identity_file = \"identity.txt\" }}\ndrill = {{ max_age = \"1d\"{drill} }}\n",
        pg.url_without_password(&db)
    ));
    (env, db)
}

fn pg_exists(db: &str) -> bool {
    servers::postgres().sql(
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{db}'"),
    ) == "1"
}

fn drill_finding(env: &Env) -> Value {
    let (_, checked) = json(env, &["check"]);
    checked["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["subject"] == "job `app` drill")
        .cloned()
        .unwrap_or_else(|| panic!("no drill finding: {checked}"))
}

fn scratch_db(report: &Value) -> String {
    report["target"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn postgres_good_artifact_passes_its_drill_and_the_scratch_database_is_dropped() {
    let (env, _db) = pg_env(
        r#", assert = ["SELECT count(*) = 2000 FROM items", "SELECT bool_and(quantity >= 0) FROM items"], expect_tables = ["items", "public.suppliers"]"#,
    );
    let id = backup(&env);
    let (code, report) = json(&env, &["drill", "app"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["id"], id.as_str());
    let name = scratch_db(&report);
    assert!(name.starts_with("cairn_drill_app_"), "{name}");
    assert!(!pg_exists(&name), "scratch database {name} was not dropped");
    let finding = drill_finding(&env);
    assert_eq!(finding["level"], "ok", "{finding}");
    assert!(
        finding["message"]
            .as_str()
            .unwrap()
            .contains("may create scratch databases")
    );
    assert!(!report["target"].as_str().unwrap().contains(PASSWORD));
    assert_eq!(check(&report, "indexes")["ok"], true);
    assert_eq!(check(&report, "row counts")["ok"], true, "{report}");
    let items = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "public.items")
        .unwrap();
    assert_eq!(items["restored"], 2000);
    assert_eq!(items["recorded"], 2000, "the manifest counts rows exactly");
    assert!(report["restored_bytes"].as_u64().unwrap() > 100_000);
    eprintln!(
        "postgres drill: restore {:.2}s, total {:.2}s, {} bytes",
        report["restore_seconds"], report["total_seconds"], report["restored_bytes"]
    );
}

#[test]
fn postgres_dump_that_breaks_an_assertion_fails_its_drill() {
    let (env, db) = pg_env(r#", assert = ["SELECT count(*) = 0 FROM items WHERE quantity < 0"]"#);
    servers::postgres().sql(&db, "UPDATE items SET quantity = -1 WHERE id <= 3");
    let id = backup(&env);
    let (code, report) = json(&env, &["drill", "app"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["damaged"], false);
    assert!(
        check(&report, "assert")["detail"]
            .as_str()
            .unwrap()
            .contains("\"f\""),
        "{report}"
    );
    assert!(!pg_exists(&scratch_db(&report)));
    let (_, status) = json(&env, &["status", "app"]);
    assert_eq!(status["jobs"][0]["newest_good"]["id"], id.as_str());
    assert_eq!(status["jobs"][0]["drill_stale"], true);
}

#[test]
fn postgres_row_counts_catch_a_restore_that_lost_a_table() {
    let (env, _db) = pg_env("");
    let id = backup(&env);
    edit_manifest(&env, &id, |m| {
        m["source"]["facts"]["tables"]["public.orders"] = 120.into();
    });
    let (code, report) = json(&env, &["drill", "app"]);
    assert_eq!(code, 1, "{report}");
    assert!(
        check(&report, "row counts")["detail"]
            .as_str()
            .unwrap()
            .contains("public.orders is missing"),
        "{report}"
    );
}

#[test]
fn postgres_flipped_byte_fails_verification_and_a_forced_drill() {
    let (env, _db) = pg_env("");
    let id = backup(&env);
    let entry = env
        .list()
        .into_iter()
        .find(|e| e["id"] == id.as_str())
        .unwrap();
    flip_byte(&env.data_path(&entry));
    let (code, _) = json(&env, &["verify", "app"]);
    assert_eq!(code, 1);
    let out = env
        .cairn()
        .env("DB_PASSWORD", PASSWORD)
        .args(["drill", "app"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a bad artifact is not drilled without --allow-bad"
    );
    let (code, report) = json(&env, &["drill", "app", "--allow-bad"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["damaged"], true);
    assert!(
        !pg_exists(&scratch_db(&report)),
        "the scratch database of a failed restore is dropped"
    );
}

#[test]
fn postgres_drill_killed_with_sigkill_leaves_a_scratch_database_that_the_next_drill_drops() {
    let (env, _db) = pg_env(r#", assert = ["SELECT pg_sleep(${DRILL_SLEEP:-0}) IS NOT NULL"]"#);
    backup(&env);
    let pg = servers::postgres();
    let host_tag = mine_host_tag();
    let ours = || {
        pg.sql(
            "postgres",
            "SELECT datname FROM pg_database WHERE datname LIKE 'cairn\\_drill\\_app\\_%' ORDER BY 1",
        )
        .lines()
        .map(str::to_string)
        .filter(|n| n.contains(&host_tag))
        .collect::<Vec<_>>()
    };
    let mut child = spawn_drill(&env, "60");
    let pid = child.id();
    let mine = |names: Vec<String>| {
        names
            .into_iter()
            .filter(|n| n.contains(&format!("_{pid}_")))
            .collect::<Vec<_>>()
    };
    // Wait until the restore is done and the slow assertion runs.
    wait_for(60, "the drill did not reach its assertion", || {
        pg.sql(
            "postgres",
            &format!("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%' AND datname LIKE '%\\_{pid}\\_%'"),
        ) != "0"
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let left = mine(ours());
    assert_eq!(
        left.len(),
        1,
        "the killed drill leaves its scratch database"
    );
    let (code, report) = json_with(&env, &["drill", "app"], "0");
    assert_eq!(code, 0, "{report}");
    // The next drill (this one, or a parallel test's on the same server, which
    // may get there first) drops the leftover.
    assert!(!pg_exists(&left[0]), "the leftover {} was dropped", left[0]);
    assert!(!pg_exists(&scratch_db(&report)));
}

/// The host tag in scratch database names (the library computes the same).
fn mine_host_tag() -> String {
    cairn::drill::host_tag()
}

// ---------------------------------------------------------------- MariaDB

fn my_env(drill: &str) -> (Env, String) {
    let my = servers::mariadb();
    let db = rand_name();
    my.sql(
        "",
        &format!(
            "CREATE DATABASE {db}; USE {db};
             CREATE TABLE suppliers (id INT PRIMARY KEY, name VARCHAR(100) NOT NULL) ENGINE=InnoDB;
             CREATE TABLE items (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100), quantity INT,
                 supplier_id INT, FOREIGN KEY (supplier_id) REFERENCES suppliers(id)) ENGINE=InnoDB;
             INSERT INTO suppliers VALUES (1, 'Grüße'), (2, 'Société');
             INSERT INTO items (name, quantity, supplier_id) SELECT CONCAT('item ', seq), seq % 40, 1 + seq % 2 FROM seq_1_to_500;
             ANALYZE TABLE suppliers, items;"
        ),
    );
    let env = Env::new();
    let (_, recipient) = env.keygen("identity.txt");
    env.write_config(&format!(
        "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[jobs.app]\nsource = {{ kind = \"mysql\", url = \"{}\", password_env = \"DB_PASSWORD\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"age\", recipients = [\"{recipient}\"], identity_file = \"identity.txt\" }}\ndrill = {{ row_count_tolerance = 0.2{drill} }}\n",
        my.url_without_password(&db)
    ));
    (env, db)
}

fn my_exists(db: &str) -> bool {
    servers::mariadb().sql(
        "",
        &format!("SELECT count(*) FROM information_schema.schemata WHERE schema_name = '{db}'"),
    ) == "1"
}

#[test]
fn mariadb_good_artifact_passes_and_a_broken_assertion_fails() {
    let (env, db) = my_env(
        r#", assert = ["SELECT count(*) = 500 FROM items", "SELECT count(*) = 0 FROM items WHERE quantity < 0"], expect_tables = ["items", "suppliers"]"#,
    );
    let good = backup(&env);
    let (code, report) = json(&env, &["drill", "app"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["id"], good.as_str());
    assert_eq!(check(&report, "CHECK TABLE")["ok"], true);
    assert_eq!(check(&report, "row counts")["ok"], true, "{report}");
    let items = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "items")
        .unwrap();
    assert_eq!(
        (items["recorded"].as_i64(), items["restored"].as_i64()),
        (Some(500), Some(500))
    );
    let name = scratch_db(&report);
    assert!(name.starts_with("cairn_drill_app_"), "{name}");
    assert!(!my_exists(&name), "scratch database {name} was not dropped");
    eprintln!(
        "mariadb drill: restore {:.2}s, total {:.2}s, {} bytes",
        report["restore_seconds"], report["total_seconds"], report["restored_bytes"]
    );

    servers::mariadb().sql(&db, "UPDATE items SET quantity = -5 WHERE id = 7");
    let broken = backup(&env);
    let (code, report) = json(&env, &["drill", "app"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["id"], broken.as_str());
    assert_eq!(report["damaged"], false);
    let failed = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["ok"] == false)
        .unwrap();
    assert!(
        failed["name"].as_str().unwrap().contains("quantity < 0"),
        "{failed}"
    );
    assert!(!my_exists(&scratch_db(&report)));
}

#[test]
fn mariadb_lost_table_and_flipped_byte_are_caught() {
    let (env, _db) = my_env("");
    let id = backup(&env);
    edit_manifest(&env, &id, |m| {
        m["source"]["facts"]["tables"]["orders"] = 12.into()
    });
    let (code, report) = json(&env, &["drill", "app"]);
    assert_eq!(code, 1, "{report}");
    assert!(
        check(&report, "row counts")["detail"]
            .as_str()
            .unwrap()
            .contains("orders is missing")
    );

    let entry = env
        .list()
        .into_iter()
        .find(|e| e["id"] == id.as_str())
        .unwrap();
    flip_byte(&env.data_path(&entry));
    let (code, report) = json(&env, &["drill", "app"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["damaged"], true, "{report}");
    assert!(!my_exists(&scratch_db(&report)));
    // Marked bad by the drill: the next drill refuses it without --allow-bad.
    let out = env
        .cairn()
        .env("DB_PASSWORD", PASSWORD)
        .args(["drill", "app"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!stdout(&out).contains("PASSED"));
}

#[test]
fn mariadb_drill_killed_with_sigkill_leaves_a_scratch_database_that_the_next_drill_drops() {
    let (env, _db) = my_env(r#", assert = ["SELECT SLEEP(${DRILL_SLEEP:-0}) = 0"]"#);
    backup(&env);
    let my = servers::mariadb();
    let mut child = spawn_drill(&env, "60");
    let pid = child.id();
    wait_for(60, "the drill did not reach its assertion", || {
        my.sql(
            "",
            &format!("SELECT count(*) FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(60)%' AND db LIKE '%\\_{pid}\\_%'"),
        ) != "0"
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let left: Vec<String> = my
        .sql(
            "",
            &format!("SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'cairn\\_drill\\_app\\_%\\_{pid}\\_%'"),
        )
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        left.len(),
        1,
        "the killed drill leaves its scratch database"
    );
    let (code, report) = json_with(&env, &["drill", "app"], "0");
    assert_eq!(code, 0, "{report}");
    // The next drill (this one, or a parallel test's on the same server, which
    // may get there first) drops the leftover.
    assert!(!my_exists(&left[0]));
}

#[test]
fn postgres_drill_stopped_with_sigterm_drops_its_scratch_database_before_it_exits() {
    let (env, _db) = pg_env(r#", assert = ["SELECT pg_sleep(${DRILL_SLEEP:-0}) IS NOT NULL"]"#);
    backup(&env);
    let pg = servers::postgres();
    let mut child = spawn_drill(&env, "60");
    let pid = child.id();
    wait_for(60, "the drill did not reach its assertion", || {
        pg.sql(
            "postgres",
            &format!("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%' AND datname LIKE '%\\_{pid}\\_%'"),
        ) != "0"
    });
    // SAFETY: signalling the child we started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(!status.success());
    let left = pg.sql(
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname LIKE 'cairn\\_drill\\_app\\_%\\_{pid}\\_%'"),
    );
    assert_eq!(left, "0", "the stopped drill removed its scratch database");
}

#[test]
fn two_destinations_are_verified_after_backup_and_a_drill_uses_the_good_copy() {
    let env = Env::new();
    common::create_sample_db(&env.path("app.db"), 120);
    env.write_config(
        "[destinations.one]\nkind = \"fs\"\npath = \"one\"\n\n[destinations.two]\nkind = \"fs\"\npath = \"two\"\n\n[jobs.app]\nsource = { kind = \"sqlite\", path = \"app.db\" }\ndestinations = [\"one\", \"two\"]\nencryption = { kind = \"none\" }\ndrill = { scratch_dir = \"scratch\" }\n",
    );
    let (code, value) = json(&env, &["backup", "app"]);
    assert_eq!(code, 0, "{value}");
    let copies = value[0]["verification"]["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 2, "{value}");
    assert!(
        copies
            .iter()
            .all(|c| c["ok"] == true && c["depth"] == "full")
    );
    let key = value[0]["manifest"]["data"]["key"].as_str().unwrap();
    flip_byte(&env.path("one").join(key));
    let (code, report) = json(&env, &["drill", "app"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["destination"], "two");
    assert!(scratch_entries(&env.path("scratch")).is_empty());
}

#[test]
fn damage_found_right_after_the_commit_fails_the_backup_and_marks_the_artifact_bad() {
    let env = sqlite_env("");
    // An `after` hook runs between the commit and the verification: it flips
    // one stored byte, as a bad disk or a faulty store would.
    let flip = r#"f=$(ls backups/app/app-$CAIRN_ARTIFACT_ID.sqlite*); b=$(od -An -tu1 -j200 -N1 \"$f\" | tr -d ' '); printf \"\\\\$(printf %o $((b ^ 85)))\" | dd of=\"$f\" bs=1 seek=200 conv=notrunc status=none"#;
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    env.write_config(&format!("{config}hooks = {{ after = [\"{flip}\"] }}\n"));
    let (code, value) = json(&env, &["backup", "app"]);
    assert_eq!(code, 1, "{value}");
    let copy = &value[0]["verification"]["copies"][0];
    assert_eq!(copy["ok"], false, "{value}");
    assert!(
        copy["error"].as_str().unwrap().contains("SHA-256"),
        "{value}"
    );
    let (_, status) = json(&env, &["status", "app"]);
    assert!(status["jobs"][0].get("newest_good").is_none(), "{status}");
    let (_, history) = json(&env, &["history", "app"]);
    let runs: Vec<(&str, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert!(runs.contains(&("verify", "failure")), "{runs:?}");
    assert!(runs.contains(&("backup", "failure")), "{runs:?}");
    let out = env
        .cairn()
        .args(["restore", "app", "--to"])
        .arg(env.path("out.db"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "a bad artifact is not restored");
}

#[test]
fn postgres_drill_on_another_server_leaves_the_source_server_alone() {
    let (env, _db) = pg_env(r#", assert = ["SELECT count(*) = 2000 FROM items"]"#);
    let other = servers::start_postgres();
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    env.write_config(&config.replace(
        "drill = { ",
        &format!("drill = {{ url = \"{}\", ", other.url("postgres")),
    ));
    backup(&env);
    let (code, report) = json(&env, &["drill", "app"]);
    assert_eq!(code, 0, "{report}");
    let target = report["target"].as_str().unwrap();
    assert!(target.contains(&format!(":{}/", other.port)), "{target}");
    assert!(
        !target.contains(PASSWORD) && !target.contains("s3cret"),
        "{target}"
    );
    let name = scratch_db(&report);
    let on_other = other.sql(
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
    );
    assert_eq!(on_other, "0", "dropped on the drill server");
    assert!(!pg_exists(&name));
}

#[test]
fn check_reports_a_scratch_folder_that_cannot_be_used() {
    let env = sqlite_env("");
    std::fs::write(env.path("scratch"), "not a folder").unwrap();
    let finding = drill_finding(&env);
    assert_eq!(finding["level"], "fail", "{finding}");
    assert!(
        finding["message"]
            .as_str()
            .unwrap()
            .contains("drill.scratch_dir")
    );
    let out = env.cairn().args(["drill", "app"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}
