//! The CLI contract: config errors with positions, exit codes, list --json,
//! init/check/keygen.

mod common;

use common::{Env, stderr};
use predicates::prelude::*;

#[test]
fn sqlite_round_trip_with_age_recipient() {
    let env = Env::new();
    env.sqlite_age_setup(500);
    let entry = env.backup("app");
    for field in [
        "id",
        "job",
        "created_at",
        "size",
        "sha256",
        "destination",
        "key",
    ] {
        assert!(
            !entry[field].is_null(),
            "list --json lacks {field}: {entry}"
        );
    }
    assert!(entry["key"].as_str().unwrap().ends_with(".sqlite.zst.age"));
    env.cairn().args(["verify", "app"]).assert().success();
    env.cairn()
        .args(["restore", "app", "--to"])
        .arg(env.path("restored.db"))
        .assert()
        .success();
    assert_eq!(common::integrity(&env.path("restored.db")), "ok");
    assert_eq!(common::count_rows(&env.path("restored.db"), "items"), 500);
}

#[test]
fn artifacts_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.sqlite_age_setup(10);
    let entry = env.backup("app");
    let data = env.data_path(&entry);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o600);
    assert_eq!(mode(data.parent().unwrap()), 0o700);
    assert_eq!(mode(&env.path("backups")), 0o700);
    let manifest = data.parent().unwrap().join(format!(
        "app-{}.manifest.json",
        entry["id"].as_str().unwrap()
    ));
    assert_eq!(mode(&manifest), 0o600);
    assert_eq!(mode(&env.path("identity.txt")), 0o600);
}

#[test]
fn unknown_key_is_reported_with_line_column_and_key() {
    let env = Env::new();
    env.write_config(
        "[destinations.local]\nkind = \"fs\"\npath = \"b\"\n\n[jobs.app]\nsource = { kind = \"sqlite\", path = \"a.db\" }\ndestinations = [\"local\"]\nencryption = { kind = \"none\" }\ncompresion = \"zstd\"\n",
    );
    let out = env.cairn().arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("cairn.toml:9:1"), "{err}");
    assert!(err.contains("jobs.app.compresion"), "{err}");
    assert!(err.contains("unknown field"), "{err}");
}

#[test]
fn wrong_type_and_unknown_destination_and_unset_variable() {
    let env = Env::new();
    let base = "[destinations.local]\nkind = \"fs\"\npath = \"b\"\n\n[jobs.app]\nsource = { kind = \"sqlite\", path = \"a.db\" }\nencryption = { kind = \"none\" }\n";
    env.write_config(&format!("{base}destinations = [\"offsite\"]\n"));
    let out = env.cairn().arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("cairn.toml:8:17") && err.contains("unknown destination `offsite`"),
        "{err}"
    );

    env.write_config(&format!(
        "{base}destinations = [\"local\"]\ncompression_level = \"high\"\n"
    ));
    let out = env.cairn().arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(":9:") && err.contains("compression_level") && err.contains("invalid type"),
        "{err}"
    );

    env.write_config("[destinations.local]\nkind = \"fs\"\npath = \"${CAIRN_TEST_UNSET_DIR}/b\"\n");
    let out = env.cairn().arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(":3:") && err.contains("CAIRN_TEST_UNSET_DIR") && err.contains("not set"),
        "{err}"
    );

    // The same config works once the variable is set.
    env.cairn()
        .env("CAIRN_TEST_UNSET_DIR", env.path("x"))
        .arg("check")
        .assert()
        .success();
}

