//! Several real daemons (replicas) on one state store and one S3 destination
//! (SeaweedFS): every fire runs exactly once, a killed replica's run is
//! recorded interrupted and re-run once, manual runs are refused while one
//! runs, schedule overrides apply within 5 s, and a run that cannot renew its
//! lease never commits. The fleet tests run on every state store: SQLite, a
//! real PostgreSQL, and that PostgreSQL through a real PgBouncer in
//! transaction mode; each test has a database of its own.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::objstores::{self, unique_name};
use common::servers::{self, PASSWORD};
use common::{Env, create_sample_db, stderr};

/// The environment variable the configs name in `[state] password_env`.
const PW_VAR: &str = "CAIRN_TEST_STATE_PW";

#[derive(Clone, Copy, Debug)]
enum Store {
    Sqlite,
    Postgres,
    Pgbouncer,
}

/// The `[state]` section for `store` (a fresh database of the test's own), or
/// nothing for the default SQLite file.
fn state_section(store: Store) -> String {
    let url = match store {
        Store::Sqlite => return String::new(),
        Store::Postgres | Store::Pgbouncer => {
            let db = servers::rand_name();
            servers::postgres().create_db(&db);
            match store {
                Store::Postgres => servers::postgres().url_without_password(&db),
                _ => servers::pgbouncer().url_without_password(&db),
            }
        }
    };
    pg_state(&url)
}

fn pg_state(url: &str) -> String {
    format!("[state]\nurl = \"{url}\"\npassword_env = \"{PW_VAR}\"\nsslmode = \"disable\"\n\n")
}

/// Runs `$test(Store)` once per state store, as `$test::sqlite` etc.
macro_rules! on_every_store {
    ($($test:ident),* $(,)?) => {
        $(mod $test {
            #[test]
            fn sqlite() {
                super::$test(super::Store::Sqlite)
            }
            #[test]
            fn postgres() {
                super::$test(super::Store::Postgres)
            }
            #[test]
            fn pgbouncer() {
                super::$test(super::Store::Pgbouncer)
            }
        })*
    };
}

on_every_store!(
    three_replicas_run_every_fire_exactly_once,
    a_killed_replica_run_is_interrupted_and_run_again_once,
    manual_runs_at_the_same_instant_one_runs_one_is_refused,
);

fn s3_destination(bucket: &str) -> String {
    let s3 = objstores::s3();
    format!(
        "[destinations.shared]\nkind = \"s3\"\nbucket = \"{bucket}\"\nprefix = \"fleet\"\nendpoint = \"{}\"\nregion = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"${{TEST_S3_SECRET}}\"\n\n",
        s3.endpoint(),
        s3.region,
        s3.access_key
    )
}

/// A config with a `[state]` section, the shared S3 destination, `[daemon]`
/// settings and one job `app`.
fn config(env: &Env, state: &str, daemon: &str, source: &str, job_extra: &str) -> String {
    let bucket = unique_name("fleet");
    objstores::s3().create_bucket(&bucket);
    let destination = format!("{state}{}", s3_destination(&bucket));
    config_with(env, &destination, daemon, source, job_extra)
}

/// A config with `destination` (a `[destinations.shared]` table, after any
/// `[state]`), `[daemon]` settings and one job `app`.
fn config_with(
    env: &Env,
    destination: &str,
    daemon: &str,
    source: &str,
    job_extra: &str,
) -> String {
    create_sample_db(&env.path("app.db"), 50);
    format!(
        "{destination}[daemon]\n{daemon}\n\n[jobs.app]\nsource = {source}\ndestinations = [\"shared\"]\nencryption = {{ kind = \"none\" }}\n{job_extra}\n"
    )
}

fn cairn(env: &Env) -> Command {
    let mut cmd = env.cairn_process();
    cmd.env("TEST_S3_SECRET", &objstores::s3().secret_key)
        .env(PW_VAR, PASSWORD)
        .env_remove("CAIRN_REPLICA");
    cmd
}

fn spawn_replica(env: &Env, id: &str) -> Child {
    let mut cmd = cairn(env);
    replica_command(env, id, &mut cmd)
        .spawn()
        .expect("start a replica")
}

