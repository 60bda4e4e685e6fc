//! `cairn prune` on real artifacts: restic-style keep rules computed from what
//! the destination lists, the safety rules, and the history it leaves.

mod common;

use std::path::PathBuf;

use common::{Env, create_sample_db, stderr, stdout};

/// Backs `app` up `n` times and moves the artifacts' creation times to
/// `ages_days` (days before now, one per artifact, oldest last).
fn artifacts_aged(env: &Env, ages_hours: &[i64]) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in ages_hours {
        ids.push(env.backup("app")["id"].as_str().unwrap().to_string());
    }
    let now = jiff::Timestamp::now();
    // Newest backup gets the smallest age.
    for (id, hours) in ids.iter().rev().zip(ages_hours) {
        let path = manifest_path(env, id);
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let at = now - jiff::SignedDuration::from_hours(*hours);
        manifest["created_at"] = serde_json::json!(at.to_string());
        std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    }
    ids.reverse();
    ids
}

fn manifest_path(env: &Env, id: &str) -> PathBuf {
    env.path(&format!("backups/app/app-{id}.manifest.json"))
}

fn setup(env: &Env, retention: &str) {
    create_sample_db(&env.path("app.db"), 50);
    env.write_config(&format!(
        "{}retention = {retention}\n",
        env.single_job_config(
            r#"{ kind = "sqlite", path = "app.db" }"#,
            r#"{ kind = "none" }"#
        )
    ));
}

