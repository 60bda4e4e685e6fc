//! Live data validation (`cairn validate`, and before backups) on a real SQLite
//! file and real PostgreSQL and MariaDB servers started for this test binary.

mod common;

use common::servers::{self, PASSWORD, rand_name};
use common::{Env, stderr, stdout};
use serde_json::Value;

fn json(env: &Env, args: &[&str]) -> (i32, Value) {
    let out = env
        .cairn()
        .env("DB_PASSWORD", PASSWORD)
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{args:?}: not JSON: {}\n{}", stdout(&out), stderr(&out)));
    (out.status.code().unwrap_or(-1), value)
}

fn rule<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no rule {name}: {report}"))
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {report}"))
}

fn sqlite_env(validate: &str) -> Env {
    let env = Env::new();
    let conn = rusqlite::Connection::open(env.path("app.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE suppliers (id INTEGER PRIMARY KEY, name TEXT);
         CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, quantity INTEGER,
             supplier_id INTEGER REFERENCES suppliers(id));
         INSERT INTO suppliers VALUES (1, 'Acme');
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50)
         INSERT INTO items (name, quantity, supplier_id) SELECT 'item ' || i, i, 1 FROM n;",
    )
    .unwrap();
    drop(conn);
    env.write_config(&format!(
        "{}validate = {validate}\n",
        env.single_job_config(
            r#"{ kind = "sqlite", path = "app.db" }"#,
            r#"{ kind = "none" }"#
        )
    ));
    env
}

fn sql(env: &Env, statement: &str) {
    rusqlite::Connection::open(env.path("app.db"))
        .unwrap()
        .execute_batch(statement)
        .unwrap();
}