fn replica_command<'a>(env: &Env, id: &str, cmd: &'a mut Command) -> &'a mut Command {
    cmd.env("CAIRN_LOG", "info")
        .env("CAIRN_REPLICA", id)
        .args(["--log-format", "json", "daemon"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(env.path(&format!("{id}.log"))).expect("log file"))
}

fn signal(pid: i32, signal: i32) {
    // SAFETY: signalling processes this test started (or their groups).
    unsafe {
        libc::kill(pid, signal);
    }
}

/// With `CAIRN_TEST_KEEP_LOGS=DIR`, the replicas' logs are copied there.
fn keep_logs(env: &Env, test: &str) {
    let Ok(dir) = std::env::var("CAIRN_TEST_KEEP_LOGS") else {
        return;
    };
    let target = std::path::Path::new(&dir).join(test);
    let _ = std::fs::create_dir_all(&target);
    for entry in std::fs::read_dir(env.dir.path()).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            let _ = std::fs::copy(entry.path(), target.join(entry.file_name()));
        }
    }
}

struct KeepLogs<'a>(&'a Env, String);

impl Drop for KeepLogs<'_> {
    fn drop(&mut self) {
        keep_logs(self.0, &self.1);
        if std::thread::panicking() {
            print_log_tails(self.0);
        }
    }
}

/// The last lines of every replica's log, into the failed test's output.
fn print_log_tails(env: &Env) {
    for entry in std::fs::read_dir(env.dir.path())
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.path().extension().is_some_and(|e| e == "log") {
            let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "--- last lines of {} ---\n{}",
                entry.path().display(),
                tail.join("\n")
            );
        }
    }
}

