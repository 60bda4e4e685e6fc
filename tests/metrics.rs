//! Metrics: a running `cairn daemon` serves `/metrics` on `[daemon] listen`;
//! the output passes `promtool check metrics` and carries the expected values
//! after a backup, a failed backup, recorded restore drills and scheduled
//! checks. One-shot runs write a textfile and push to a (real HTTP) gateway.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn::state::{NewRun, RunEnd, RunKind, Trigger};
use common::receivers::{HttpReceiver, closed_port};
use common::{Env, stderr};

const JOBS: &str = "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[jobs.app]\nsource = { kind = \"sqlite\", path = \"app.db\" }\ndestinations = [\"local\"]\nencryption = { kind = \"none\" }\n\n[jobs.broken]\nsource = { kind = \"sqlite\", path = \"missing.db\" }\ndestinations = [\"local\"]\nencryption = { kind = \"none\" }\n";

/// A plain HTTP/1.1 GET; returns (status, body).
fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // Chunked bodies: keep the data lines only.
    let body = if response
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// `name{labels}` → value, from the text format.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn hostname() -> String {
    let out = Command::new("hostname").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn promtool(text: &str) {
    common::require_tool("promtool");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn record(env: &Env, job: &str, kind: RunKind, success: bool, started_ago_secs: i64) {
    let store = cairn::state::open_path(&env.path("cairn-state.db")).unwrap();
    let started = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(started_ago_secs);
    let id = store
        .start_run(&NewRun {
            job: job.into(),
            kind,
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
                error: (!success).then(|| "the restored copy failed its checks".to_string()),
                ..RunEnd::default()
            },
            "",
        )
        .unwrap();
}

#[test]
fn the_daemon_serves_metrics_that_promtool_accepts_with_the_expected_values() {
    let env = Env::new();
    common::create_sample_db(&env.path("app.db"), 20);
    let port = closed_port();
    env.write_config(&format!(
        "[daemon]\nlisten = \"127.0.0.1:{port}\"\n\n{JOBS}\n[checks.disk]\nkind = \"disk\"\npath = \".\"\nmin_free_percent = 0.001\ninterval = \"1s\"\n\n[checks.full]\nkind = \"disk\"\npath = \".\"\nmin_free = \"100000TiB\"\ninterval = \"1s\"\n"
    ));
    let before = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
    let artifact = env.backup("app");
    let after = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
    let out = env.cairn().args(["backup", "broken"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    record(&env, "app", RunKind::Drill, true, 120);
    record(&env, "broken", RunKind::Drill, false, 5);

    let daemon = Daemon(
        Command::new(assert_cmd::cargo::cargo_bin("cairn"))
            .current_dir(env.dir.path())
            .env_remove("CAIRN_LOG")
            .arg("--config")
            .arg(env.config_path())
            .arg("daemon")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Wait for the server, then for the scheduled checks to have run.
    let start = Instant::now();
    let text = loop {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no check metrics from the daemon"
        );
        if let Ok((200, body)) = get(port, "/metrics")
            && body.contains("cairn_check_up{check=\"full\"}")
            && body.contains("cairn_check_up{check=\"disk\"}")
        {
            break body;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(get(port, "/healthz").unwrap(), (200, "ok\n".to_string()));
    assert_eq!(get(port, "/nothing").unwrap().0, 404);
    promtool(&text);

    let m = samples(&text);
    let value = |key: &str| *m.get(key).unwrap_or_else(|| panic!("no {key} in\n{text}"));
    let last_success = value("cairn_backup_last_success_timestamp_seconds{job=\"app\"}");
    assert!(
        (before..=after + 1.0).contains(&last_success),
        "{before} {last_success} {after}"
    );
    assert!(!m.contains_key("cairn_backup_last_success_timestamp_seconds{job=\"broken\"}"));
    assert!(value("cairn_backup_duration_seconds{job=\"app\"}") >= 0.0);
    assert_eq!(value("cairn_backup_last_run_success{job=\"app\"}"), 1.0);
    assert_eq!(value("cairn_backup_last_run_success{job=\"broken\"}"), 0.0);
    assert_eq!(
        value("cairn_backup_size_bytes{job=\"app\",destination=\"local\"}"),
        artifact["size"].as_u64().unwrap() as f64
    );
    assert_eq!(
        value("cairn_destination_artifacts{job=\"app\",destination=\"local\"}"),
        1.0
    );
    assert_eq!(
        value("cairn_destination_artifacts{job=\"broken\",destination=\"local\"}"),
        0.0
    );
    assert_eq!(
        value("cairn_runs_total{job=\"app\",kind=\"backup\",status=\"success\"}"),
        1.0
    );
    assert_eq!(
        value("cairn_runs_total{job=\"broken\",kind=\"backup\",status=\"failure\"}"),
        1.0
    );
    assert_eq!(
        value("cairn_runs_total{job=\"app\",kind=\"drill\",status=\"success\"}"),
        1.0
    );
    assert_eq!(
        value("cairn_runs_total{job=\"broken\",kind=\"drill\",status=\"failure\"}"),
        1.0
    );
    let drill_at = value("cairn_drill_last_success_timestamp_seconds{job=\"app\"}");
    assert!((after..=jiff::Timestamp::now().as_second() as f64 + 1.0).contains(&drill_at));
    let drill_duration = value("cairn_drill_duration_seconds{job=\"app\"}");
    assert!(
        (119.0..=130.0).contains(&drill_duration),
        "{drill_duration}"
    );
    assert_eq!(value("cairn_drill_last_run_success{job=\"app\"}"), 1.0);
    assert_eq!(value("cairn_drill_last_run_success{job=\"broken\"}"), 0.0);
    assert!(!m.contains_key("cairn_drill_last_success_timestamp_seconds{job=\"broken\"}"));
    assert_eq!(value("cairn_check_up{check=\"disk\"}"), 1.0);
    assert_eq!(value("cairn_check_up{check=\"full\"}"), 0.0);
    assert!(value("cairn_check_duration_seconds{check=\"disk\"}") < 5.0);
    assert!(value("process_start_time_seconds") > before - 5.0);
    assert!(value("process_resident_memory_bytes") > 0.0);
    let kinds = text
        .lines()
        .filter(|l| l.starts_with("# TYPE cairn_runs_total counter"))
        .count();
    assert_eq!(kinds, 1);

    // A reload adds a check: the daemon schedules it and /metrics shows it.
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    env.write_config(&format!(
        "{config}\n[checks.extra]\nkind = \"disk\"\npath = \".\"\nmin_free_percent = 0.001\ninterval = \"1s\"\n"
    ));
    let out = env.cairn().arg("reload").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the reloaded check never showed"
        );
        if let Ok((200, body)) = get(port, "/metrics")
            && body.contains("cairn_check_up{check=\"extra\"} 1")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // SIGTERM stops the daemon and its server.
    let pid = daemon.0.id() as i32;
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut daemon = daemon;
    let start = Instant::now();
    while daemon.0.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the daemon did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        get(port, "/metrics").is_err(),
        "the server stopped with the daemon"
    );
}

#[test]
fn one_shot_runs_write_a_textfile_and_push_to_a_gateway() {
    let env = Env::new();
    common::create_sample_db(&env.path("app.db"), 5);
    let gateway = HttpReceiver::start();
    env.write_config(&format!(
        "[metrics]\ntextfile = \"node/cairn.prom\"\npush_url = \"{}\"\n\n{JOBS}",
        gateway.url("")
    ));
    std::fs::create_dir(env.path("node")).unwrap();
    env.backup("app");
    let text = std::fs::read_to_string(env.path("node/cairn.prom")).unwrap();
    promtool(&text);
    assert!(
        !text.contains("process_"),
        "a one-shot run's own process metrics are not exported"
    );
    assert_eq!(
        samples(&text)["cairn_runs_total{job=\"app\",kind=\"backup\",status=\"success\"}"],
        1.0
    );
    let pushed = gateway.wait_for(1, Duration::from_secs(10));
    let host = hostname();
    assert_eq!(
        pushed[0].path,
        format!("/metrics/job/cairn/instance/{host}")
    );
    assert!(
        pushed[0]
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    assert!(
        pushed[0]
            .text()
            .contains("cairn_backup_last_success_timestamp_seconds{job=\"app\"}")
    );
    assert!(
        !env.path("node").read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp"))
    );

    // `cairn metrics` prints the same on stdout; --textfile writes elsewhere.
    let out = env.cairn().arg("metrics").output().unwrap();
    assert!(out.status.success());
    promtool(&String::from_utf8_lossy(&out.stdout));
    let out = env
        .cairn()
        .args(["metrics", "--textfile", "other.prom"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(env.path("other.prom").exists());
    // An unreachable gateway fails the verb, but never a backup.
    let out = env
        .cairn()
        .args([
            "metrics",
            "--push",
            &format!("http://127.0.0.1:{}", closed_port()),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_listen_address_in_use_is_a_clear_error() {
    let env = Env::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    env.write_config(&format!(
        "[daemon]\nlisten = \"127.0.0.1:{port}\"\n\n{JOBS}"
    ));
    let out = env
        .cairn()
        .arg("daemon")
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{}",
        stderr(&out)
    );
}