#[test]
fn sqlite_rules_report_offending_rows_and_integrity_checks_run() {
    let env = sqlite_env(
        r#"{ rules = [{ name = "negative stock", sql = "SELECT id, name, quantity FROM items WHERE quantity < 0 ORDER BY id;" }, { name = "nameless", sql = "SELECT id FROM items WHERE name IS NULL" }] }"#,
    );
    let (code, reports) = json(&env, &["validate", "app"]);
    assert_eq!(code, 0, "{reports}");
    assert_eq!(reports[0]["ok"], true);
    assert_eq!(check(&reports[0], "integrity_check")["detail"], "ok");

    sql(
        &env,
        "PRAGMA foreign_keys = OFF;
         UPDATE items SET quantity = -id WHERE id IN (3, 4, 5, 6, 7, 8, 9);
         INSERT INTO items (name, quantity, supplier_id) VALUES ('orphan', 1, 99);",
    );
    let (code, reports) = json(&env, &["validate", "app"]);
    assert_eq!(code, 1, "{reports}");
    let report = &reports[0];
    let negative = rule(report, "negative stock");
    assert_eq!(negative["ok"], false);
    assert_eq!(negative["offending_rows"], 7);
    let first = negative["first_rows"].as_array().unwrap();
    assert_eq!(first.len(), 5, "the first five of seven rows: {negative}");
    assert_eq!(first[0], "3, item 3, -3");
    assert_eq!(rule(report, "nameless")["ok"], true);
    let fk = check(report, "foreign_key_check");
    assert_eq!(fk["ok"], false);
    assert!(
        fk["detail"].as_str().unwrap().contains("items row 51"),
        "{fk}"
    );

    // Human output names the rule, the count and the rows.
    let out = env.cairn().args(["validate", "app"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("negative stock: 7 offending rows"), "{text}");
    assert!(text.contains("3, item 3, -3"), "{text}");
    let (_, history) = json(&env, &["history", "app", "--kind", "validate"]);
    assert_eq!(history[0]["status"], "failure", "{history}");
}

#[test]
fn a_blocking_rule_refuses_the_backup_and_a_warning_rule_does_not() {
    let blocking = r#"{ before_backup = true, rules = [{ name = "negative stock", sql = "SELECT id FROM items WHERE quantity < 0", blocking = true }] }"#;
    let env = sqlite_env(blocking);
    sql(&env, "UPDATE items SET quantity = -1 WHERE id = 10");
    let out = env.cairn().args(["backup", "app"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("refused by validation") && err.contains("negative stock"),
        "{err}"
    );
    assert!(env.list().is_empty(), "nothing may be backed up");
    let (_, history) = json(&env, &["history", "app"]);
    let kinds: Vec<(&str, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert!(kinds.contains(&("validate", "failure")), "{kinds:?}");
    assert!(kinds.contains(&("backup", "failure")), "{kinds:?}");

    env.write_config(
        &std::fs::read_to_string(env.config_path())
            .unwrap()
            .replace("blocking = true", "blocking = false"),
    );
    let out = env.cairn().args(["backup", "app"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.list().len(), 1);

    // Fixed data passes a blocking rule.
    env.write_config(
        &std::fs::read_to_string(env.config_path())
            .unwrap()
            .replace("blocking = false", "blocking = true"),
    );
    sql(&env, "UPDATE items SET quantity = 1 WHERE id = 10");
    let out = env.cairn().args(["backup", "app"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.list().len(), 2);
}

fn pg_env(rules: &str) -> (Env, String) {
    let pg = servers::postgres();
    let db = rand_name();
    pg.create_db(&db);
    pg.script(
        &db,
        "CREATE TABLE items (id serial PRIMARY KEY, name text, quantity int);
         INSERT INTO items (name, quantity) SELECT 'item ' || g, g - 4 FROM generate_series(1, 20) g;",
    );
    let env = Env::new();
    env.write_config(&format!(
        "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[jobs.app]\nsource = {{ kind = \"postgres\", url = \"{}\", password_env = \"DB_PASSWORD\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\nvalidate = {{ rules = {rules} }}\n",
        pg.url_without_password(&db)
    ));
    (env, db)
}

#[test]
fn postgres_rules_report_offending_rows_and_broken_queries() {
    let (env, _db) = pg_env(
        r#"[{ name = "negative stock", sql = "SELECT id, quantity FROM items WHERE quantity < 0 ORDER BY id" }, { name = "no such table", sql = "SELECT * FROM nope" }, { name = "huge", sql = "SELECT id FROM items WHERE quantity > 1000" }]"#,
    );
    let (code, reports) = json(&env, &["validate"]);
    assert_eq!(code, 1, "{reports}");
    let report = &reports[0];
    assert_eq!(check(report, "connectivity")["ok"], true);
    let negative = rule(report, "negative stock");
    assert_eq!(negative["offending_rows"], 3, "{negative}");
    assert_eq!(negative["first_rows"][0], "(1,-3)");
    let broken = rule(report, "no such table");
    assert_eq!(broken["ok"], false);
    assert!(
        broken["error"].as_str().unwrap().contains("nope"),
        "{broken}"
    );
    assert_eq!(rule(report, "huge")["ok"], true);
}

#[test]
fn postgres_unreachable_server_fails_validation_without_showing_the_password() {
    let pg = servers::postgres();
    let env = Env::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    env.write_config(&format!(
        "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[jobs.app]\nsource = {{ kind = \"postgres\", url = \"postgres://postgres:{}@127.0.0.1:{port}/x\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\n",
        "hunter2secret"
    ));
    let _ = pg;
    let out = env.cairn().args(["validate", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!all.contains("hunter2secret"), "{all}");
    let reports: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(check(&reports[0], "connectivity")["ok"], false);
}

#[test]
fn mariadb_rules_report_offending_rows() {
    let my = servers::mariadb();
    let db = rand_name();
    my.sql(
        "",
        &format!(
            "CREATE DATABASE {db}; USE {db};
             CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50), quantity INT);
             INSERT INTO items VALUES (1, 'a', 5), (2, 'b', -2), (3, 'c', -7), (4, 'd', 0);"
        ),
    );
    let env = Env::new();
    env.write_config(&format!(
        "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[jobs.app]\nsource = {{ kind = \"mysql\", url = \"{}\", password_env = \"DB_PASSWORD\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\nvalidate = {{ rules = [{{ name = \"negative stock\", sql = \"SELECT id, name FROM items WHERE quantity < 0 ORDER BY id\" }}, {{ name = \"fine\", sql = \"SELECT id FROM items WHERE id > 100\" }}] }}\n",
        my.url_without_password(&db)
    ));
    let (code, reports) = json(&env, &["validate", "app"]);
    assert_eq!(code, 1, "{reports}");
    let negative = rule(&reports[0], "negative stock");
    assert_eq!(negative["offending_rows"], 2);
    // MariaDB drops ORDER BY inside the derived table that counts the rows.
    let mut first: Vec<&str> = negative["first_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    first.sort();
    assert_eq!(first, ["2, b", "3, c"]);
    assert_eq!(rule(&reports[0], "fine")["ok"], true);
    assert_eq!(check(&reports[0], "connectivity")["ok"], true);
    my.sql(&db, "UPDATE items SET quantity = 0");
    let (code, reports) = json(&env, &["validate", "app"]);
    assert_eq!(code, 0, "{reports}");
}

#[test]
fn rules_on_a_folder_job_are_a_config_error() {
    let env = Env::new();
    std::fs::create_dir(env.path("data")).unwrap();
    env.write_config(&format!(
        "{}validate = {{ rules = [{{ name = \"x\", sql = \"SELECT 1\" }}] }}\n",
        env.single_job_config(
            r#"{ kind = "files", path = "data" }"#,
            r#"{ kind = "none" }"#
        )
    ));
    let out = env.cairn().args(["validate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("cairn.toml:") && err.contains("validate.rules"),
        "{err}"
    );
}
