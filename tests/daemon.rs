//! The daemon in real time: a seconds-field schedule produces runs, artifacts
//! and history; SIGTERM during a run commits nothing; reload, catch-up at start,
//! systemd readiness.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Env, create_sample_db, stderr, stdout};

fn spawn_daemon(env: &Env, extra_env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("cairn"));
    cmd.current_dir(env.dir.path())
        .env_remove("CAIRN_CONFIG")
        .env("CAIRN_LOG", "info")
        .arg("--config")
        .arg(env.config_path())
        .args(["--log-format", "json", "daemon"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(env.path("daemon.log")).expect("log file"));
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start the daemon")
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
}

/// Waits for the child to exit, at most `limit`; kills it (and fails) if not.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the daemon did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn history(env: &Env) -> Vec<serde_json::Value> {
    let out = env
        .cairn()
        .args(["history", "--json", "-n", "200"])
        .output()
        .unwrap();
    assert!(out.status.success(), "history: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("history --json")
}

fn sqlite_job_config(env: &Env, extra: &str) -> String {
    create_sample_db(&env.path("app.db"), 200);
    format!(
        "{}{extra}",
        env.single_job_config(
            r#"{ kind = "sqlite", path = "app.db" }"#,
            r#"{ kind = "none" }"#
        )
    )
}

#[test]
fn a_seconds_schedule_makes_runs_artifacts_and_history_and_prunes() {
    let env = Env::new();
    env.write_config(&sqlite_job_config(
        &env,
        "schedules = [{ cron = \"*/2 * * * * *\", tag = \"frequent\" }]\nretention = { keep_last = 2 }\n",
    ));
    let mut daemon = spawn_daemon(&env, &[]);
    wait_until(Duration::from_secs(40), "three successful backups", || {
        history(&env)
            .iter()
            .filter(|r| r["kind"] == "backup" && r["status"] == "success")
            .count()
            >= 3
    });
    signal(&daemon, libc::SIGTERM);
    let status = wait_exit(&mut daemon, Duration::from_secs(30));
    assert!(status.success(), "daemon exit: {status:?}");

    let runs = history(&env);
    let backups: Vec<_> = runs.iter().filter(|r| r["kind"] == "backup").collect();
    assert!(backups.iter().all(|r| r["trigger"] == "schedule"));
    assert!(
        backups
            .iter()
            .all(|r| r["status"] == "success" || r["status"] == "interrupted"),
        "{backups:?}"
    );
    assert!(
        runs.iter()
            .any(|r| r["kind"] == "prune" && r["status"] == "success")
    );
    // keep_last = 2: prune after each backup leaves the two newest.
    let listed = env.list();
    assert_eq!(listed.len(), 2, "keep_last = 2 after each backup");
    for entry in &listed {
        assert_eq!(entry["tag"], "frequent", "{entry}");
    }
    // Fires wake on time: the daemon logged lateness for each run.
    let log = std::fs::read_to_string(env.path("daemon.log")).unwrap();
    let lateness: Vec<i64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "run started")
        .filter_map(|v| v["fields"]["lateness_ms"].as_i64())
        .collect();
    assert!(lateness.len() >= 3, "{log}");
    assert!(
        lateness.iter().all(|&ms| (0..1000).contains(&ms)),
        "{lateness:?}"
    );
    // A run's log is kept in the history.
    let id = backups[0]["id"].as_i64().unwrap();
    let out = env
        .cairn()
        .args(["history", "--run", &id.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("artifact committed"),
        "{}",
        stdout(&out)
    );
    // status after the daemon stopped.
    let out = env.cairn().args(["status", "--json"]).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(status["daemon"].is_null());
    let job = &status["jobs"][0];
    assert_eq!(job["last_run"]["status"], "success");
    assert!(job["next_run"].is_string());
    assert_eq!(job["schedules"][0]["tag"], "frequent");
    assert!(job["newest_good"]["age_seconds"].as_i64().unwrap() < 60);
}

