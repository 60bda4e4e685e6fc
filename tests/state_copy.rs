//! The real binary with a PostgreSQL state store (`[state] url`): ordinary
//! verbs, `cairn state copy` from SQLite, config errors, an unreachable
//! database, and the password never shown or stored.

mod common;

use std::time::{Duration, Instant};

use cairn::config::StatePostgres;
use cairn::state::postgres::PostgresState;
use cairn::state::{NewAudit, Role, StateStore, User};
use common::secrets::SecretScan;
use common::servers::{self, PASSWORD};
use common::{Env, stderr, stdout};

const PW_VAR: &str = "CAIRN_TEST_STATE_PW";

fn files_job(env: &Env) -> String {
    std::fs::create_dir_all(env.path("data")).unwrap();
    std::fs::write(env.path("data/notes.txt"), "hello state store\n").unwrap();
    env.single_job_config(
        r#"{ kind = "files", path = "data" }"#,
        r#"{ kind = "none" }"#,
    )
}

fn pg_state(db: &str) -> String {
    format!(
        "[state]\nurl = \"{}\"\npassword_env = \"{PW_VAR}\"\nsslmode = \"disable\"\n\n",
        servers::postgres().url_without_password(db)
    )
}

fn open_pg(db: &str) -> PostgresState {
    PostgresState::open(&StatePostgres {
        url: servers::postgres().url(db),
        password_env: None,
        sslmode: Some("disable".into()),
        sslrootcert: None,
    })
    .unwrap()
}

fn ok(cmd: &mut common::cairn_command::CairnCommand) -> std::process::Output {
    let out = cmd.env(PW_VAR, PASSWORD).output().unwrap();
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    out
}

fn history(env: &Env) -> Vec<serde_json::Value> {
    let out = ok(env.cairn().args(["history", "--json", "-n", "100"]));
    serde_json::from_slice(&out.stdout).expect("history --json is JSON")
}

#[test]
fn verbs_work_on_a_postgres_store_and_the_password_stays_secret() {
    let db = servers::rand_name();
    servers::postgres().create_db(&db);
    let env = Env::new();
    let jobs = files_job(&env);
    env.write_config(&format!("{}{jobs}", pg_state(&db)));
    let mut scan = SecretScan::new();
    scan.register(PASSWORD);

    let out = ok(env.cairn().args(["backup", "app"]));
    scan.assert_output("backup", &out);
    let runs: Vec<serde_json::Value> = history(&env)
        .into_iter()
        .filter(|r| r["kind"] == "backup")
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["job"], "app");
    assert_eq!(runs[0]["status"], "success");
    assert_eq!(runs[0]["trigger"], "manual");
    assert!(runs[0]["artifact_id"].is_string());
    let id = runs[0]["id"].as_i64().unwrap();
    let out = ok(env.cairn().args(["history", "--run", &id.to_string()]));
    scan.assert_output("history --run", &out);
    ok(env.cairn().args(["pause", "app"]));
    let out = ok(env.cairn().args(["status", "--json"]));
    scan.assert_output("status", &out);
    let status = stdout(&out).replace(' ', "");
    assert!(status.contains("\"paused\":true"), "{status}");
    assert!(
        open_pg(&db).paused_jobs().unwrap().contains("app"),
        "in PostgreSQL"
    );
    ok(env.cairn().args(["resume", "app"]));
    let out = env
        .cairn()
        .arg("check")
        .env(PW_VAR, PASSWORD)
        .output()
        .unwrap();
    scan.assert_output("check", &out);
    let out = ok(env.cairn().args(["-vv", "list"]));
    scan.assert_output("list -vv", &out);
    scan.assert_stored(&env, &[(PW_VAR, PASSWORD)]);
    // What PostgreSQL holds: every text column of every table.
    let dump = servers::postgres().sql(
        &db,
        "SELECT string_agg(t::text, E'\\n') FROM (SELECT r::text AS t FROM runs r UNION ALL SELECT k::text FROM kv k) x",
    );
    assert!(dump.contains("app"), "{dump}");
    scan.assert_clean("the PostgreSQL store", dump.as_bytes());
    assert!(
        !env.path("cairn-state.db").exists(),
        "no SQLite file beside a PostgreSQL store"
    );
}

