//! Several real daemons (replicas) on one state store and one S3 destination
//! (SeaweedFS): every fire runs exactly once, a killed replica's run is
//! recorded interrupted and re-run once, manual runs are refused while one
//! runs, schedule overrides apply within 5 s, and a run that cannot renew its
//! lease never commits.

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::objstores::{self, unique_name};
use common::{Env, create_sample_db, stderr};

fn s3_destination(bucket: &str) -> String {
    let s3 = objstores::s3();
    format!(
        "[destinations.shared]\nkind = \"s3\"\nbucket = \"{bucket}\"\nprefix = \"fleet\"\nendpoint = \"{}\"\nregion = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"${{TEST_S3_SECRET}}\"\n\n",
        s3.endpoint(),
        s3.region,
        s3.access_key
    )
}

/// A config with the shared S3 destination, `[daemon]` settings and one job `app`.
fn config(env: &Env, daemon: &str, source: &str, job_extra: &str) -> String {
    let bucket = unique_name("fleet");
    objstores::s3().create_bucket(&bucket);
    create_sample_db(&env.path("app.db"), 50);
    format!(
        "{}[daemon]\n{daemon}\n\n[jobs.app]\nsource = {source}\ndestinations = [\"shared\"]\nencryption = {{ kind = \"none\" }}\n{job_extra}\n",
        s3_destination(&bucket)
    )
}

fn cairn(env: &Env) -> Command {
    let mut cmd = env.cairn_process();
    cmd.env("TEST_S3_SECRET", &objstores::s3().secret_key)
        .env_remove("CAIRN_REPLICA");
    cmd
}

fn spawn_replica(env: &Env, id: &str) -> Child {
    let mut cmd = cairn(env);
    cmd.env("CAIRN_LOG", "info")
        .env("CAIRN_REPLICA", id)
        .args(["--log-format", "json", "daemon"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(env.path(&format!("{id}.log"))).expect("log file"));
    cmd.spawn().expect("start a replica")
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

struct KeepLogs<'a>(&'a Env, &'static str);

impl Drop for KeepLogs<'_> {
    fn drop(&mut self) {
        keep_logs(self.0, self.1);
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
fn once_in(secs: i64) -> String {
    let at = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(secs))
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC);
    format!("{} {} {} * * *", at.second(), at.minute(), at.hour())
}

#[test]
fn three_replicas_run_every_fire_exactly_once() {
    let env = Env::new();
    let _logs = KeepLogs(&env, "three_replicas_run_every_fire_exactly_once");
    env.write_config(&config(
        &env,
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

#[test]
fn a_killed_replica_run_is_interrupted_and_run_again_once() {
    let env = Env::new();
    let _logs = KeepLogs(
        &env,
        "a_killed_replica_run_is_interrupted_and_run_again_once",
    );
    env.write_config(&config(
        &env,
        "lease = \"3s\"",
        r#"{ kind = "command", backup = ["sh", "-c", "sleep 6; echo exported"], extension = "txt" }"#,
        &format!("schedules = [{{ cron = \"{}\" }}]", once_in(6)),
    ));
    let mut replicas: Vec<(String, Child)> = ["k1", "k2"]
        .iter()
        .map(|id| (id.to_string(), spawn_replica(&env, id)))
        .collect();
    let mut running = None;
    wait_until(Duration::from_secs(30), "the run to start", || {
        running = backups(&env).into_iter().find(|r| r["status"] == "running");
        running.is_some()
    });
    let running = running.unwrap();
    let victim = running["replica"].as_str().unwrap().to_string();
    let child_pid = running["pid"].as_i64().unwrap() as i32;
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

#[test]
fn manual_runs_at_the_same_instant_one_runs_one_is_refused() {
    let env = Env::new();
    let _logs = KeepLogs(
        &env,
        "manual_runs_at_the_same_instant_one_runs_one_is_refused",
    );
    env.write_config(&config(
        &env,
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
        "a_schedule_override_applies_within_five_seconds_without_a_restart",
    );
    env.write_config(&config(
        &env,
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
        "a_run_that_cannot_renew_its_lease_commits_nothing_and_the_replica_recovers",
    );
    env.write_config(&config(
        &env,
        "lease = \"3s\"\nshutdown_grace = \"5s\"",
        r#"{ kind = "command", backup = ["sh", "-c", "sleep 5; echo exported"], extension = "txt" }"#,
        &format!("schedules = [{{ cron = \"{}\" }}]", once_in(5)),
    ));
    let replicas = vec![spawn_replica(&env, "s1")];
    let mut running = None;
    wait_until(Duration::from_secs(30), "the run to start", || {
        running = backups(&env).into_iter().find(|r| r["status"] == "running");
        running.is_some()
    });
    let run_id = running.unwrap()["id"].as_i64().unwrap();
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
