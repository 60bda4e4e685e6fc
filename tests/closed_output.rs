//! A closed stdout (`cairn backup --all | head -1`) never stops or skips work,
//! and never panics; `--json` errors are JSON on stdout.

mod common;

use std::process::Stdio;

use common::{Env, stderr, stdout};

/// Two sqlite jobs `first` and `second`, retention keep_last = 1.
fn two_jobs(env: &Env) {
    common::create_sample_db(&env.path("a.db"), 20);
    common::create_sample_db(&env.path("b.db"), 20);
    let (_, recipient) = env.keygen("identity.txt");
    let encryption = format!(
        r#"{{ kind = "age", recipients = ["{recipient}"], identity_file = "identity.txt" }}"#
    );
    env.write_config(&format!(
        r#"[destinations.local]
kind = "fs"
path = "backups"

[jobs.first]
source = {{ kind = "sqlite", path = "a.db" }}
destinations = ["local"]
encryption = {encryption}
retention = {{ keep_last = 1 }}
schedules = [{{ cron = "@daily" }}]

[jobs.second]
source = {{ kind = "sqlite", path = "b.db" }}
destinations = ["local"]
encryption = {encryption}
retention = {{ keep_last = 1 }}
"#
    ));
}

/// Runs cairn with `args` and its stdout already closed by the reader, as
/// `| head -0` would; returns (exit code, stderr).
fn run_with_closed_stdout(env: &Env, args: &[&str]) -> (Option<i32>, String) {
    let mut child = env
        .cairn_process()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cairn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    (out.status.code(), stderr(&out))
}

fn artifacts_of(env: &Env, job: &str) -> usize {
    env.list().iter().filter(|e| e["job"] == job).count()
}

#[test]
fn backup_all_with_a_closed_stdout_backs_up_every_job_and_prunes() {
    let env = Env::new();
    two_jobs(&env);
    // Two older artifacts of the first job, so that --prune has work.
    for _ in 0..2 {
        env.cairn().args(["backup", "first"]).assert().success();
    }
    assert_eq!(artifacts_of(&env, "first"), 2);

    let (code, err) = run_with_closed_stdout(&env, &["backup", "--all", "--prune"]);
    assert!(!err.contains("panicked"), "cairn panicked: {err}");
    assert_eq!(
        code,
        Some(1),
        "output lost must not look like success: {err}"
    );
    assert_eq!(
        artifacts_of(&env, "second"),
        1,
        "the second job was skipped"
    );
    assert_eq!(artifacts_of(&env, "first"), 1, "--prune did not run");
}

#[test]
fn read_only_verbs_with_a_closed_stdout_do_not_panic() {
    let env = Env::new();
    two_jobs(&env);
    env.cairn().args(["backup", "--all"]).assert().success();
    for args in [
        &["list"][..],
        &["list", "--json"],
        &["status"],
        &["status", "--json"],
        &["history"],
        &["metrics"],
        &["systemd"],
        &["systemd", "--timers"],
        &["report"],
        &["prune", "--dry-run"],
        &["check"],
    ] {
        let (code, err) = run_with_closed_stdout(&env, args);
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert!(
            matches!(code, Some(0 | 1)),
            "{args:?} exited {code:?}: {err}"
        );
    }
}

#[test]
fn json_errors_are_json_on_stdout() {
    let env = Env::new();
    two_jobs(&env);
    let out = env
        .cairn()
        .args(["verify", "nosuchjob", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let body: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(&out)));
    assert_eq!(body["exit_code"], 2);
    assert!(
        body["error"].as_str().unwrap().contains("nosuchjob"),
        "{body}"
    );
    assert!(stderr(&out).contains("nosuchjob"), "people read stderr too");
}