#[test]
fn state_copy_moves_a_sqlite_history_into_postgres() {
    let env = Env::new();
    let jobs = files_job(&env);
    env.write_config(&jobs);
    ok(env.cairn().args(["backup", "app"]));
    ok(env.cairn().args(["backup", "app"]));
    ok(env.cairn().args(["pause", "app"]));
    {
        let store = cairn::state::open_path(&env.path("cairn-state.db")).unwrap();
        store
            .add_user(&User {
                name: "ann".into(),
                role: Role::Admin,
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
                created_at: jiff::Timestamp::now(),
            })
            .unwrap();
        for n in 0..3 {
            store
                .append_audit(&NewAudit {
                    at: jiff::Timestamp::now(),
                    actor: "cli:root@host".into(),
                    action: "user.add".into(),
                    target: format!("u{n}"),
                    address: String::new(),
                    result: "ok".into(),
                })
                .unwrap();
        }
        store
            .put_value("alerts", "app", &serde_json::json!({"firing": true}))
            .unwrap();
    }
    let before = history(&env);
    let before_log = stdout(&ok(env.cairn().args([
        "history",
        "--run",
        &before[0]["id"].as_i64().unwrap().to_string(),
    ])));

    let db = servers::rand_name();
    servers::postgres().create_db(&db);
    let to = servers::postgres().url_without_password(&db);
    let out = ok(env.cairn().args([
        "state",
        "copy",
        "--to",
        &to,
        "--password-env",
        PW_VAR,
        "--sslmode",
        "disable",
    ]));
    assert!(stdout(&out).contains("runs"), "{}", stdout(&out));
    let mut scan = SecretScan::new();
    scan.register(PASSWORD);
    scan.assert_output("state copy", &out);

    // The same history, read through the PostgreSQL store by the binary.
    env.write_config(&format!("{}{jobs}", pg_state(&db)));
    let after = history(&env);
    assert_eq!(after, before);
    let after_log = stdout(&ok(env.cairn().args([
        "history",
        "--run",
        &before[0]["id"].as_i64().unwrap().to_string(),
    ])));
    assert_eq!(after_log, before_log, "logs are copied");
    let pg = open_pg(&db);
    assert!(pg.paused_jobs().unwrap().contains("app"));
    assert_eq!(pg.user("ann").unwrap().unwrap().role, Role::Admin);
    let audit = pg.audit_after(0, 10).unwrap();
    assert_eq!(audit.len(), 3);
    assert_eq!(audit[2].seq, 3);
    assert_eq!(audit[2].prev_hash, audit[1].hash, "the chain is kept");
    assert_eq!(
        pg.get_value("alerts", "app").unwrap(),
        Some(serde_json::json!({"firing": true}))
    );
    // New runs continue after the copied ids; the chain continues too.
    ok(env.cairn().args(["backup", "app"]));
    let newest = history(&env);
    assert_eq!(
        newest.iter().filter(|r| r["kind"] == "backup").count(),
        3,
        "{newest:?}"
    );
    assert!(newest[0]["id"].as_i64() > before[0]["id"].as_i64());
    let next = pg
        .append_audit(&NewAudit {
            at: jiff::Timestamp::now(),
            actor: "cli:root@host".into(),
            action: "user.add".into(),
            target: "u3".into(),
            address: String::new(),
            result: "ok".into(),
        })
        .unwrap();
    assert_eq!(
        (next.seq, next.prev_hash.as_str()),
        (4, audit[2].hash.as_str())
    );

    // Not into a store that holds data, unless --force.
    env.write_config(&jobs);
    let out = env
        .cairn()
        .args([
            "state",
            "copy",
            "--to",
            &to,
            "--password-env",
            PW_VAR,
            "--sslmode",
            "disable",
        ])
        .env(PW_VAR, PASSWORD)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    ok(env.cairn().args([
        "state",
        "copy",
        "--to",
        &to,
        "--password-env",
        PW_VAR,
        "--sslmode",
        "disable",
        "--force",
    ]));
    assert_eq!(
        pg.runs(&Default::default()).unwrap().len(),
        before.len(),
        "replaced"
    );
}

#[test]
fn path_and_url_together_are_a_config_error() {
    let env = Env::new();
    let jobs = files_job(&env);
    env.write_config(&format!(
        "[state]\npath = \"state.db\"\nurl = \"postgres://cairn@db:5432/cairn\"\n\n{jobs}"
    ));
    let out = env.cairn().arg("check").output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cairn.toml:3:"), "{err}");
    assert!(err.contains("state.url"), "{err}");
    assert!(err.contains("`path` and `url`"), "{err}");

    env.write_config(&format!(
        "[state]\nurl = \"postgres://cairn@db:5432/cairn\"\nsslmode = \"sometimes\"\n\n{jobs}"
    ));
    let out = env.cairn().arg("check").output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cairn.toml:3:"), "{err}");
    assert!(err.contains("verify-full"), "{err}");
}

#[test]
fn an_unreachable_state_store_fails_fast_naming_it_without_the_password() {
    let env = Env::new();
    let jobs = files_job(&env);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    env.write_config(&format!(
        "[state]\nurl = \"postgres://cairn@127.0.0.1:{port}/cairn\"\npassword_env = \"{PW_VAR}\"\n\n{jobs}"
    ));
    let start = Instant::now();
    let out = env
        .cairn()
        .args(["history"])
        .env(PW_VAR, PASSWORD)
        .output()
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "state store postgres://cairn@127.0.0.1:{port}/cairn"
        )),
        "{err}"
    );
    let mut scan = SecretScan::new();
    scan.register(PASSWORD);
    scan.assert_output("history", &out);
}
