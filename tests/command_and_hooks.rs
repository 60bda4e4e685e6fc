//! The generic `command` source (backup = a program's stdout, restore = a
//! program reading it on stdin) and job hooks around backups.

mod common;

use std::path::Path;

use common::{Env, stderr, stdout};
use predicates::prelude::*;

/// A TOML basic string holding `text`.
fn toml_str(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_list(items: &[&str]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|s| toml_str(s))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A config with one job `export` whose source is a command.
fn command_env(
    backup: &str,
    restore: Option<&str>,
    before: &[&str],
    after: &[&str],
    encryption: &str,
) -> Env {
    let env = Env::new();
    let restore = restore
        .map(|r| format!(", restore = {}", toml_list(&["sh", "-c", r])))
        .unwrap_or_default();
    env.write_config(&format!(
        "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[jobs.export]\nsource = {{ kind = \"command\", backup = {}{restore}, extension = \"txt\" }}\ndestinations = [\"local\"]\nencryption = {encryption}\nhooks = {{ before = {}, after = {} }}\n",
        toml_list(&["sh", "-c", backup]),
        toml_list(before),
        toml_list(after),
    ));
    env
}

const NO_ENCRYPTION: &str = "{ kind = \"none\" }";
const PASSPHRASE: &str = "{ kind = \"age-passphrase\", passphrase_env = \"CAIRN_PASSPHRASE\" }";

fn cairn(env: &Env) -> common::cairn_command::CairnCommand {
    let mut cmd = env.cairn();
    cmd.env("CAIRN_PASSPHRASE", "correct horse");
    cmd
}

/// Bytes that are not text: every byte value, repeated with variation, 1.5 MiB.
fn sample_bytes() -> Vec<u8> {
    let mut out = Vec::with_capacity(3 << 19);
    let mut x: u32 = 0x1234_5678;
    while out.len() < 3 << 19 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.push((x >> 24) as u8);
    }
    out.extend(0u8..=255);
    out
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_text(path: &Path) -> String {
    String::from_utf8(read(path)).unwrap()
}

fn no_partial_uploads(env: &Env, job: &str) {
    let partial = env.path(&format!("backups/{job}/.partial"));
    assert_eq!(
        std::fs::read_dir(&partial).map(|d| d.count()).unwrap_or(0),
        0,
        "aborted uploads must be removed"
    );
}

#[test]
fn command_round_trip_through_the_restore_program() {
    let probe = Env::new();
    let input = probe.path("input.bin");
    let data = sample_bytes();
    std::fs::write(&input, &data).unwrap();
    let restored = probe.path("restored.bin");
    let env = command_env(
        &format!(
            "printf 'header\\n'; cat '{}'; printf 'trailer'",
            input.display()
        ),
        Some(&format!(
            "cat > '{}.tmp' && mv '{0}.tmp' '{0}'",
            restored.display()
        )),
        &[],
        &[],
        PASSPHRASE,
    );
    let out = cairn(&env)
        .args(["backup", "export", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let manifest = &report[0]["manifest"];
    assert_eq!(manifest["source"]["kind"], "command", "{manifest}");
    assert_eq!(manifest["source"]["facts"]["program"], "sh", "{manifest}");
    let mut expected = b"header\n".to_vec();
    expected.extend(&data);
    expected.extend(b"trailer");
    assert_eq!(
        manifest["plaintext"]["size"].as_u64(),
        Some(expected.len() as u64),
        "{manifest}"
    );
    let entries = env.list();
    assert_eq!(entries.len(), 1);
    let key = entries[0]["key"].as_str().unwrap();
    assert!(key.ends_with(".txt.zst.age"), "{key}");
    // Stored encrypted: the plaintext marker is not in the data object.
    let stored = read(&env.data_path(&entries[0]));
    assert!(!stored.windows(7).any(|w| w == b"header\n"));

    let catted = cairn(&env).args(["cat", "export"]).output().unwrap();
    assert!(catted.status.success(), "{}", stderr(&catted));
    assert!(
        catted.stdout == expected,
        "cat differs from the program's output"
    );

    // A dry run reads and checks everything but does not run the restore program.
    cairn(&env)
        .args(["restore", "export", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "would pipe {} bytes",
            expected.len()
        )));
    assert!(!restored.exists());

    cairn(&env)
        .args(["restore", "export"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "piped {} bytes into `sh`",
            expected.len()
        )));
    assert!(read(&restored) == expected, "restored content differs");
}

#[test]
fn a_failing_restore_program_fails_the_restore() {
    let env = command_env(
        "echo some data",
        Some("cat >/dev/null; echo 'import refused: schema mismatch' >&2; exit 4"),
        &[],
        &[],
        NO_ENCRYPTION,
    );
    cairn(&env).args(["backup", "export"]).assert().success();
    let out = cairn(&env).args(["restore", "export"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("status 4"), "{err}");
    assert!(err.contains("import refused: schema mismatch"), "{err}");
}

#[test]
fn a_restore_program_that_stops_reading_is_not_reported_as_damage() {
    let probe = Env::new();
    let input = probe.path("input.bin");
    std::fs::write(&input, sample_bytes()).unwrap();
    let env = command_env(
        &format!("cat '{}'", input.display()),
        Some("echo 'refusing: wrong format' >&2; exit 4"),
        &[],
        &[],
        NO_ENCRYPTION,
    );
    cairn(&env).args(["backup", "export"]).assert().success();
    let out = cairn(&env).args(["restore", "export"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("refusing: wrong format"), "{err}");
    assert!(
        !err.contains("damaged"),
        "the artifact is fine; the restore program failed: {err}"
    );
    cairn(&env).args(["verify", "export"]).assert().success();
}

#[test]
fn a_failing_backup_command_commits_nothing_and_reports_its_stderr() {
    let probe = Env::new();
    let after_log = probe.path("after.txt");
    let env = command_env(
        "echo partial-output; echo 'dump exploded: disk on fire' >&2; exit 3",
        Some("cat > restored.txt"),
        &[],
        &[&format!(
            "printf '%s\\n%s\\n%s\\n' \"$CAIRN_STATUS\" \"$CAIRN_ARTIFACT_ID\" \"$CAIRN_ERROR\" > '{}'",
            after_log.display()
        )],
        NO_ENCRYPTION,
    );
    let out = cairn(&env).args(["backup", "export"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("dump exploded: disk on fire"), "{err}");
    assert!(err.contains("status 3"), "{err}");
    assert!(err.contains("export"), "the job is named: {err}");
    assert!(env.list().is_empty());
    no_partial_uploads(&env, "export");
    let after = read_text(&after_log);
    let lines: Vec<&str> = after.lines().collect();
    assert_eq!(lines[0], "failure", "{after}");
    assert_eq!(lines[1], "", "no artifact id on failure: {after}");
    assert!(lines[2].contains("disk on fire"), "{after}");

    // A program that cannot be started fails the same way.
    let env = Env::new();
    env.write_config(
        "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[jobs.export]\nsource = { kind = \"command\", backup = [\"cairn-no-such-program\"] }\ndestinations = [\"local\"]\nencryption = { kind = \"none\" }\n",
    );
    let out = env.cairn().args(["backup", "export"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cairn-no-such-program"),
        "{}",
        stderr(&out)
    );
    assert!(env.list().is_empty());
}

#[test]
fn restore_needs_a_restore_program_and_takes_no_target() {
    let env = command_env("echo hello", None, &[], &[], NO_ENCRYPTION);
    cairn(&env).args(["backup", "export"]).assert().success();
    let out = cairn(&env).args(["restore", "export"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("no `restore` command"), "{err}");
    assert!(err.contains("cairn cat export"), "{err}");

    let restored = env.path("restored.txt");
    let env = command_env(
        "echo hello",
        Some(&format!("cat > '{}'", restored.display())),
        &[],
        &[],
        NO_ENCRYPTION,
    );
    cairn(&env).args(["backup", "export"]).assert().success();
    let target = env.path("elsewhere.txt");
    let out = cairn(&env)
        .args(["restore", "export", "--to"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("drop --to"), "{}", stderr(&out));
    assert!(!target.exists() && !restored.exists());
    // Without --to it works.
    cairn(&env).args(["restore", "export"]).assert().success();
    assert_eq!(read_text(&restored), "hello\n");
}

#[test]
fn hooks_run_around_the_backup_with_its_outcome() {
    let probe = Env::new();
    let before_log = probe.path("before.txt");
    let after_log = probe.path("after.txt");
    let stage = probe.path("stage.txt");
    let env = command_env(
        // The backup reads what the before hook prepared.
        &format!("cat '{}'", stage.display()),
        None,
        &[
            &format!(
                "printf '%s|%s|%s|%s\\n' \"$CAIRN_JOB\" \"$CAIRN_STATUS\" \"$CAIRN_HOOK\" \"$${{CAIRN_ARTIFACT_ID-unset}}\" > '{}'",
                before_log.display()
            ),
            &format!("echo prepared-by-hook > '{}'", stage.display()),
        ],
        &[&format!(
            // The artifact is committed when the after hooks run.
            "printf '%s|%s|%s|%s|' \"$CAIRN_JOB\" \"$CAIRN_STATUS\" \"$CAIRN_ARTIFACT_ID\" \"$CAIRN_ERROR\" > '{log}'; ls backups/export/ | grep -c \"$CAIRN_ARTIFACT_ID.manifest.json\" >> '{log}'",
            log = after_log.display()
        )],
        NO_ENCRYPTION,
    );
    let out = cairn(&env).args(["backup", "export"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let entries = env.list();
    assert_eq!(entries.len(), 1);
    let id = entries[0]["id"].as_str().unwrap();
    assert_eq!(read_text(&before_log), "export|running|before|unset\n");
    assert_eq!(read_text(&after_log), format!("export|success|{id}||1\n"));
    let content = cairn(&env).args(["cat", "export"]).output().unwrap();
    assert_eq!(stdout(&content), "prepared-by-hook\n");
}

#[test]
fn a_failing_before_hook_stops_the_run_and_after_hooks_see_the_failure() {
    let probe = Env::new();
    let ran = probe.path("backup-ran.txt");
    let second = probe.path("second-before.txt");
    let after_log = probe.path("after.txt");
    let after_second = probe.path("after-second.txt");
    let env = command_env(
        &format!("touch '{}'; echo data", ran.display()),
        None,
        &[
            "echo 'not today: maintenance window' >&2; exit 7",
            &format!("touch '{}'", second.display()),
        ],
        &[
            &format!(
                "printf '%s\\n%s\\n%s\\n' \"$CAIRN_STATUS\" \"$CAIRN_ARTIFACT_ID\" \"$CAIRN_ERROR\" > '{}'",
                after_log.display()
            ),
            &format!("touch '{}'", after_second.display()),
        ],
        NO_ENCRYPTION,
    );
    let out = cairn(&env).args(["backup", "export"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("before hook"), "{err}");
    assert!(err.contains("not today: maintenance window"), "{err}");
    assert!(
        !ran.exists(),
        "the backup must not run after a failed before hook"
    );
    assert!(!second.exists(), "later before hooks must not run");
    assert!(env.list().is_empty());
    assert!(!env.path("backups/export").exists() || no_objects(&env.path("backups/export")));
    let after = read_text(&after_log);
    let lines: Vec<&str> = after.lines().collect();
    assert_eq!(lines[0], "failure", "{after}");
    assert_eq!(lines[1], "", "{after}");
    assert!(
        lines[2].contains("before hook") && lines[2].contains("maintenance window"),
        "{after}"
    );
    assert!(after_second.exists(), "every after hook runs");
}

fn no_objects(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .all(|e| e.file_name().to_string_lossy().starts_with('.'))
}

#[test]
fn a_failing_after_hook_fails_the_run_but_keeps_the_artifact() {
    let probe = Env::new();
    let second = probe.path("second-after.txt");
    let env = command_env(
        "echo payload",
        Some("cat > restored.txt"),
        &[],
        &[
            "echo 'notify failed: webhook 500' >&2; exit 5",
            &format!(
                "echo \"$CAIRN_STATUS $CAIRN_ARTIFACT_ID\" > '{}'",
                second.display()
            ),
        ],
        NO_ENCRYPTION,
    );
    let out = cairn(&env).args(["backup", "export"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("after hook"), "{text}");
    assert!(text.contains("webhook 500"), "{text}");
    let entries = env.list();
    assert_eq!(entries.len(), 1, "the artifact stays committed");
    let id = entries[0]["id"].as_str().unwrap();
    assert_eq!(read_text(&second), format!("success {id}\n"));
    cairn(&env).args(["verify", "export"]).assert().success();
    let content = cairn(&env).args(["cat", "export"]).output().unwrap();
    assert_eq!(stdout(&content), "payload\n");

    // --json reports the hook error too.
    let out = cairn(&env)
        .args(["backup", "export", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = report[0]["hook_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{report}");
    assert!(
        errors[0].as_str().unwrap().contains("webhook 500"),
        "{report}"
    );
    assert_eq!(env.list().len(), 2);
}
