//! Health checks through `cairn health`: each kind against real things (an
//! HTTP server, a SQLite database, the file system, a destination, the run
//! history), their recorded history, and alert de-duplication end to end with
//! a real webhook receiver.

mod common;

use std::time::Duration;

use common::receivers::HttpReceiver;
use common::{Env, stderr, stdout};

const WAIT: Duration = Duration::from_secs(10);

const BASE: &str = "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[jobs.shop]\nsource = { kind = \"sqlite\", path = \"shop.db\" }\ndestinations = [\"local\"]\nencryption = { kind = \"none\" }\n";

/// The seeds' inventory: `bolts` is below its reorder level.
fn shop_db(env: &Env) {
    let conn = rusqlite::Connection::open(env.path("shop.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, quantity INTEGER, reorder_level INTEGER);
         INSERT INTO items (name, quantity, reorder_level) VALUES ('bolts', 3, 10), ('nuts', 50, 10), ('screws', 12, 10);",
    )
    .unwrap();
}

fn set_quantity(env: &Env, name: &str, quantity: i64) {
    let conn = rusqlite::Connection::open(env.path("shop.db")).unwrap();
    conn.execute(
        "UPDATE items SET quantity = ?1 WHERE name = ?2",
        (quantity, name),
    )
    .unwrap();
}

/// `cairn health ARGS --json` → (exit code, outcomes).
fn health(env: &Env, args: &[&str]) -> (i32, Vec<serde_json::Value>) {
    let out = env
        .cairn()
        .arg("health")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let parsed = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    (out.status.code().unwrap_or(-1), parsed)
}

#[test]
fn http_checks_judge_status_body_and_latency_of_a_real_server() {
    let env = Env::new();
    let web = HttpReceiver::start();
    web.set_body("{\"status\": \"healthy\"}");
    env.write_config(&format!(
        "{BASE}\n[checks.up]\nkind = \"http\"\nurl = \"{u}\"\nbody_contains = \"healthy\"\n\n[checks.wording]\nkind = \"http\"\nurl = \"{u}\"\nbody_contains = \"all good\"\n\n[checks.status]\nkind = \"http\"\nurl = \"{u}\"\nexpect_status = 204\n\n[checks.head]\nkind = \"http\"\nmethod = \"HEAD\"\nurl = \"{u}\"\n",
        u = web.url("/health?token=abc")
    ));
    let (code, outcomes) = health(&env, &[]);
    assert_eq!(code, 1);
    let by = |name: &str| {
        outcomes
            .iter()
            .find(|o| o["check"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(by("up")["ok"], true, "{outcomes:#?}");
    assert_eq!(by("up")["details"]["status"], 200);
    assert!(by("up")["duration_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(by("wording")["ok"], false);
    assert!(
        by("wording")["reason"]
            .as_str()
            .unwrap()
            .contains("does not contain \"all good\"")
    );
    assert_eq!(by("status")["ok"], false);
    assert!(
        by("status")["reason"]
            .as_str()
            .unwrap()
            .contains("expected 204")
    );
    assert!(
        !by("status")["reason"]
            .as_str()
            .unwrap()
            .contains("token=abc"),
        "query hidden"
    );
    assert_eq!(by("head")["ok"], true);
    assert!(web.requests().iter().any(|r| r.method == "HEAD"));

    // Slow answers: over max_latency fails, over timeout fails as a timeout.
    web.set_delay(Duration::from_millis(400));
    env.write_config(&format!(
        "{BASE}\n[checks.slow]\nkind = \"http\"\nurl = \"{u}\"\nmax_latency = \"100ms\"\n\n[checks.hung]\nkind = \"http\"\nurl = \"{u}\"\ntimeout = \"200ms\"\n\n[checks.patient]\nkind = \"http\"\nurl = \"{u}\"\nmax_latency = \"5s\"\n",
        u = web.url("/health")
    ));
    let (_, outcomes) = health(&env, &[]);
    let by = |name: &str| {
        outcomes
            .iter()
            .find(|o| o["check"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(by("slow")["ok"], false);
    assert!(
        by("slow")["reason"]
            .as_str()
            .unwrap()
            .contains("more than 100 ms"),
        "{outcomes:#?}"
    );
    assert_eq!(by("hung")["ok"], false);
    assert!(
        by("hung")["reason"].as_str().unwrap().contains("timed out"),
        "{outcomes:#?}"
    );
    assert_eq!(by("patient")["ok"], true);
}

#[test]
fn a_low_stock_sql_check_alerts_once_repeats_then_recovers_once() {
    let env = Env::new();
    shop_db(&env);
    let hook = HttpReceiver::start();
    let recoveries = HttpReceiver::start();
    env.write_config(&format!(
        "{BASE}\n[notify.ops]\nkind = \"webhook\"\nurl = \"{}\"\nrepeat = \"1h\"\n\n[checks.low-stock]\nkind = \"sql\"\njob = \"shop\"\nquery = \"SELECT name, quantity FROM items WHERE quantity < reorder_level\"\nnotify = [\"ops\", {{ channel = \"recoveries\", events = [\"check_recovered\"] }}]\n\n[notify.recoveries]\nkind = \"webhook\"\nurl = \"{}\"\n",
        hook.url("/ops"),
        recoveries.url("/recoveries")
    ));
    let run = || health(&env, &["low-stock"]);

    let (code, outcomes) = run();
    assert_eq!(code, 1);
    assert_eq!(outcomes[0]["ok"], false);
    assert!(
        outcomes[0]["reason"].as_str().unwrap().contains("bolts, 3"),
        "{outcomes:#?}"
    );
    let alerts = hook.wait_for(1, WAIT);
    assert_eq!(alerts.len(), 1);
    let alert = alerts[0].json();
    assert_eq!(alert["kind"], "check_failing");
    assert_eq!(alert["check"], "low-stock");
    assert_eq!(alert["job"], "shop");
    assert_eq!(
        alert["details"]["rows"],
        serde_json::json!([["bolts", "3"]])
    );

    // Still failing (now two rows): no new alert within `repeat`.
    set_quantity(&env, "screws", 1);
    assert_eq!(run().0, 1);
    assert_eq!(run().0, 1);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(hook.requests().len(), 1, "de-duplicated");

    // After `repeat` (the last alert moved an hour and a bit back, instead of
    // waiting): one reminder with the current rows.
    let moved = rusqlite::Connection::open(env.path("cairn-state.db"))
        .unwrap()
        .execute(
            "UPDATE kv SET value = json_set(value, '$.last_alert', '2000-01-01T00:00:00Z') \
             WHERE namespace = 'alerts' AND json_extract(value, '$.last_alert') IS NOT NULL",
            [],
        )
        .unwrap();
    assert!(moved > 0, "no alert state was found to move back");
    assert_eq!(run().0, 1);
    let requests = hook.wait_for(2, WAIT);
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].json()["details"]["row_count"], 2);
    assert_eq!(run().0, 1);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(hook.requests().len(), 2);

    // Restocked: exactly one recovery, then silence.
    set_quantity(&env, "bolts", 100);
    set_quantity(&env, "screws", 100);
    let (code, outcomes) = run();
    assert_eq!(code, 0, "{outcomes:#?}");
    let requests = hook.wait_for(3, WAIT);
    assert_eq!(requests.len(), 3);
    let recovery = requests[2].json();
    assert_eq!(recovery["kind"], "check_recovered");
    assert_eq!(recovery["recovery"], true);
    assert_eq!(run().0, 0);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(hook.requests().len(), 3);
    // A route that takes only recoveries got exactly that one, not every pass.
    let got = recoveries.requests();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].json()["kind"], "check_recovered");

    // A new failure alerts again.
    set_quantity(&env, "nuts", 0);
    assert_eq!(run().0, 1);
    assert_eq!(hook.wait_for(4, WAIT)[3].json()["kind"], "check_failing");

    // Every run is in the history as a `check` run.
    let out = env
        .cairn()
        .args([
            "history",
            "low-stock",
            "--kind",
            "check",
            "--json",
            "-n",
            "50",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.len(), 8, "{runs:#?}");
    assert_eq!(runs.iter().filter(|r| r["status"] == "success").count(), 2);
    assert!(runs.iter().all(|r| r["kind"] == "check"));
}

#[test]
fn disk_and_destination_checks() {
    let env = Env::new();
    std::fs::write(env.path("a-file"), b"x").unwrap();
    env.write_config(&format!(
        "{BASE}\n[destinations.broken]\nkind = \"fs\"\npath = \"a-file/below\"\n\n[checks.roomy]\nkind = \"disk\"\npath = \".\"\nmin_free_percent = 0.001\nmin_free = \"1MiB\"\n\n[checks.huge]\nkind = \"disk\"\npath = \".\"\nmin_free = \"100000TiB\"\n\n[checks.store]\nkind = \"destination\"\ndestination = \"local\"\n\n[checks.gone]\nkind = \"destination\"\ndestination = \"broken\"\n"
    ));
    std::fs::create_dir(env.path("backups")).unwrap();
    let (code, outcomes) = health(&env, &[]);
    assert_eq!(code, 1);
    let by = |name: &str| {
        outcomes
            .iter()
            .find(|o| o["check"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(by("roomy")["ok"], true, "{outcomes:#?}");
    assert!(by("roomy")["details"]["free_bytes"].as_u64().unwrap() > 1 << 20);
    assert_eq!(by("huge")["ok"], false);
    assert!(by("huge")["reason"].as_str().unwrap().contains("below"));
    assert_eq!(by("store")["ok"], true, "{outcomes:#?}");
    assert_eq!(by("gone")["ok"], false, "{outcomes:#?}");

    // Only the named check runs.
    let (code, outcomes) = health(&env, &["roomy"]);
    assert_eq!((code, outcomes.len()), (0, 1));
    let out = env.cairn().args(["health", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown check `nope`"));
}

#[test]
fn backup_age_follows_the_newest_good_artifact_and_alerts_stale() {
    let env = Env::new();
    common::create_sample_db(&env.path("shop.db"), 5);
    let hook = HttpReceiver::start();
    env.write_config(&format!(
        "{BASE}schedules = [{{ cron = \"0 * * * *\" }}]\n\n[notify.ops]\nkind = \"webhook\"\nurl = \"{}\"\n\n[checks.fresh]\nkind = \"backup_age\"\njob = \"shop\"\nnotify = [\"ops\"]\n\n[checks.tight]\nkind = \"backup_age\"\njob = \"shop\"\nmax_age = \"1s\"\n",
        hook.url("/ops")
    ));
    let (code, outcomes) = health(&env, &["fresh"]);
    assert_eq!(code, 1);
    assert!(
        outcomes[0]["reason"]
            .as_str()
            .unwrap()
            .contains("no good artifact")
    );
    let stale = hook.wait_for(1, WAIT)[0].json();
    assert_eq!(stale["kind"], "artifact_stale");
    assert_eq!(stale["job"], "shop");

    env.backup("shop");
    let (code, outcomes) = health(&env, &["fresh"]);
    assert_eq!(code, 0, "{outcomes:#?}");
    // The default limit is twice the hourly schedule.
    assert!(
        outcomes[0]["reason"]
            .as_str()
            .unwrap()
            .contains("limit 2h0m"),
        "{outcomes:#?}"
    );
    assert_eq!(hook.wait_for(2, WAIT)[1].json()["kind"], "check_recovered");

    std::thread::sleep(Duration::from_millis(2100));
    let (code, outcomes) = health(&env, &["tight"]);
    assert_eq!(code, 1);
    assert!(
        outcomes[0]["reason"]
            .as_str()
            .unwrap()
            .contains("more than"),
        "{outcomes:#?}"
    );

    // Without a schedule there is no default: a config error with its position.
    env.write_config(&format!(
        "{BASE}\n[checks.fresh]\nkind = \"backup_age\"\njob = \"shop\"\n"
    ));
    let out = env.cairn().args(["health"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("cairn.toml:10:") && err.contains("set `max_age`"),
        "{err}"
    );
}

#[test]
fn drill_age_reads_recorded_drill_runs() {
    use cairn::state::{NewRun, RunEnd, RunKind, Trigger};
    let env = Env::new();
    env.write_config(&format!(
        "{BASE}\n[checks.drilled]\nkind = \"drill_age\"\njob = \"shop\"\nmax_age = \"1h\"\n"
    ));
    let (code, outcomes) = health(&env, &[]);
    assert_eq!(code, 1);
    assert!(
        outcomes[0]["reason"]
            .as_str()
            .unwrap()
            .contains("no successful restore drill")
    );

    let store = cairn::state::open_path(&env.path("cairn-state.db")).unwrap();
    let record = |success: bool, minutes_ago: i64| {
        let started = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(minutes_ago);
        let id = store
            .start_run(&NewRun {
                job: "shop".into(),
                kind: RunKind::Drill,
                trigger: Trigger::Schedule,
                started_at: started,
                replica: None,
                scheduled_for: None,
                claim: None,
            })
            .unwrap();
        store
            .finish_run(
                id,
                &RunEnd {
                    success,
                    ..RunEnd::default()
                },
                "",
            )
            .unwrap();
    };
    record(true, 0);
    assert_eq!(health(&env, &[]).0, 0);
    // A failed drill does not make the last good one younger.
    record(false, 0);
    let (code, outcomes) = health(&env, &[]);
    assert_eq!(code, 0, "{outcomes:#?}");
}

#[test]
fn sql_checks_query_real_postgres_and_mariadb_servers() {
    use common::servers::{self, PASSWORD, rand_name};
    let pg = servers::postgres();
    let my = servers::mariadb();
    let pg_db = rand_name();
    pg.create_db(&pg_db);
    let seed =
        "CREATE TABLE items (id INT PRIMARY KEY, name TEXT, quantity INT, reorder_level INT);
                INSERT INTO items VALUES (1, 'bolts', 3, 10), (2, 'nuts', 50, 10);";
    pg.script(&pg_db, seed);
    let my_db = rand_name();
    my.sql("", &format!("CREATE DATABASE `{my_db}`"));
    my.sql(&my_db, seed);

    let env = Env::new();
    let query = "SELECT name, quantity FROM items WHERE quantity < reorder_level ORDER BY name";
    env.write_config(&format!(
        "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[jobs.pg]\nsource = {{ kind = \"postgres\", url = \"{}\", password_env = \"DB_PASSWORD\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\n\n[jobs.my]\nsource = {{ kind = \"mysql\", url = \"{}\", password_env = \"DB_PASSWORD\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\n\n[checks.pg-stock]\nkind = \"sql\"\njob = \"pg\"\nquery = \"{query}\"\n\n[checks.my-stock]\nkind = \"sql\"\njob = \"my\"\nquery = \"{query}\"\n\n[checks.pg-bad]\nkind = \"sql\"\njob = \"pg\"\nquery = \"SELECT nope FROM items\"\n\n[checks.pg-write]\nkind = \"sql\"\njob = \"pg\"\nquery = \"DELETE FROM items RETURNING name;\"\n\n[checks.my-write]\nkind = \"sql\"\njob = \"my\"\nquery = \"DELETE FROM items\"\n",
        pg.url_without_password(&pg_db),
        my.url_without_password(&my_db),
    ));
    let run = || {
        let out = env
            .cairn()
            .env("DB_PASSWORD", PASSWORD)
            .args(["health", "--json"])
            .output()
            .unwrap();
        let outcomes: Vec<serde_json::Value> =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
        (out, outcomes)
    };
    let (out, outcomes) = run();
    assert_eq!(out.status.code(), Some(1));
    let by = |o: &[serde_json::Value], name: &str| {
        o.iter().find(|x| x["check"] == name).unwrap().clone()
    };
    for check in ["pg-stock", "my-stock"] {
        let outcome = by(&outcomes, check);
        assert_eq!(outcome["ok"], false, "{outcome}");
        assert_eq!(
            outcome["details"]["rows"],
            serde_json::json!([["bolts", "3"]]),
            "{outcome}"
        );
    }
    let bad = by(&outcomes, "pg-bad");
    assert!(
        bad["reason"].as_str().unwrap().contains("the query failed"),
        "{bad}"
    );
    assert!(!stderr(&out).contains(PASSWORD) && !stdout(&out).contains(PASSWORD));
    // Checks never write: the deleting queries fail and the rows stay.
    assert_eq!(by(&outcomes, "pg-write")["ok"], false);
    assert_eq!(by(&outcomes, "my-write")["ok"], false);
    assert_eq!(pg.sql(&pg_db, "SELECT count(*) FROM items"), "2");
    assert_eq!(my.sql(&my_db, "SELECT count(*) FROM items"), "2");

    pg.sql(&pg_db, "UPDATE items SET quantity = 99");
    my.sql(&my_db, "UPDATE items SET quantity = 99");
    let (_, outcomes) = run();
    assert_eq!(by(&outcomes, "pg-write")["ok"], false);
    assert_eq!(by(&outcomes, "pg-stock")["ok"], true, "{outcomes:#?}");
    assert_eq!(by(&outcomes, "my-stock")["ok"], true, "{outcomes:#?}");
}
