//! PostgreSQL sources and restores against a real server started for this test
//! binary (see common/servers.rs).

mod common;

use common::servers::{self, PASSWORD, rand_name};
use common::{Env, stderr};
use predicates::prelude::*;

const SCHEMA: &str = r#"
CREATE TABLE suppliers (id serial PRIMARY KEY, name text NOT NULL UNIQUE, country char(2) CHECK (country ~ '^[A-Z]{2}$'));
CREATE TABLE items (
    id bigserial PRIMARY KEY,
    sku text NOT NULL UNIQUE,
    name text NOT NULL,
    quantity integer NOT NULL CHECK (quantity >= 0),
    supplier_id integer REFERENCES suppliers(id) ON DELETE RESTRICT,
    tags jsonb DEFAULT '{}'::jsonb,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX items_supplier ON items(supplier_id);
CREATE INDEX items_name_lower ON items (lower(name));
CREATE SEQUENCE invoice_numbers START 1000;
CREATE VIEW low_stock AS SELECT sku, name, quantity FROM items WHERE quantity < 10;
CREATE TABLE audit (id serial PRIMARY KEY, item_id bigint, changed_at timestamptz DEFAULT now());
CREATE FUNCTION log_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO audit (item_id) VALUES (NEW.id); RETURN NEW; END $$;
CREATE TRIGGER items_audit AFTER UPDATE ON items FOR EACH ROW EXECUTE FUNCTION log_change();
INSERT INTO suppliers (name, country) VALUES ('Grüße GmbH', 'DE'), ('Société Générale', 'FR'), ('東京商事', 'JP');
INSERT INTO items (sku, name, quantity, supplier_id, tags)
  SELECT 'SKU-' || g, 'Item ' || g || ' — naïve', g % 50, 1 + g % 3, jsonb_build_object('n', g)
  FROM generate_series(1, 5000) g;
UPDATE items SET quantity = quantity + 1 WHERE id <= 10;
SELECT nextval('invoice_numbers'), nextval('invoice_numbers');
"#;

/// Every user table's row count and an md5 over its rows, plus the schema.
fn fingerprint(db: &str) -> String {
    fingerprint_on(servers::postgres(), db)
}

fn fingerprint_on(pg: &servers::Postgres, db: &str) -> String {
    let tables = pg.sql(
        db,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    );
    let mut out = String::new();
    for table in tables.lines() {
        out.push_str(&pg.sql(
            db,
            &format!("SELECT '{table}', count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"),
        ));
        out.push('\n');
    }
    out.push_str(&pg.sql(db, "SELECT last_value FROM invoice_numbers"));
    out.push_str(&pg.sql(
        db,
        "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'public'",
    ));
    out.push_str(&pg.sql(
        db,
        "SELECT string_agg(tgname, ',') FROM pg_trigger WHERE NOT tgisinternal",
    ));
    out.push_str(&pg.sql(db, "SELECT count(*) FROM low_stock"));
    out
}

fn pg_env(db: &str, extra: &str) -> Env {
    let env = Env::new();
    let pg = servers::postgres();
    env.write_config(&format!(
        "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[jobs.shop]\nsource = {{ kind = \"postgres\", url = \"{}\", password_env = \"SHOP_PG_PASSWORD\"{extra} }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"age-passphrase\", passphrase_env = \"CAIRN_PASSPHRASE\" }}\n",
        pg.url_without_password(db)
    ));
    env
}

fn cairn(env: &Env) -> common::cairn_command::CairnCommand {
    let mut cmd = env.cairn();
    cmd.env("SHOP_PG_PASSWORD", PASSWORD)
        .env("CAIRN_PASSPHRASE", "correct horse");
    cmd
}

fn seeded_db() -> String {
    let pg = servers::postgres();
    let db = rand_name();
    pg.create_db(&db);
    pg.script(&db, SCHEMA);
    db
}

#[test]
fn custom_format_round_trip_into_a_new_database() {
    let pg = servers::postgres();
    let db = seeded_db();
    let env = pg_env(&db, "");
    let out = cairn(&env)
        .args(["backup", "shop", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let entry = &env.list()[0];
    assert!(
        entry["key"].as_str().unwrap().ends_with(".pgdump.zst.age"),
        "{entry}"
    );
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let facts = &manifest[0]["manifest"]["source"]["facts"];
    assert!(
        facts["server_version_num"].as_u64().unwrap() >= 100_000,
        "{facts}"
    );
    assert!(
        facts["dump_tool_version"]
            .as_str()
            .unwrap()
            .starts_with("pg_dump"),
        "{facts}"
    );
    assert!(facts["tables"].get("public.items").is_some(), "{facts}");

    let copy = rand_name();
    cairn(&env)
        .args(["restore", "shop", "--to", &pg.url(&copy)])
        .assert()
        .success()
        .stdout(predicate::str::contains("created database"));
    assert_eq!(fingerprint(&db), fingerprint(&copy));
    // The trigger works in the copy too.
    pg.sql(&copy, "UPDATE items SET quantity = 1 WHERE id = 1");
    assert_eq!(pg.sql(&copy, "SELECT count(*) FROM audit"), "11");
}

#[test]
fn plain_format_round_trip() {
    let pg = servers::postgres();
    let db = seeded_db();
    let env = pg_env(&db, ", format = \"plain\"");
    cairn(&env).args(["backup", "shop"]).assert().success();
    assert!(
        env.list()[0]["key"]
            .as_str()
            .unwrap()
            .ends_with(".sql.zst.age")
    );
    let plain = cairn(&env).args(["cat", "shop"]).output().unwrap();
    assert!(String::from_utf8_lossy(&plain.stdout).contains("CREATE TABLE public.items"));
    let copy = rand_name();
    cairn(&env)
        .args(["restore", "shop", "--to", &pg.url_without_password(&copy)])
        .assert()
        .success();
    assert_eq!(fingerprint(&db), fingerprint(&copy));
}

#[test]
fn non_empty_target_needs_force_and_clean_replaces_it() {
    let pg = servers::postgres();
    let db = seeded_db();
    let env = pg_env(&db, "");
    cairn(&env).args(["backup", "shop"]).assert().success();
    let target = seeded_db();
    pg.sql(
        &target,
        "DELETE FROM audit; INSERT INTO audit (item_id) VALUES (42)",
    );
    cairn(&env)
        .args(["restore", "shop", "--to", &pg.url(&target)])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--force"));
    assert_eq!(pg.sql(&target, "SELECT item_id FROM audit"), "42");

    // --force without --clean: the objects exist, pg_restore fails, the single
    // transaction rolls back, and the target is unchanged.
    cairn(&env)
        .args(["restore", "shop", "--force", "--to", &pg.url(&target)])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("already exists"));
    assert_eq!(pg.sql(&target, "SELECT item_id FROM audit"), "42");

    cairn(&env)
        .args([
            "restore",
            "shop",
            "--force",
            "--clean",
            "--to",
            &pg.url(&target),
        ])
        .assert()
        .success();
    assert_eq!(fingerprint(&db), fingerprint(&target));
}

#[test]
fn dry_run_lists_the_dump_and_changes_nothing() {
    let pg = servers::postgres();
    let db = seeded_db();
    let env = pg_env(&db, "");
    cairn(&env).args(["backup", "shop"]).assert().success();
    let copy = rand_name();
    cairn(&env)
        .args(["restore", "shop", "--dry-run", "--to", &pg.url(&copy)])
        .assert()
        .success()
        .stdout(predicate::str::contains("would create database"));
    assert_eq!(
        pg.sql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{copy}'")
        ),
        "0"
    );
}

#[test]
fn server_scope_dumps_roles_and_restores_them() {
    let pg = servers::postgres();
    let db = seeded_db();
    let role = rand_name();
    pg.sql(
        "postgres",
        &format!("CREATE ROLE {role} LOGIN PASSWORD 'x'"),
    );
    pg.sql(&db, &format!("GRANT SELECT ON items TO {role}"));
    let env = pg_env(&db, ", scope = \"server\"");
    cairn(&env).args(["backup", "shop"]).assert().success();
    let plain = cairn(&env).args(["cat", "shop"]).output().unwrap();
    let text = String::from_utf8_lossy(&plain.stdout);
    assert!(
        text.contains(&format!("CREATE ROLE {role}")),
        "pg_dumpall output lacks the role"
    );
    // A non-empty server needs --force; the script is replayed on an empty one.
    cairn(&env)
        .args(["restore", "shop", "--to", &pg.url("postgres")])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--force"));
    let fresh = servers::start_postgres();
    cairn(&env)
        .args(["restore", "shop", "--to", &fresh.url("postgres")])
        .assert()
        .success();
    assert_eq!(
        fresh.sql(
            "postgres",
            &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'")
        ),
        "1"
    );
    assert_eq!(fingerprint_on(&fresh, &db), fingerprint(&db));
    // Replaying it again onto the now non-empty server with --force: the rows
    // collide with what is there, and the run says so instead of succeeding.
    cairn(&env)
        .args(["restore", "shop", "--force", "--to", &fresh.url("postgres")])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("error(s)"));
}