#[test]
fn unknown_job_is_a_usage_error() {
    let env = Env::new();
    env.sqlite_age_setup(1);
    env.cairn()
        .args(["backup", "nope"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("unknown job `nope`").and(predicate::str::contains("app")),
        );
    env.cairn()
        .args(["restore", "nope", "--to", "x"])
        .assert()
        .code(2);
}

#[test]
fn missing_config_says_how_to_make_one() {
    let env = Env::new();
    env.cairn()
        .arg("list")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cairn init"));
}

#[test]
fn init_writes_an_encrypted_example_that_check_accepts_once_paths_exist() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.cairn().arg("init").assert().success();
    env.cairn().arg("init").assert().code(2);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&env.config_path()), 0o600);
    assert_eq!(mode(&env.path("cairn-identity.txt")), 0o600);
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    assert!(text.contains("cairn keygen"), "{text}");
    // The example backs up ./data/app.db: check fails on the missing database.
    env.cairn()
        .arg("check")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("FAIL"));
    std::fs::create_dir(env.path("data")).unwrap();
    common::create_sample_db(&env.path("data/app.db"), 3);
    env.cairn()
        .arg("check")
        .assert()
        .success()
        .stdout(predicate::str::contains("encryption is off").not());
    // Encrypted to the identity init wrote: a backup restores with it.
    let entry = env.backup("app-db");
    assert!(entry["key"].as_str().unwrap().ends_with(".age"), "{entry}");
    env.cairn()
        .args(["restore", "app-db", "--to"])
        .arg(env.path("restored.db"))
        .assert()
        .success();
    assert_eq!(common::count_rows(&env.path("restored.db"), "items"), 3);
    // A second init (forced) keeps encrypting to the same identity.
    env.cairn().args(["init", "--force"]).assert().success();
    assert_eq!(std::fs::read_to_string(env.config_path()).unwrap(), text);
}

#[test]
fn check_catches_an_identity_that_does_not_match_the_recipients() {
    let env = Env::new();
    env.sqlite_age_setup(1);
    env.cairn().arg("check").assert().success();
    let (_, other) = env.keygen("other.txt");
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    let recipient = text
        .split('"')
        .find(|s| s.starts_with("age1"))
        .unwrap()
        .to_string();
    env.write_config(&text.replace(&recipient, &other));
    env.cairn()
        .arg("check")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("matches none of the recipients"));
}

#[test]
fn keygen_never_overwrites() {
    let env = Env::new();
    env.keygen("k.txt");
    env.cairn()
        .args(["keygen", "--output"])
        .arg(env.path("k.txt"))
        .assert()
        .code(2);
}