fn prune_json(env: &Env, dry_run: bool) -> serde_json::Value {
    let mut cmd = env.cairn();
    cmd.args(["prune", "--json"]);
    if dry_run {
        cmd.arg("--dry-run");
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "prune: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ids_of(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn keep_daily_keeps_the_newest_of_each_day_and_says_why() {
    let env = Env::new();
    setup(&env, "{ keep_daily = 2 }");
    // Newest first: now, 1 h ago (same day or the day before), 30 h, 50 h, 10 days.
    let ids = artifacts_aged(&env, &[0, 1, 30, 50, 240]);
    let dry = prune_json(&env, true);
    let report = &dry[0]["destinations"][0];
    assert_eq!(report["dry_run"], true);
    let keep = ids_of(&report["keep"]);
    let delete = ids_of(&report["delete"]);
    assert_eq!(keep.len() + delete.len(), 5);
    assert!(keep.contains(&ids[0]), "the newest is always kept");
    assert!(
        delete.contains(&ids[4]),
        "10 days old is beyond 2 daily slots"
    );
    assert!(
        report["keep"][0]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().starts_with("daily ")),
        "{report}"
    );
    assert_eq!(report["delete"][0]["reason"], "no rule keeps it");
    // Dry run deleted nothing.
    assert_eq!(env.list().len(), 5);

    let done = prune_json(&env, false);
    let deleted = ids_of(&done[0]["destinations"][0]["delete"]);
    assert_eq!(deleted, delete);
    let left: Vec<String> = env
        .list()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left.len(), keep.len());
    for id in &deleted {
        assert!(!manifest_path(&env, id).exists());
    }
    // Data objects went with their manifests: nothing for gc to find.
    let files = std::fs::read_dir(env.path("backups/app"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_file())
        .count();
    assert_eq!(files, 2 * keep.len());
    // Applying the same policy again deletes nothing.
    let again = prune_json(&env, false);
    assert!(
        again[0]["destinations"][0]["delete"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // The prune is in the history.
    let out = env
        .cairn()
        .args(["history", "app", "--kind", "prune", "--json"])
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 2);
    assert_eq!(runs[1]["status"], "success");
}

#[test]
fn keep_last_like_the_seeds_and_keep_within_thirty_days() {
    let env = Env::new();
    setup(&env, "{ keep_last = 3 }");
    artifacts_aged(&env, &[0, 24, 48, 72, 96]);
    let out = env.cairn().args(["prune"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("keep 3, deleted 2"),
        "{}",
        stdout(&out)
    );
    assert_eq!(env.list().len(), 3);

    let env = Env::new();
    setup(&env, "{ keep_within = \"30d\" }");
    artifacts_aged(&env, &[0, 24 * 29, 24 * 31, 24 * 60]);
    prune_json(&env, false);
    assert_eq!(env.list().len(), 2);
}

#[test]
fn nothing_is_deleted_while_the_latest_backup_failed_unless_told() {
    let env = Env::new();
    setup(&env, "{ keep_last = 1 }");
    artifacts_aged(&env, &[0, 24, 48]);
    // The source disappears: the next backup fails.
    std::fs::rename(env.path("app.db"), env.path("gone.db")).unwrap();
    let out = env.cairn().args(["backup", "app"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report = prune_json(&env, false);
    let d = &report[0]["destinations"][0];
    assert!(
        d["skipped"].as_str().unwrap().contains("did not succeed"),
        "{d}"
    );
    assert_eq!(
        env.list().len(),
        3,
        "prune must not delete after a failed backup"
    );
    assert!(stdout(&env.cairn().arg("prune").output().unwrap()).contains("nothing deleted"));

    // prune_on_failure = true overrides it.
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    env.write_config(&format!("{config}prune_on_failure = true\n"));
    prune_json(&env, false);
    assert_eq!(env.list().len(), 1);
}

#[test]
fn a_destination_can_override_the_policy() {
    let env = Env::new();
    create_sample_db(&env.path("app.db"), 20);
    env.write_config(
        r#"
[destinations.local]
kind = "fs"
path = "backups"

[destinations.archive]
kind = "fs"
path = "archive"

[jobs.app]
source = { kind = "sqlite", path = "app.db" }
destinations = ["local", "archive"]
encryption = { kind = "none" }
retention = { keep_last = 1 }
destination_retention = { archive = { keep_last = 3 } }
"#,
    );
    for _ in 0..4 {
        env.backup("app");
    }
    let report = prune_json(&env, false);
    let by_dest = |name: &str| {
        report[0]["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["destination"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(by_dest("local")["keep"].as_array().unwrap().len(), 1);
    assert_eq!(by_dest("archive")["keep"].as_array().unwrap().len(), 3);

    // An override for a destination the job does not use is a config error.
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    env.write_config(&config.replace("{ archive = {", "{ elsewhere = {"));
    let out = env.cairn().arg("prune").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("jobs.app.destination_retention"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn artifacts_of_another_job_and_unreadable_manifests_are_left_alone() {
    let env = Env::new();
    setup(&env, "{ keep_last = 1 }");
    let ids = artifacts_aged(&env, &[0, 24]);
    // Someone copied a manifest of job `other` into app's folder, and a manifest is garbage.
    let foreign = env.path("backups/app/app-20200101T000000Z-0000.manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(manifest_path(&env, &ids[1])).unwrap()).unwrap();
    manifest["job"] = "other".into();
    manifest["id"] = "20200101T000000Z-0000".into();
    std::fs::write(&foreign, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let garbage = env.path("backups/app/app-20200102T000000Z-0000.manifest.json");
    std::fs::write(&garbage, b"{ not json").unwrap();

    let report = prune_json(&env, false);
    let d = &report[0]["destinations"][0];
    assert_eq!(ids_of(&d["delete"]), vec![ids[1].clone()]);
    // The foreign manifest is reported (not cairn's naming for `app`), the garbage one too.
    assert_eq!(d["untouched"].as_array().unwrap().len(), 2);
    assert!(foreign.exists(), "another job's manifest was deleted");
    assert!(garbage.exists());
    // The other job's data object (shared key) is not touched either: the
    // deleted artifact's data object is gone, the kept one's remains.
    assert_eq!(env.list().len(), 1);
}

#[test]
fn retention_and_schedule_mistakes_name_the_key_and_line() {
    let env = Env::new();
    setup(&env, "{ keep_dayly = 7 }");
    let out = env.cairn().arg("prune").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("keep_dayly"), "{}", stderr(&out));
    assert!(stderr(&out).contains("cairn.toml:"), "{}", stderr(&out));

    let base = env.single_job_config(
        r#"{ kind = "sqlite", path = "app.db" }"#,
        r#"{ kind = "none" }"#,
    );
    env.write_config(&format!(
        "{base}schedules = [{{ cron = \"0 25 * * *\" }}]\n"
    ));
    let out = env.cairn().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("jobs.app.schedules"), "{err}");
    assert!(err.contains("cairn.toml:9:"), "{err}");
    assert!(err.contains("not a cron expression"), "{err}");

    env.write_config(&format!(
        "{base}schedules = [{{ cron = \"0 2 * * *\", timezone = \"Europe/Berlln\" }}]\n"
    ));
    let out = env.cairn().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown time zone `Europe/Berlln`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn pause_and_resume_show_in_status_and_unknown_jobs_are_usage_errors() {
    let env = Env::new();
    setup(&env, "{ keep_last = 1 }");
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    env.write_config(&format!(
        "{config}schedules = [{{ cron = \"0 2 * * *\", tag = \"daily\" }}, {{ cron = \"0 3 * * 0\", tag = \"weekly\" }}]\n"
    ));
    let status = |env: &Env| -> serde_json::Value {
        let out = env.cairn().args(["status", "--json"]).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(status(&env)["jobs"][0]["paused"], false);
    assert!(
        env.cairn()
            .args(["pause", "app"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let s = status(&env);
    assert_eq!(s["jobs"][0]["paused"], true);
    assert!(s["jobs"][0]["next_run"].is_null());
    assert_eq!(s["jobs"][0]["schedules"].as_array().unwrap().len(), 2);
    let text = stdout(&env.cairn().arg("status").output().unwrap());
    assert!(text.contains("[PAUSED]"), "{text}");
    assert!(
        env.cairn()
            .args(["resume", "app"])
            .output()
            .unwrap()
            .status
            .success()
    );
    assert_eq!(status(&env)["jobs"][0]["paused"], false);
    let out = env.cairn().args(["pause", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown job `nope`"));
}

#[test]
fn systemd_units_are_hardened_and_timers_carry_the_schedule() {
    let env = Env::new();
    setup(&env, "{ keep_last = 1 }");
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    env.write_config(&format!(
        "{config}schedules = [{{ cron = \"0 2 * * *\", tag = \"daily\", timezone = \"Europe/Berlin\" }}]\njitter = \"5m\"\n\n[checks.disk]\nkind = \"disk\"\npath = \".\"\nmin_free_percent = 1\ninterval = \"5m\"\n"
    ));
    let out = env.cairn().arg("systemd").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let unit = stdout(&out);
    for needle in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillMode=mixed",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "User=cairn",
        "WatchdogSec=",
        " daemon\n",
    ] {
        assert!(unit.contains(needle), "missing {needle}: {unit}");
    }
    assert!(
        unit.contains(env.path("backups").to_str().unwrap()),
        "ReadWritePaths: {unit}"
    );
    let out = env.cairn().args(["systemd", "--timers"]).output().unwrap();
    let timers = stdout(&out);
    assert!(timers.contains("cairn-backup-app-daily.timer"), "{timers}");
    assert!(
        timers.contains("OnCalendar=*-*-* 02:00:00 Europe/Berlin"),
        "{timers}"
    );
    assert!(timers.contains("Persistent=true"));
    assert!(timers.contains("RandomizedDelaySec=300"));
    assert!(timers.contains("backup app --prune --tag daily"));
    assert!(timers.contains("cairn-check-disk.timer"), "{timers}");
    assert!(timers.contains("OnUnitActiveSec=300"), "{timers}");
    assert!(timers.contains(" health disk\n"), "{timers}");
}

#[test]
fn manual_runs_are_recorded_and_a_running_job_is_not_run_twice() {
    let env = Env::new();
    setup(&env, "{ keep_last = 5 }");
    env.backup("app");
    let out = env.cairn().args(["history", "--json"]).output().unwrap();
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The backup, then the verification of its artifact.
    assert_eq!(all[0]["kind"], "verify");
    assert_eq!(all[0]["status"], "success");
    let runs = &all.as_array().unwrap()[1..];
    assert_eq!(runs[0]["kind"], "backup");
    assert_eq!(runs[0]["trigger"], "manual");
    assert_eq!(runs[0]["status"], "success");
    assert!(runs[0]["bytes"].as_u64().unwrap() > 0);
    // Restores are recorded too, with the artifact they used.
    let out = env
        .cairn()
        .args(["restore", "app", "--to", "restored.db"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env
        .cairn()
        .args(["history", "app", "--kind", "restore", "--json"])
        .output()
        .unwrap();
    let restores: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(restores[0]["status"], "success");
    assert_eq!(restores[0]["artifact_id"], runs[0]["artifact_id"]);
    // The state store is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(env.path("cairn-state.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // A claim held by a live process (this test) blocks a second run.
    let conn = rusqlite::Connection::open(env.path("cairn-state.db")).unwrap();
    let host = hostname::get().unwrap().to_string_lossy().into_owned();
    conn.execute(
        "INSERT INTO claims (name, holder, until) VALUES ('job:app', ?1, ?2)",
        rusqlite::params![
            format!("{host}:{}", std::process::id()),
            jiff::Timestamp::now().as_millisecond() + 600_000
        ],
    )
    .unwrap();
    let out = env.cairn().args(["backup", "app"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already running"), "{}", stderr(&out));
    // Losing the state store loses history, never backups.
    drop(conn);
    std::fs::remove_file(env.path("cairn-state.db")).unwrap();
    let _ = std::fs::remove_file(env.path("cairn-state.db-wal"));
    let _ = std::fs::remove_file(env.path("cairn-state.db-shm"));
    assert_eq!(env.list().len(), 1);
    env.backup("app");
    assert_eq!(env.list().len(), 2);
}