#[test]
fn sigterm_during_a_run_aborts_it_after_the_grace_period_and_commits_nothing() {
    let env = Env::new();
    // A marker to find the dump program among the machine's processes.
    let marker = format!("60.{}", std::process::id());
    env.write_config(
        &(env.single_job_config(
            &format!(
                r#"{{ kind = "command", backup = ["sh", "-c", "head -c 65536 /dev/urandom; sleep {marker}"] }}"#
            ),
            r#"{ kind = "none" }"#,
        ) + "schedules = [{ cron = \"* * * * * *\" }]\n[daemon]\nshutdown_grace = \"1s\"\n"),
    );
    let mut daemon = spawn_daemon(&env, &[]);
    wait_until(Duration::from_secs(30), "a running backup", || {
        history(&env).iter().any(|r| r["status"] == "running")
    });
    let stopped = Instant::now();
    signal(&daemon, libc::SIGTERM);
    let status = wait_exit(&mut daemon, Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    assert!(
        stopped.elapsed() >= Duration::from_secs(1),
        "the grace period was not given"
    );
    assert!(
        env.list().is_empty(),
        "an aborted run committed an artifact"
    );
    // Nothing under the job folder but (at most) an empty .partial folder.
    let job_folder = env.path("backups/app");
    if job_folder.exists() {
        for entry in walk(&job_folder) {
            assert!(entry.is_dir(), "left behind: {}", entry.display());
        }
    }
    // The run ended as a failure that says why (or was marked interrupted).
    wait_until(Duration::from_secs(10), "the run to be closed", || {
        history(&env).iter().all(|r| r["status"] != "running")
    });
    let runs = history(&env);
    assert!(
        runs.iter()
            .all(|r| r["status"] == "failure" || r["status"] == "interrupted"),
        "{runs:?}"
    );
    // The dump program was stopped with its run.
    let out = Command::new("pgrep")
        .args(["-f", &format!("sleep {marker}")])
        .output()
        .unwrap();
    assert!(
        stdout(&out).trim().is_empty(),
        "the dump program outlived its run: {}",
        stdout(&out)
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

#[test]
fn reload_applies_a_good_config_and_refuses_a_bad_one() {
    let env = Env::new();
    let base = sqlite_job_config(&env, "schedules = [{ cron = \"0 0 1 1 *\" }]\n");
    env.write_config(&base);
    let mut daemon = spawn_daemon(&env, &[]);
    wait_until(Duration::from_secs(20), "the daemon to start", || {
        let out = env.cairn().args(["status", "--json"]).output().unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .is_ok_and(|v| v["daemon"]["pid"].as_u64() == Some(daemon.id() as u64))
    });
    // A bad config is refused before the daemon is even asked.
    env.write_config(&(base.clone() + "bogus_key = 1\n"));
    let out = env.cairn().arg("reload").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("bogus_key"), "{}", stderr(&out));
    // A bad config sent by SIGHUP directly is refused by the daemon, which keeps running.
    signal(&daemon, libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon died");
    // A good one is applied.
    env.write_config(&base.replace("0 0 1 1 *", "*/5 * * * * *"));
    let out = env.cairn().arg("reload").output().unwrap();
    assert!(out.status.success(), "{} {}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("reloaded"));
    wait_until(Duration::from_secs(30), "a run of the new schedule", || {
        history(&env).iter().any(|r| r["kind"] == "backup")
    });
    signal(&daemon, libc::SIGTERM);
    assert!(wait_exit(&mut daemon, Duration::from_secs(30)).success());
    let log = std::fs::read_to_string(env.path("daemon.log")).unwrap();
    assert!(log.contains("the new configuration is invalid"), "{log}");
}

#[test]
fn missed_runs_are_caught_up_once_at_start() {
    let env = Env::new();
    env.write_config(&sqlite_job_config(
        &env,
        "schedules = [{ cron = \"0 3 * * *\" }]\n",
    ));
    // A first start records when the schedule was last handled.
    let mut daemon = spawn_daemon(&env, &[]);
    wait_until(Duration::from_secs(20), "the state store", || {
        env.path("cairn-state.db").exists()
    });
    std::thread::sleep(Duration::from_millis(500));
    signal(&daemon, libc::SIGTERM);
    assert!(wait_exit(&mut daemon, Duration::from_secs(20)).success());
    assert!(history(&env).is_empty(), "nothing was due yet");
    // The daemon was down for three days.
    let conn = rusqlite::Connection::open(env.path("cairn-state.db")).unwrap();
    let three_days_ago = jiff::Timestamp::now().as_millisecond() - 3 * 86_400_000;
    let changed = conn
        .execute("UPDATE schedule_marks SET at = ?1", [three_days_ago])
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);
    let mut daemon = spawn_daemon(&env, &[]);
    wait_until(Duration::from_secs(30), "the catch-up run", || {
        history(&env)
            .iter()
            .any(|r| r["kind"] == "backup" && r["status"] != "running")
    });
    std::thread::sleep(Duration::from_secs(1));
    signal(&daemon, libc::SIGTERM);
    assert!(wait_exit(&mut daemon, Duration::from_secs(20)).success());
    let backups: Vec<_> = history(&env)
        .into_iter()
        .filter(|r| r["kind"] == "backup")
        .collect();
    assert_eq!(backups.len(), 1, "three missed days are caught up once");
    assert_eq!(backups[0]["trigger"], "catch-up");
    assert_eq!(backups[0]["status"], "success");
}

#[test]
fn tells_systemd_when_ready_and_when_stopping() {
    let env = Env::new();
    env.write_config(&sqlite_job_config(
        &env,
        "schedules = [{ cron = \"0 3 * * *\" }]\n",
    ));
    let socket_path = env.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut daemon = spawn_daemon(&env, &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())]);
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("a notification");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
    signal(&daemon, libc::SIGTERM);
    let n = socket.recv(&mut buf).expect("a stop notification");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    assert!(wait_exit(&mut daemon, Duration::from_secs(20)).success());
}

#[test]
fn a_second_daemon_on_the_same_state_store_is_refused() {
    let env = Env::new();
    env.write_config(&sqlite_job_config(
        &env,
        "schedules = [{ cron = \"0 3 * * *\" }]\n",
    ));
    let mut daemon = spawn_daemon(&env, &[]);
    wait_until(Duration::from_secs(20), "the daemon to start", || {
        let out = env.cairn().args(["status", "--json"]).output().unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .is_ok_and(|v| v["daemon"]["pid"].is_u64())
    });
    let out = env.cairn().arg("daemon").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("already runs"), "{}", stderr(&out));
    signal(&daemon, libc::SIGINT);
    assert!(wait_exit(&mut daemon, Duration::from_secs(20)).success());
}