fn stop(mut replicas: Vec<Child>) {
    for r in &replicas {
        signal(r.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for r in &mut replicas {
        loop {
            if r.try_wait().expect("wait").is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = r.kill();
                panic!("a replica did not stop");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn json(env: &Env, args: &[&str]) -> serde_json::Value {
    let out = cairn(env).args(args).output().expect("cairn");
    assert!(
        out.status.success(),
        "cairn {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn backups(env: &Env) -> Vec<serde_json::Value> {
    json(
        env,
        &["history", "--json", "-n", "1000", "--kind", "backup"],
    )
    .as_array()
    .cloned()
    .unwrap_or_default()
}

fn artifacts(env: &Env) -> Vec<serde_json::Value> {
    json(env, &["list", "--json"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A cron expression (seconds first) that fires once a day, `secs` from now.
/// A backup run that is running: its id, the replica running it, its process.
struct Running {
    id: i64,
    replica: String,
    pid: i32,
}

/// Waits until each of `ids` has sent a heartbeat after all of them were in
/// the fleet table: each replica then read a fleet view that holds them all,
/// and so agrees with the others on which one alerts while the store is down.
/// (Two replicas that both start alone each think it is their turn.)
fn wait_for_a_fleet_view_of(env: &Env, ids: &[&str]) {
    let heartbeats = || -> BTreeMap<String, jiff::Timestamp> {
        let out = cairn(env).args(["status", "--json"]).output().unwrap();
        let status: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        status["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let at = r["last_heartbeat"].as_str()?.parse().ok()?;
                Some((r["id"].as_str()?.to_string(), at))
            })
            .collect()
    };
    let mut all_listed = None;
    wait_until(
        Duration::from_secs(30),
        "every replica in the fleet table",
        || {
            let listed = heartbeats();
            let all = ids.iter().all(|id| listed.contains_key(*id));
            all_listed = all.then(jiff::Timestamp::now);
            all
        },
    );
    let since = all_listed.expect("a time");
    wait_until(
        Duration::from_secs(30),
        "a heartbeat of every replica after that",
        || {
            let listed = heartbeats();
            ids.iter()
                .all(|id| listed.get(*id).is_some_and(|at| *at > since))
        },
    );
}

/// A backup that started at or after `since` and is running.
fn backup_started_after(env: &Env, since: jiff::Timestamp) -> Running {
    let mut running = None;
    wait_until(Duration::from_secs(30), "a backup run to start", || {
        running = backups(env).into_iter().find(|r| {
            r["status"] == "running"
                && r["started_at"]
                    .as_str()
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .is_some_and(|t| t >= since)
        });
        running.is_some()
    });
    let running = running.expect("a running backup");
    Running {
        id: running["id"].as_i64().expect("id"),
        replica: running["replica"].as_str().expect("replica").to_string(),
        pid: running["pid"].as_i64().expect("pid") as i32,
    }
}

/// Waits for a backup run to start.
fn running_backup(env: &Env) -> Running {
    backup_started_after(env, jiff::Timestamp::MIN)
}

fn once_in(secs: i64) -> String {
    let at = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(secs))
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC);
    format!("{} {} {} * * *", at.second(), at.minute(), at.hour())
}

fn three_replicas_run_every_fire_exactly_once(store: Store) {
    let env = Env::new();
    let _logs = KeepLogs(
        &env,
        format!("three_replicas_run_every_fire_exactly_once-{store:?}"),
    );
    env.write_config(&config(
        &env,
        &state_section(store),
        "lease = \"4s\"",
        r#"{ kind = "sqlite", path = "app.db" }"#,
        "schedules = [{ cron = \"*/2 * * * * *\" }]",
    ));
    let replicas: Vec<Child> = ["r1", "r2", "r3"]
        .iter()
        .map(|id| spawn_replica(&env, id))
        .collect();
    wait_until(Duration::from_secs(30), "three replicas up", || {
        let status = json(&env, &["status", "--json"]);
        status["replicas"]
            .as_array()
            .is_some_and(|r| r.iter().filter(|r| r["up"] == true).count() == 3)
    });
    let status = json(&env, &["status", "--json"]);
    assert_eq!(status["warnings"], serde_json::json!([]), "{status}");
    wait_until(Duration::from_secs(60), "ten successful backups", || {
        backups(&env)
            .iter()
            .filter(|r| r["status"] == "success")
            .count()
            >= 10
    });
    stop(replicas);

    let runs = backups(&env);
    assert!(
        runs.iter().all(|r| r["status"] == "success"),
        "every run succeeded: {runs:#?}"
    );
    let fires: BTreeSet<&str> = runs
        .iter()
        .map(|r| r["scheduled_for"].as_str().expect("scheduled_for"))
        .collect();
    assert_eq!(fires.len(), runs.len(), "one run per fire: {runs:#?}");
    for fire in &fires {
        let at: jiff::Timestamp = fire.parse().expect("RFC 3339");
        assert_eq!(at.as_second() % 2, 0, "{fire} is a fire of */2");
    }
    assert_eq!(artifacts(&env).len(), runs.len(), "one artifact per run");
    assert!(runs.iter().all(|r| r["trigger"] == "schedule"));
    let by: BTreeSet<&str> = runs
        .iter()
        .map(|r| r["replica"].as_str().expect("replica"))
        .collect();
    assert!(by.is_subset(&BTreeSet::from(["r1", "r2", "r3"])), "{by:?}");
    // The fleet view after a clean stop: all three known, none up.
    let status = json(&env, &["status", "--json"]);
    let replicas = status["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 3, "{status}");
    assert!(replicas.iter().all(|r| {
        r["up"] == false
            && r["config_fingerprint"]
                .as_str()
                .is_some_and(|f| f.len() == 64)
    }));
}

fn a_killed_replica_run_is_interrupted_and_run_again_once(store: Store) {
    let env = Env::new();
    let _logs = KeepLogs(
        &env,
        format!("a_killed_replica_run_is_interrupted_and_run_again_once-{store:?}"),
    );
    env.write_config(&config(
        &env,
        &state_section(store),
        "lease = \"3s\"",
        r#"{ kind = "command", backup = ["sh", "-c", "sleep 6; echo exported"], extension = "txt" }"#,
        &format!("schedules = [{{ cron = \"{}\" }}]", once_in(12)),
    ));
    let mut replicas: Vec<(String, Child)> = ["k1", "k2"]
        .iter()
        .map(|id| (id.to_string(), spawn_replica(&env, id)))
        .collect();
    let Running {
        replica: victim,
        pid: child_pid,
        ..
    } = running_backup(&env);
    // The whole replica dies: its daemon and the run's process group.
    let position = replicas.iter().position(|(id, _)| *id == victim).unwrap();
    let (_, mut dead) = replicas.remove(position);
    signal(dead.id() as i32, libc::SIGKILL);
    signal(-child_pid, libc::SIGKILL);
    let _ = dead.wait();

    wait_until(Duration::from_secs(40), "the re-run to succeed", || {
        backups(&env).iter().any(|r| r["status"] == "success")
    });
    let runs = backups(&env);
    assert_eq!(runs.len(), 2, "{runs:#?}");
    let (rerun, first) = (&runs[0], &runs[1]);
    assert_eq!(first["status"], "interrupted", "{first}");
    assert!(
        first["error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("abandoned by replica {victim}"))),
        "{first}"
    );
    assert_eq!(rerun["status"], "success");
    assert_ne!(rerun["replica"], first["replica"]);
    assert_eq!(rerun["scheduled_for"], first["scheduled_for"]);
    assert_eq!(artifacts(&env).len(), 1);
    // Once: no third run of that fire.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(backups(&env).len(), 2);
    stop(replicas.into_iter().map(|(_, c)| c).collect());
}

fn manual_runs_at_the_same_instant_one_runs_one_is_refused(store: Store) {
    let env = Env::new();
    let _logs = KeepLogs(
        &env,
        format!("manual_runs_at_the_same_instant_one_runs_one_is_refused-{store:?}"),
    );
    env.write_config(&config(
        &env,
        &state_section(store),
        "",
        r#"{ kind = "command", backup = ["sh", "-c", "sleep 2; echo exported"], extension = "txt" }"#,
        "",
    ));
    let runs: Vec<(&str, Child)> = ["m1", "m2"]
        .iter()
        .map(|id| {
            let mut cmd = cairn(&env);
            cmd.env("CAIRN_REPLICA", id)
                .args(["backup", "app"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            (*id, cmd.spawn().expect("backup"))
        })
        .collect();
    let outputs: Vec<(&str, std::process::Output)> = runs
        .into_iter()
        .map(|(id, c)| (id, c.wait_with_output().expect("wait")))
        .collect();
    let ok: Vec<&str> = outputs
        .iter()
        .filter(|(_, o)| o.status.success())
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(ok.len(), 1, "exactly one runs");
    let (_, refused) = outputs.iter().find(|(_, o)| !o.status.success()).unwrap();
    assert!(
        stderr(refused).contains(&format!("already running on replica {}", ok[0])),
        "{}",
        stderr(refused)
    );
    assert_eq!(artifacts(&env).len(), 1);
    let runs = backups(&env);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["replica"], ok[0]);
}

#[test]
fn a_schedule_override_applies_within_five_seconds_without_a_restart() {
    let env = Env::new();
    let _logs = KeepLogs(
        &env,
        "a_schedule_override_applies_within_five_seconds_without_a_restart".into(),
    );
    env.write_config(&config(
        &env,
        "",
        "",
        r#"{ kind = "sqlite", path = "app.db" }"#,
        "schedules = [{ cron = \"*/2 * * * * *\" }]",
    ));
    let replicas = vec![spawn_replica(&env, "o1")];
    wait_until(Duration::from_secs(30), "a scheduled backup", || {
        backups(&env).iter().any(|r| r["status"] == "success")
    });
    let store = cairn::state::open_path(&env.path("cairn-state.db")).expect("the store");
    store
        .set_schedule_override("app", Some(&cairn::state::ScheduleOverride::Disabled))
        .unwrap();
    let disabled_at = jiff::Timestamp::now();
    let out = cairn(&env).arg("status").output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("overridden: disabled"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::thread::sleep(Duration::from_secs(9));
    let late: Vec<serde_json::Value> = backups(&env)
        .into_iter()
        .filter(|r| {
            r["started_at"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .is_some_and(|t| t.as_second() > disabled_at.as_second() + 5)
        })
        .collect();
    assert!(late.is_empty(), "runs after the override: {late:#?}");
    // Another cron instead of the config's: every fire at an odd second.
    store
        .set_schedule_override(
            "app",
            Some(&cairn::state::ScheduleOverride::Cron {
                cron: "1-59/2 * * * * *".into(),
            }),
        )
        .unwrap();
    let changed_at = jiff::Timestamp::now();
    wait_until(
        Duration::from_secs(8),
        "a run on the overriding cron",
        || {
            backups(&env).iter().any(|r| {
                r["scheduled_for"]
                    .as_str()
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .is_some_and(|t| t.as_second() % 2 == 1 && t > changed_at)
            })
        },
    );
    let first = backups(&env)
        .into_iter()
        .filter_map(|r| r["scheduled_for"].as_str()?.parse::<jiff::Timestamp>().ok())
        .filter(|t| t.as_second() % 2 == 1)
        .min()
        .unwrap();
    assert!(
        first.as_second() - changed_at.as_second() <= 5,
        "applied {}s after the change",
        first.as_second() - changed_at.as_second()
    );
    stop(replicas);
}

#[test]
fn a_run_that_cannot_renew_its_lease_commits_nothing_and_the_replica_recovers() {
    let env = Env::new();
    let _logs = KeepLogs(
        &env,
        "a_run_that_cannot_renew_its_lease_commits_nothing_and_the_replica_recovers".into(),
    );
    env.write_config(&config(
        &env,
        "",
        "lease = \"3s\"\nshutdown_grace = \"5s\"",
        r#"{ kind = "command", backup = ["sh", "-c", "sleep 5; echo exported"], extension = "txt" }"#,
        &format!("schedules = [{{ cron = \"{}\" }}]", once_in(12)),
    ));
    let replicas = vec![spawn_replica(&env, "s1")];
    let run_id = running_backup(&env).id;
    // The store stops taking writes for longer than the lease.
    let lock = rusqlite::Connection::open(env.path("cairn-state.db")).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let locked_at = Instant::now();
    std::thread::sleep(Duration::from_secs(9));
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    assert!(locked_at.elapsed() >= Duration::from_secs(9));

    wait_until(Duration::from_secs(40), "the run to end", || {
        backups(&env)
            .iter()
            .any(|r| r["id"] == run_id && r["status"] != "running")
    });
    let runs = backups(&env);
    let run = runs.iter().find(|r| r["id"] == run_id).unwrap();
    assert_ne!(run["status"], "success", "{run}");
    assert!(
        run["error"].as_str().is_some_and(|e| e.contains("lease")),
        "the error names the lease: {run}"
    );
    // Nothing committed by the run that lost its lease; a re-run commits at most one.
    let listed = artifacts(&env);
    assert!(listed.len() <= 1, "{listed:#?}");
    assert_eq!(
        listed.len(),
        runs.iter().filter(|r| r["status"] == "success").count()
    );
    // The replica recovered without a restart: it heartbeats again.
    wait_until(Duration::from_secs(20), "the replica up again", || {
        json(&env, &["status", "--json"])["replicas"][0]["up"] == true
    });
    let log = std::fs::read_to_string(env.path("s1.log")).unwrap();
    assert!(log.contains("lease"), "{log}");
    stop(replicas);
}

/// A plain HTTP GET of `/metrics` on 127.0.0.1:`port`; `None` while nothing answers.
fn metrics(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.contains(" 200 ").then_some(response)
}

fn store_up_metric(port: u16) -> Option<f64> {
    metrics(port)?
        .lines()
        .find(|l| l.starts_with("cairn_state_store_up "))?
        .rsplit_once(' ')?
        .1
        .trim()
        .parse()
        .ok()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The kinds of the events the webhook receiver got.
fn event_kinds(hook: &common::receivers::HttpReceiver) -> Vec<String> {
    hook.requests()
        .iter()
        .filter_map(|r| r.json()["kind"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn postgres_stopped_longer_than_the_lease_then_started_the_fleet_recovers_without_a_restart() {
    let pg = servers::start_postgres();
    let db = servers::rand_name();
    pg.create_db(&db);
    let hook = common::receivers::HttpReceiver::start();
    let env = Env::new();
    let _logs = KeepLogs(
        &env,
        "postgres_stopped_longer_than_the_lease_then_started_the_fleet_recovers_without_a_restart"
            .into(),
    );
    let channel = format!(
        "[notify.ops]\nkind = \"webhook\"\nurl = \"{}\"\n\n",
        hook.url("/ops")
    );
    env.write_config(&config(
        &env,
        &format!("{}{channel}", pg_state(&pg.url_without_password(&db))),
        "lease = \"3s\"\nshutdown_grace = \"5s\"\nlisten = \"127.0.0.1:${CAIRN_TEST_PORT:-0}\"",
        r#"{ kind = "command", backup = ["sh", "-c", "sleep 6; echo exported"], extension = "txt" }"#,
        "schedules = [{ cron = \"*/10 * * * * *\" }]\nnotify = [\"ops\"]",
    ));
    let ports: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let replicas: Vec<Child> = ["s1", "s2"]
        .iter()
        .zip(&ports)
        .map(|(id, port)| {
            let mut cmd = cairn(&env);
            cmd.env("CAIRN_TEST_PORT", port.to_string());
            replica_command(&env, id, &mut cmd)
                .spawn()
                .expect("start a replica")
        })
        .collect();
    for port in &ports {
        wait_until(
            Duration::from_secs(30),
            "/metrics with the store up",
            || store_up_metric(*port) == Some(1.0),
        );
    }
    wait_for_a_fleet_view_of(&env, &["s1", "s2"]);
    // A run just started, so that PostgreSQL stops well before it commits.
    let run_id = backup_started_after(&env, jiff::Timestamp::now()).id;

    // PostgreSQL goes away for longer than the lease, mid-run.
    pg.stop();
    let stopped_at = Instant::now();
    for port in &ports {
        wait_until(
            Duration::from_secs(20),
            "/metrics with the store down",
            || store_up_metric(*port) == Some(0.0),
        );
    }
    let out = cairn(&env).arg("status").output().unwrap();
    let said = format!("{}{}", common::stdout(&out), stderr(&out));
    assert!(
        said.contains("state store postgres://postgres@127.0.0.1"),
        "`cairn status` names the state store: {said}"
    );
    assert!(!said.contains(PASSWORD));
    wait_until(Duration::from_secs(20), "the store-down alert", || {
        event_kinds(&hook).iter().any(|k| k == "state_store_down")
    });
    while stopped_at.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
    }
    pg.start();
    let started_at = jiff::Timestamp::now();

    wait_until(Duration::from_secs(40), "the cut-off run settled", || {
        backups(&env)
            .iter()
            .any(|r| r["id"] == run_id && r["status"] != "running")
    });
    // Resumed without a restart: a fire after PostgreSQL came back succeeds.
    wait_until(Duration::from_secs(90), "a later fire to succeed", || {
        backups(&env).iter().any(|r| {
            r["status"] == "success"
                && r["scheduled_for"]
                    .as_str()
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .is_some_and(|t| t > started_at)
        })
    });
    for port in &ports {
        wait_until(
            Duration::from_secs(20),
            "/metrics with the store up again",
            || store_up_metric(*port) == Some(1.0),
        );
    }
    wait_until(Duration::from_secs(20), "the recovery notification", || {
        event_kinds(&hook)
            .iter()
            .any(|k| k == "state_store_recovered")
    });
    stop(replicas);

    let runs = backups(&env);
    let cut = runs.iter().find(|r| r["id"] == run_id).unwrap();
    assert_ne!(cut["status"], "success", "{cut}");
    assert!(cut["artifact_id"].is_null(), "{cut}");
    // At most one committed artifact per fire, and none from the cut-off run.
    let successes: Vec<&serde_json::Value> =
        runs.iter().filter(|r| r["status"] == "success").collect();
    let fires: BTreeSet<&str> = successes
        .iter()
        .map(|r| r["scheduled_for"].as_str().expect("scheduled_for"))
        .collect();
    assert_eq!(fires.len(), successes.len(), "{runs:#?}");
    let listed = artifacts(&env);
    assert_eq!(listed.len(), successes.len(), "{listed:#?}\n{runs:#?}");
    let committed: BTreeSet<&str> = successes
        .iter()
        .filter_map(|r| r["artifact_id"].as_str())
        .collect();
    assert!(
        listed
            .iter()
            .all(|a| committed.contains(a["id"].as_str().unwrap_or_default())),
        "{listed:#?}"
    );
    // The logs name the state store; the alerts went out once for the fleet.
    let logs: String = ["s1", "s2"]
        .iter()
        .map(|id| std::fs::read_to_string(env.path(&format!("{id}.log"))).unwrap())
        .collect();
    assert!(logs.contains("the state store is unreachable"), "{logs}");
    assert!(logs.contains("state store postgres://postgres@127.0.0.1"));
    assert!(!logs.contains(PASSWORD));
    let kinds = event_kinds(&hook);
    let count = |kind: &str| kinds.iter().filter(|k| *k == kind).count();
    assert_eq!(count("state_store_down"), 1, "{kinds:?}");
    assert_eq!(count("state_store_recovered"), 1, "{kinds:?}");
}

/// A replica in a UTS namespace of its own, named `host-ID`: as if on
/// another machine sharing the destination folder (as over NFS).
fn spawn_replica_on_own_host(env: &Env, id: &str) -> Child {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() == 0 };
    let mut cmd = Command::new("unshare");
    if !root {
        cmd.arg("--map-root-user");
    }
    cmd.args([
        "--uts",
        "sh",
        "-c",
        "hostname \"$1\" && shift && exec \"$@\"",
        "sh",
    ])
    .arg(format!("host-{id}"))
    .arg(assert_cmd::cargo::cargo_bin("cairn"))
    .arg("--config")
    .arg(env.config_path())
    .current_dir(env.dir.path())
    .env_remove("CAIRN_CONFIG")
    .env(PW_VAR, PASSWORD);
    replica_command(env, id, &mut cmd)
        .spawn()
        .expect("start a replica (unshare, util-linux)")
}

/// The unfinished uploads in the shared folder's `app/.partial/`.
fn partials(env: &Env) -> Vec<String> {
    std::fs::read_dir(env.path("shared/app/.partial"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn gc_collects_a_dead_replicas_partial_upload_and_never_a_live_ones() {
    let db = servers::rand_name();
    servers::postgres().create_db(&db);
    let env = Env::new();
    let _logs = KeepLogs(
        &env,
        "gc_collects_a_dead_replicas_partial_upload_and_never_a_live_ones".into(),
    );
    let shared = format!(
        "{}[destinations.shared]\nkind = \"fs\"\npath = \"shared\"\n\n",
        pg_state(&servers::postgres().url_without_password(&db))
    );
    env.write_config(&config_with(
        &env,
        &shared,
        "lease = \"3s\"",
        r#"{ kind = "command", backup = ["sh", "-c", "echo begun; sleep 8; echo exported"], extension = "txt" }"#,
        &format!("schedules = [{{ cron = \"{}\" }}]", once_in(12)),
    ));
    let mut replicas: Vec<(String, Child)> = ["g1", "g2"]
        .iter()
        .map(|id| (id.to_string(), spawn_replica_on_own_host(&env, id)))
        .collect();
    let Running {
        replica: victim,
        pid: child_pid,
        ..
    } = running_backup(&env);
    wait_until(Duration::from_secs(10), "its upload to begin", || {
        partials(&env).len() == 1
    });
    let position = replicas.iter().position(|(id, _)| *id == victim).unwrap();
    let (_, mut dead) = replicas.remove(position);
    signal(dead.id() as i32, libc::SIGKILL);
    signal(-child_pid, libc::SIGKILL);
    let _ = dead.wait();
    let left = partials(&env);
    assert!(
        left.len() == 1 && left[0].ends_with(&format!("-host-{victim}")),
        "{left:?}"
    );

    wait_until(Duration::from_secs(40), "the re-run to succeed", || {
        backups(&env).iter().any(|r| r["status"] == "success")
    });
    assert_eq!(
        partials(&env),
        left,
        "the dead replica's upload is still there"
    );
    let out = cairn(&env)
        .args(["--json", "gc", "app", "--grace", "2s"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let removed = reports[0]["removed"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(removed.len(), 1, "{reports}");
    assert_eq!(removed[0]["reason"], "unfinished upload");
    assert!(partials(&env).is_empty(), "{:?}", partials(&env));
    assert_eq!(artifacts(&env).len(), 1);

    // A live replica's upload: gc is refused while its lease holds the job.
    let mut live = cairn(&env);
    let live = live
        .env("CAIRN_REPLICA", "live")
        .args(["backup", "app"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(20), "the live upload to begin", || {
        partials(&env).len() == 1
    });
    let out = cairn(&env)
        .args(["--json", "gc", "app", "--grace", "1s"])
        .output()
        .unwrap();
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        reports[0]["skipped"]
            .as_str()
            .is_some_and(|s| s.contains("already running on replica live")),
        "{reports}"
    );
    assert_eq!(partials(&env).len(), 1, "the live upload is untouched");
    let done = live.wait_with_output().unwrap();
    assert!(done.status.success(), "{}", stderr(&done));
    assert_eq!(artifacts(&env).len(), 2);
    assert!(partials(&env).is_empty());
    stop(replicas.into_iter().map(|(_, c)| c).collect());
}
