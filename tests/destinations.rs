//! Several destinations per job, reading from any of them, and gc — on local
//! folders (remote stores have their own test file).

mod common;

use common::{Env, stderr, stdout};
use predicates::prelude::*;

fn two_destination_config(env: &Env, second_path: &str) {
    common::create_sample_db(&env.path("app.db"), 300);
    let (_, recipient) = env.keygen("identity.txt");
    env.write_config(&format!(
        "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[destinations.second]\nkind = \"fs\"\npath = \"{second_path}\"\n\n[jobs.app]\nsource = {{ kind = \"sqlite\", path = \"app.db\" }}\ndestinations = [\"local\", \"second\"]\nencryption = {{ kind = \"age\", recipients = [\"{recipient}\"], identity_file = \"identity.txt\" }}\n"
    ));
}

#[test]
fn one_backup_lands_in_every_destination() {
    let env = Env::new();
    two_destination_config(&env, "mirror");
    env.cairn().args(["backup", "app"]).assert().success();
    let entries = env.list();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["id"], entries[1]["id"]);
    assert_eq!(entries[0]["sha256"], entries[1]["sha256"]);
    let out = env
        .cairn()
        .args(["list", "--from", "second", "--json"])
        .output()
        .unwrap();
    let only: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["destination"], "second");
    env.cairn()
        .args(["list", "--from", "nope"])
        .assert()
        .code(2);
    // verify checks every copy.
    env.cairn()
        .args(["verify", "app"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("`local`: ok").and(predicate::str::contains("`second`: ok")),
        );
}

#[test]
fn a_failing_destination_does_not_stop_the_others() {
    let env = Env::new();
    // The second destination is a path below a regular file: it cannot be created.
    std::fs::write(env.path("blocker"), b"x").unwrap();
    two_destination_config(&env, "blocker/mirror");
    let out = env.cairn().args(["backup", "app"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a partial failure exits 1");
    let text = stdout(&out);
    assert!(text.contains("local: committed"), "{text}");
    assert!(text.contains("second: FAILED"), "{text}");
    // `list` still shows what it found, and exits 1 because `second` cannot be listed.
    let out = env.cairn().args(["list", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("second"), "{}", stderr(&out));
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["destination"], "local");
}

#[test]
fn restore_falls_back_to_the_next_good_copy() {
    let env = Env::new();
    two_destination_config(&env, "mirror");
    env.cairn().args(["backup", "app"]).assert().success();
    let entry = env
        .list()
        .into_iter()
        .find(|e| e["destination"] == "local")
        .unwrap();
    // Damage the first copy (same size, one byte changed).
    let data = env.data_path(&entry);
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&data, &bytes).unwrap();

    let out = env
        .cairn()
        .args(["restore", "app", "--to"])
        .arg(env.path("restored.db"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("trying the next destination"),
        "{}",
        stderr(&out)
    );
    assert_eq!(common::count_rows(&env.path("restored.db"), "items"), 300);
    // --from the damaged copy fails; verify names the bad copy and exits 1.
    env.cairn()
        .args(["restore", "app", "--from", "local", "--to"])
        .arg(env.path("x.db"))
        .assert()
        .code(1);
    env.cairn().args(["verify", "app"]).assert().code(1).stdout(
        predicate::str::contains("`local`: FAILED").and(predicate::str::contains("`second`: ok")),
    );
}

#[test]
fn gc_removes_orphans_after_the_grace_period_only() {
    let env = Env::new();
    env.sqlite_age_setup(10);
    let entry = env.backup("app");
    let id = entry["id"].as_str().unwrap().to_string();
    // An orphan: a data object whose manifest is gone (a crash between the two).
    let orphan = env.path("backups/app/app-20200101T000000Z-dead.sqlite.zst.age");
    std::fs::write(&orphan, b"half").unwrap();
    let partial = env.path(
        "backups/app/.partial/app-20200101T000000Z-beef.sqlite.zst.age.cairn-1-00000000-otherhost",
    );
    std::fs::write(&partial, b"partial").unwrap();

    env.cairn().args(["gc", "app"]).assert().success().stdout(
        predicate::str::contains("removed 0 object(s)").and(predicate::str::contains("2 younger")),
    );
    assert!(orphan.exists() && partial.exists());

    env.cairn()
        .args(["gc", "--grace", "0", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains("would remove 2 object(s)"));
    assert!(orphan.exists());

    let out = env
        .cairn()
        .args(["gc", "--grace", "0", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reports[0]["removed"].as_array().unwrap().len(), 2);
    assert!(!orphan.exists() && !partial.exists());
    // The real artifact is untouched.
    assert_eq!(env.list()[0]["id"], id.as_str());
    env.cairn().args(["verify", "app"]).assert().success();
}

#[test]
fn disaster_recovery_from_storage_alone() {
    // The first machine makes a backup, then is gone: a new folder holds only the
    // config (copied) and the key; the backups folder is shared storage.
    let old = Env::new();
    old.sqlite_age_setup(42);
    old.backup("app");
    let new = Env::new();
    let storage = old.path("backups");
    let config = std::fs::read_to_string(old.config_path()).unwrap().replace(
        "path = \"backups\"",
        &format!("path = \"{}\"", storage.display()),
    );
    new.write_config(&config);
    std::fs::copy(old.path("identity.txt"), new.path("identity.txt")).unwrap();
    let entries = new.list();
    assert_eq!(entries.len(), 1);
    new.cairn()
        .args(["restore", "app", "--to"])
        .arg(new.path("app.db"))
        .assert()
        .success();
    assert_eq!(common::count_rows(&new.path("app.db"), "items"), 42);
}