#[test]
fn snapshot_is_consistent_while_a_writer_inserts() {
    let pg = servers::postgres();
    let db = seeded_db();
    pg.sql(&db, "CREATE TABLE orders (id serial PRIMARY KEY); CREATE TABLE order_lines (order_id int REFERENCES orders(id), n int)");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let db = db.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                servers::postgres().sql(&db, "WITH o AS (INSERT INTO orders DEFAULT VALUES RETURNING id) INSERT INTO order_lines SELECT id, g FROM o, generate_series(1,3) g");
                n += 1;
            }
            n
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let env = pg_env(&db, "");
    cairn(&env).args(["backup", "shop"]).assert().success();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(
        writer.join().unwrap() > 2,
        "the writer must have been running"
    );
    let copy = rand_name();
    cairn(&env)
        .args(["restore", "shop", "--to", &pg.url(&copy)])
        .assert()
        .success();
    common::assert_one_snapshot(|table| {
        pg.sql(&copy, &format!("SELECT count(*) FROM {table}"))
            .parse()
            .unwrap()
    });
}

#[test]
fn failures_name_the_server_without_credentials_and_commit_nothing() {
    let pg = servers::postgres();
    let db = seeded_db();
    let env = pg_env(&db, "");
    // Wrong password.
    let out = env
        .cairn()
        .env("SHOP_PG_PASSWORD", "wrong-password")
        .env("CAIRN_PASSPHRASE", "pp")
        .args(["backup", "shop"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(
        err.contains(&format!("postgres://postgres@127.0.0.1:{}/{db}", pg.port)),
        "{err}"
    );
    assert!(!err.contains("wrong-password"), "{err}");
    // Missing database.
    let env2 = pg_env("no_such_db", "");
    let out = cairn(&env2).args(["backup", "shop"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no_such_db"), "{}", stderr(&out));
    // Server down.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env3 = Env::new();
    env3.write_config(&format!(
        "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[jobs.shop]\nsource = {{ kind = \"postgres\", url = \"postgres://postgres:not-the-password@127.0.0.1:{port}/db\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\n"
    ));
    let out = env3.cairn().args(["backup", "shop"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("Connection refused") || err.contains("connection"),
        "{err}"
    );
    assert!(!err.contains("not-the-password"), "{err}");
    for e in [&env, &env2, &env3] {
        assert!(e.list().is_empty());
    }
}

/// A fake tool folder: `pg_dump` there is a script of ours around the real one.
fn tool_dir(env: &Env, script: &str) -> String {
    let dir = env.path("tools");
    std::fs::create_dir_all(&dir).unwrap();
    let real = servers::postgres().bin.join("pg_dump");
    let path = dir.join("pg_dump");
    std::fs::write(
        &path,
        format!("#!/bin/sh\nREAL='{}'\n{script}\n", real.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir.display().to_string()
}

#[test]
fn old_pg_dump_is_refused_with_the_versions() {
    let db = seeded_db();
    let probe = Env::new();
    let dir = tool_dir(&probe, "echo 'pg_dump (PostgreSQL) 9.6.24'; exit 0");
    let env = pg_env(&db, &format!(", tool_dir = \"{dir}\""));
    cairn(&env)
        .args(["backup", "shop"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("version 9").and(predicate::str::contains("install pg_dump")),
        );
    assert!(env.list().is_empty());
}

#[test]
fn a_dump_killed_midway_commits_nothing_and_the_password_stays_off_argv() {
    let db = seeded_db();
    let probe = Env::new();
    let argv_log = probe.path("argv.log");
    let dir = tool_dir(
        &probe,
        &format!(
            "echo \"$@\" >> '{}'\nif [ \"$1\" = --version ]; then exec \"$REAL\" \"$@\"; fi\n\"$REAL\" \"$@\" | head -c 20000\nkill -9 $$",
            argv_log.display()
        ),
    );
    let env = pg_env(&db, &format!(", tool_dir = \"{dir}\""));
    let out = cairn(&env).args(["backup", "shop"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("killed by signal 9"),
        "{}",
        stderr(&out)
    );
    assert!(env.list().is_empty());
    let partial = env.path("backups/shop/.partial");
    let leftovers = std::fs::read_dir(&partial).map(|d| d.count()).unwrap_or(0);
    assert_eq!(leftovers, 0, "aborted upload must be removed");
    let argv = std::fs::read_to_string(&argv_log).unwrap();
    assert!(
        argv.contains("--format=custom") && !argv.contains(PASSWORD),
        "{argv}"
    );
}

#[test]
fn damaged_artifact_never_reaches_the_database() {
    let pg = servers::postgres();
    let db = seeded_db();
    let env = Env::new();
    env.write_config(&format!(
        "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[jobs.shop]\nsource = {{ kind = \"postgres\", url = \"{}\", format = \"plain\" }}\ndestinations = [\"local\"]\ncompression = \"none\"\nencryption = {{ kind = \"none\" }}\n",
        pg.url(&db)
    ));
    env.cairn().args(["backup", "shop"]).assert().success();
    let entry = &env.list()[0];
    let data = env.data_path(entry);
    // Change one digit in the data: still valid SQL, wrong content.
    let mut bytes = std::fs::read(&data).unwrap();
    let at = bytes.len() / 2
        + bytes[bytes.len() / 2..]
            .iter()
            .position(|b| b.is_ascii_digit())
            .unwrap();
    bytes[at] = if bytes[at] == b'7' { b'8' } else { b'7' };
    std::fs::write(&data, &bytes).unwrap();
    let copy = rand_name();
    env.cairn()
        .args(["restore", "shop", "--to", &pg.url(&copy)])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("SHA-256"));
    assert_eq!(
        pg.sql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{copy}'")
        ),
        "0",
        "the database created for the failed restore is dropped"
    );
}
