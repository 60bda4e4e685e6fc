//! A run whose process is killed (kill -9, the OOM killer) does not stay
//! "running": the next cairn command records it as interrupted, metrics count
//! it as a failure, and it is alerted once.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::receivers::HttpReceiver;
use common::{Env, stderr, stdout};

fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn history(env: &Env) -> Vec<serde_json::Value> {
    let out = env.cairn().args(["history", "--json"]).output().unwrap();
    assert!(out.status.success(), "history: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("history --json")
}

#[test]
fn a_killed_backup_is_recorded_as_interrupted_counted_and_alerted() {
    let env = Env::new();
    let hook = HttpReceiver::start();
    let marker = format!("61.{}", std::process::id());
    env.write_config(&format!(
        "{}notify = [\"ops\"]\n\n[notify.ops]\nkind = \"webhook\"\nurl = \"{}\"\n",
        env.single_job_config(
            &format!(
                r#"{{ kind = "command", backup = ["sh", "-c", "head -c 1000 /dev/urandom; sleep {marker}"] }}"#
            ),
            r#"{ kind = "none" }"#,
        ),
        hook.url("/hook")
    ));
    let mut backup = env
        .cairn_process()
        .args(["backup", "app"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(30), "the running backup", || {
        history(&env).iter().any(|r| r["status"] == "running")
    });
    backup.kill().unwrap(); // SIGKILL: no chance to record anything
    backup.wait().unwrap();
    let _ = Command::new("pkill")
        .args(["-f", &format!("sleep {marker}")])
        .status();

    let runs = history(&env);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["status"], "interrupted", "{runs:?}");
    assert!(
        runs[0]["error"]
            .as_str()
            .unwrap()
            .contains("ended before it finished"),
        "{runs:?}"
    );

    let out = env.cairn().arg("metrics").output().unwrap();
    let metrics = stdout(&out);
    assert!(
        metrics.contains("cairn_backup_last_run_success{job=\"app\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cairn_runs_total{job=\"app\",kind=\"backup\",status=\"interrupted\"} 1"),
        "{metrics}"
    );

    let alerts = hook.wait_for(1, Duration::from_secs(10));
    assert_eq!(
        alerts[0].json()["kind"],
        "backup_failed",
        "{:?}",
        alerts[0].text()
    );
    // Later commands see it settled and do not alert again (delivery is done
    // before a command exits).
    history(&env);
    env.cairn().arg("status").output().unwrap();
    assert_eq!(hook.requests().len(), 1, "alerted more than once");
}