#[test]
fn backup_all_and_restore_by_id_prefix_and_time() {
    let env = Env::new();
    env.sqlite_age_setup(5);
    let first = env.backup("app");
    common::create_sample_db(&env.path("app.db"), 5);
    env.cairn().args(["backup", "--all"]).assert().success();
    assert_eq!(env.list().len(), 2);
    let id = first["id"].as_str().unwrap();
    env.cairn()
        .args(["restore", "app", &id[..20], "--to"])
        .arg(env.path("first.db"))
        .assert()
        .success();
    assert_eq!(common::count_rows(&env.path("first.db"), "items"), 5);
    let created = first["created_at"].as_str().unwrap();
    env.cairn()
        .args(["restore", "app", "--at", created, "--to"])
        .arg(env.path("at.db"))
        .assert()
        .success();
    assert_eq!(common::count_rows(&env.path("at.db"), "items"), 5);
    env.cairn()
        .args(["restore", "app", "--to"])
        .arg(env.path("latest.db"))
        .assert()
        .success();
    assert_eq!(common::count_rows(&env.path("latest.db"), "items"), 10);
    env.cairn()
        .args(["restore", "app", "--at", "2001-01-01", "--to"])
        .arg(env.path("none.db"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no complete artifact"));
}

#[test]
fn restore_refuses_to_overwrite_without_force_and_keeps_a_safety_copy() {
    let env = Env::new();
    env.sqlite_age_setup(7);
    env.backup("app");
    let target = env.path("live.db");
    common::create_sample_db(&target, 2);
    let before = std::fs::read(&target).unwrap();
    env.cairn()
        .args(["restore", "app", "--to"])
        .arg(&target)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--force"));
    assert_eq!(
        std::fs::read(&target).unwrap(),
        before,
        "target must be untouched"
    );

    let out = env
        .cairn()
        .args(["restore", "app", "--force", "--json", "--to"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let safety = report["safety_copy"].as_str().expect("safety copy path");
    assert_eq!(common::count_rows(std::path::Path::new(safety), "items"), 2);
    assert_eq!(common::count_rows(&target, "items"), 7);
}

#[test]
fn dry_run_checks_everything_and_writes_nothing() {
    let env = Env::new();
    env.sqlite_age_setup(3);
    env.backup("app");
    let target = env.path("restored.db");
    env.cairn()
        .args(["restore", "app", "--dry-run", "--to"])
        .arg(&target)
        .assert()
        .success()
        .stdout(predicate::str::contains("would write"));
    assert!(!target.exists());
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("cairn-restore"))
        .collect();
    assert!(leftovers.is_empty());
    // A dry run into a folder that does not exist fails.
    env.cairn()
        .args(["restore", "app", "--dry-run", "--to"])
        .arg(env.path("no/such/dir/x.db"))
        .assert()
        .code(1);
}

#[test]
fn cat_writes_the_plaintext_database() {
    let env = Env::new();
    env.sqlite_age_setup(4);
    env.backup("app");
    let out = env.cairn().args(["cat", "app"]).output().unwrap();
    assert!(out.status.success());
    assert!(out.stdout.starts_with(b"SQLite format 3\0"));
    std::fs::write(env.path("cat.db"), &out.stdout).unwrap();
    assert_eq!(common::count_rows(&env.path("cat.db"), "items"), 4);
}

#[test]
fn a_restored_file_keeps_the_mode_of_the_one_it_replaces() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.sqlite_age_setup(3);
    env.backup("app");
    let target = env.path("live.db");
    common::create_sample_db(&target, 1);
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o664)).unwrap();
    env.cairn()
        .args(["restore", "app", "--force", "--to"])
        .arg(&target)
        .assert()
        .success();
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o664, "the application must still be able to open it");
    assert_eq!(common::count_rows(&target, "items"), 3);
}

#[test]
fn an_unencrypted_artifact_is_refused_by_an_encrypted_job() {
    let env = Env::new();
    common::create_sample_db(&env.path("app.db"), 4);
    let plain = env.single_job_config(
        r#"{ kind = "sqlite", path = "app.db" }"#,
        r#"{ kind = "none" }"#,
    );
    env.write_config(&plain);
    env.backup("app");
    // Someone who can write to storage but holds no key cannot make an
    // encrypted job accept plaintext.
    env.write_config(&env.single_job_config(
        r#"{ kind = "sqlite", path = "app.db" }"#,
        r#"{ kind = "age-passphrase", passphrase_env = "PP" }"#,
    ));
    for args in [
        vec!["verify", "app"],
        vec!["restore", "app", "--to", "x.db"],
    ] {
        env.cairn()
            .env("PP", "secret")
            .args(&args)
            .assert()
            .code(1)
            .stderr(
                predicate::str::contains("stored unencrypted")
                    .or(predicate::str::contains("unencrypted")),
            )
            .stdout(predicate::str::contains("FAILED").or(predicate::str::is_empty()));
    }
    assert!(!env.path("x.db").exists());
}

#[test]
fn completions_and_man_pages_are_generated_from_the_cli() {
    let env = Env::new();
    let out = env.cairn().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let script = env.path("cairn.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(syntax.status.success(), "{}", stderr(&syntax));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("complete") && text.contains("restore"),
        "{text}"
    );
    for shell in ["zsh", "fish"] {
        env.cairn().args(["completions", shell]).assert().success();
    }

    env.cairn()
        .args(["man", "--dir"])
        .arg(env.path("man1"))
        .assert()
        .success();
    let page = std::fs::read_to_string(env.path("man1/cairn-backup.1")).unwrap();
    assert!(page.contains(".TH CAIRN-BACKUP 1"), "{page}");
    assert!(page.contains("cairn backup"), "{page}");
    assert!(env.path("man1/cairn.1").is_file());
}
