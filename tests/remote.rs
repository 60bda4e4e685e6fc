//! Remote destinations against real servers on 127.0.0.1: SeaweedFS (S3),
//! Azurite (Azure Blob), OpenSSH (SFTP) and rclone (WebDAV); see
//! common/objstores.rs. GCS has no local server here: it is covered by
//! configuration and error tests only.

mod common;

use common::objstores::{self, unique_name};
use common::{Env, stderr, stdout};
use predicates::prelude::*;

fn s3_destination(name: &str, bucket: &str, extra: &str) -> String {
    let s3 = objstores::s3();
    format!(
        "[destinations.{name}]\nkind = \"s3\"\nbucket = \"{bucket}\"\nprefix = \"team/cairn\"\nendpoint = \"{}\"\nregion = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"${{TEST_S3_SECRET}}\"\n{extra}\n",
        s3.endpoint(),
        s3.region,
        s3.access_key
    )
}

fn azure_destination(name: &str, container: &str) -> String {
    let az = objstores::azurite();
    format!(
        "[destinations.{name}]\nkind = \"azblob\"\ncontainer = \"{container}\"\nendpoint = \"{}\"\naccount_name = \"{}\"\naccount_key = \"${{TEST_AZ_KEY}}\"\n",
        az.endpoint(),
        az.account_name
    )
}

fn sftp_destination(name: &str, folder: &str) -> String {
    let sftp = objstores::sftp();
    format!(
        "[destinations.{name}]\nkind = \"sftp\"\nhost = \"{}\"\nport = {}\nuser = \"{}\"\nkey = \"{}\"\nfolder = \"{folder}\"\nknown_hosts = \"accept\"\n",
        sftp.host,
        sftp.port,
        sftp.user,
        sftp.private_key_path.display()
    )
}

fn webdav_destination(name: &str, prefix: &str) -> String {
    let dav = objstores::webdav();
    format!(
        "[destinations.{name}]\nkind = \"webdav\"\nurl = \"{}\"\nuser = \"{}\"\npassword = \"${{TEST_DAV_PASSWORD}}\"\nprefix = \"{prefix}\"\n",
        dav.endpoint(),
        dav.user
    )
}

fn job(dest_names: &[&str], recipient: &str) -> String {
    let names: Vec<String> = dest_names.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        "[jobs.app]\nsource = {{ kind = \"sqlite\", path = \"app.db\" }}\ndestinations = [{}]\nencryption = {{ kind = \"age\", recipients = [\"{recipient}\"], identity_file = \"identity.txt\" }}\n",
        names.join(", ")
    )
}

fn cairn(env: &Env) -> common::cairn_command::CairnCommand {
    let mut cmd = env.cairn();
    cmd.env("TEST_S3_SECRET", &objstores::s3().secret_key)
        .env("TEST_AZ_KEY", &objstores::azurite().account_key)
        .env("TEST_DAV_PASSWORD", &objstores::webdav().password);
    cmd
}

fn list(env: &Env) -> Vec<serde_json::Value> {
    let out = cairn(env).args(["list", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Backup → list → verify → check → restore through one remote destination.
fn round_trip(destination: &str) {
    let env = Env::new();
    common::create_sample_db(&env.path("app.db"), 700);
    let (_, recipient) = env.keygen("identity.txt");
    env.write_config(&format!("{destination}\n{}", job(&["remote"], &recipient)));
    let out = cairn(&env).args(["backup", "app"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let entries = list(&env);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["destination"], "remote");
    cairn(&env).args(["verify", "app"]).assert().success();
    cairn(&env).arg("check").assert().success().stdout(
        predicate::str::contains("write, read, list and delete work")
            .and(predicate::str::contains(" ms]")),
    );
    cairn(&env)
        .args(["restore", "app", "--to"])
        .arg(env.path("restored.db"))
        .assert()
        .success();
    assert_eq!(common::integrity(&env.path("restored.db")), "ok");
    assert_eq!(common::count_rows(&env.path("restored.db"), "items"), 700);
    // Nothing secret in what cairn printed.
    for text in [stdout(&out), stderr(&out)] {
        assert!(!text.contains(&objstores::s3().secret_key));
        assert!(!text.contains(&objstores::azurite().account_key));
    }
}

#[test]
fn s3_round_trip() {
    let bucket = unique_name("rt");
    objstores::s3().create_bucket(&bucket);
    round_trip(&s3_destination("remote", &bucket, ""));
    let keys = objstores::s3().list_objects(&bucket);
    assert!(
        keys.iter()
            .any(|k| k.starts_with("team/cairn/app/app-") && k.ends_with(".sqlite.zst.age")),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.ends_with(".manifest.json")),
        "{keys:?}"
    );
}

#[test]
fn azure_round_trip() {
    let container = unique_name("rt");
    objstores::azurite().create_container(&container);
    round_trip(&azure_destination("remote", &container));
}

#[test]
fn sftp_round_trip() {
    let folder = objstores::sftp().root.join(unique_name("rt"));
    std::fs::create_dir_all(&folder).unwrap();
    round_trip(&sftp_destination("remote", &folder.display().to_string()));
}

#[test]
fn webdav_round_trip() {
    round_trip(&webdav_destination("remote", &unique_name("rt")));
}

/// 200 MB of incompressible data through S3 multipart: memory stays far below
/// the artifact size.
#[test]
fn large_artifact_streams_through_s3_with_bounded_memory() {
    let bucket = unique_name("big");
    objstores::s3().create_bucket(&bucket);
    let env = Env::new();
    let data = common::random_data_folder(&env, 200_000_000);
    // age to a recipient: a passphrase would add scrypt's fixed ~256 MiB+ key
    // derivation, which says nothing about streaming.
    let (_, recipient) = env.keygen("identity.txt");
    env.write_config(&format!(
        "{}\n[jobs.app]\nsource = {{ kind = \"files\", path = \"data\" }}\ndestinations = [\"remote\"]\ncompression = \"none\"\nencryption = {{ kind = \"age\", recipients = [\"{recipient}\"], identity_file = \"identity.txt\" }}\n",
        s3_destination("remote", &bucket, "transfer = { part_size_mib = 8, concurrency = 4 }")
    ));
    let cairn_bin = assert_cmd::cargo::cargo_bin("cairn");
    let run_measured = |args: &[&str]| -> u64 {
        let out = std::process::Command::new("/usr/bin/time")
            .arg("-f")
            .arg("PEAK_RSS_KIB=%M")
            .arg(&cairn_bin)
            .arg("--config")
            .arg(env.config_path())
            .args(args)
            .env("TEST_S3_SECRET", &objstores::s3().secret_key)
            .env("PP", "large artifact passphrase")
            .current_dir(env.dir.path())
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        err.lines()
            .find_map(|l| l.strip_prefix("PEAK_RSS_KIB="))
            .and_then(|v| v.trim().parse().ok())
            .expect("GNU time output")
    };
    let backup_kib = run_measured(&["backup", "app"]);
    let restore_kib = run_measured(&["restore", "app", "--to", "restored"]);
    eprintln!(
        "200 MB through S3: backup peak RSS {backup_kib} KiB, restore peak RSS {restore_kib} KiB"
    );
    // The artifact is ~200 MB; part size × concurrency is 32 MiB.
    assert!(backup_kib < 120 * 1024, "backup peak RSS {backup_kib} KiB");
    assert!(
        restore_kib < 120 * 1024,
        "restore peak RSS {restore_kib} KiB"
    );
    let sum = |p: std::path::PathBuf| {
        let out = std::process::Command::new("sha256sum")
            .arg(p)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        sum(data.join("blob.bin")),
        sum(env.path("restored/blob.bin"))
    );
}

#[test]
fn one_failing_destination_leaves_the_others_committed() {
    let good = unique_name("good");
    objstores::s3().create_bucket(&good);
    let env = Env::new();
    common::create_sample_db(&env.path("app.db"), 50);
    let (_, recipient) = env.keygen("identity.txt");
    env.write_config(&format!(
        "{}\n{}\n{}",
        s3_destination("offsite", &good, ""),
        s3_destination("broken", &good, "").replace("${TEST_S3_SECRET}", "wrong-secret-for-broken"),
        job(&["offsite", "broken"], &recipient)
    ));
    let out = cairn(&env).args(["backup", "app"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("offsite: committed"), "{text}");
    assert!(text.contains("broken: FAILED"), "{text}");
    let listed = cairn(&env)
        .args(["list", "--from", "offsite", "--json"])
        .output()
        .unwrap();
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(entries.len(), 1);
}

#[test]
fn killed_upload_is_never_listed_and_gc_removes_it() {
    let env = Env::new();
    common::random_data_folder(&env, 150_000_000);
    let prefix = unique_name("kill");
    env.write_config(&format!(
        "{}\n[jobs.app]\nsource = {{ kind = \"files\", path = \"data\" }}\ndestinations = [\"remote\"]\ncompression = \"none\"\nencryption = {{ kind = \"none\" }}\n",
        webdav_destination("remote", &prefix)
    ));
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("cairn"))
        .arg("--config")
        .arg(env.config_path())
        .args(["backup", "app"])
        .env("TEST_DAV_PASSWORD", &objstores::webdav().password)
        .current_dir(env.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let job_dir = objstores::webdav().data.join(&prefix).join("app");
    // The upload streams to a temporary name and is moved into place on commit.
    let partial_dir = job_dir.join(".partial");
    let start = std::time::Instant::now();
    loop {
        let uploading = std::fs::read_dir(&partial_dir)
            .map(|d| {
                d.flatten().any(|e| {
                    e.metadata()
                        .is_ok_and(|m| m.is_file() && m.len() > 1_000_000)
                })
            })
            .unwrap_or(false);
        if uploading {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before it could be killed"
        );
        assert!(start.elapsed().as_secs() < 60, "no upload appeared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    let _ = child.wait();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(list(&env).is_empty(), "a killed upload must not be listed");
    let out = cairn(&env)
        .args(["gc", "--grace", "0", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let removed = reports[0]["removed"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !removed.is_empty(),
        "gc removes the partial object: {reports}"
    );
    for dir in [&job_dir, &partial_dir] {
        let left: Vec<_> = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.metadata().is_ok_and(|m| m.is_file()))
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn disaster_recovery_from_s3_alone() {
    let bucket = unique_name("dr");
    objstores::s3().create_bucket(&bucket);
    let first = Env::new();
    common::create_sample_db(&first.path("app.db"), 123);
    let (_, recipient) = first.keygen("identity.txt");
    let config = format!(
        "{}\n{}",
        s3_destination("offsite", &bucket, ""),
        job(&["offsite"], &recipient)
    );
    first.write_config(&config);
    cairn(&first).args(["backup", "app"]).assert().success();

    // A new machine: only the config and the identity, no database, no state.
    let second = Env::new();
    second.write_config(&config);
    std::fs::copy(first.path("identity.txt"), second.path("identity.txt")).unwrap();
    drop(first);
    assert_eq!(list(&second).len(), 1);
    cairn(&second)
        .args(["restore", "app", "--to"])
        .arg(second.path("app.db"))
        .assert()
        .success();
    assert_eq!(common::count_rows(&second.path("app.db"), "items"), 123);
}

#[test]
fn clear_errors_for_credentials_buckets_and_unreachable_servers() {
    let bucket = unique_name("err");
    objstores::s3().create_bucket(&bucket);
    let env = Env::new();
    common::create_sample_db(&env.path("app.db"), 5);
    let (_, recipient) = env.keygen("identity.txt");
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    env.write_config(&format!(
        "{}\n[destinations.nobucket]\nkind = \"s3\"\nbucket = \"missing-{bucket}\"\nendpoint = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"${{TEST_S3_SECRET}}\"\n\n[destinations.down]\nkind = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:{closed_port}\"\naccess_key_id = \"x\"\nsecret_access_key = \"y-secret-value\"\ntransfer = {{ retries = 1, timeout_secs = 5 }}\n\n[destinations.gcs]\nkind = \"gcs\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:{closed_port}\"\ntransfer = {{ retries = 1, timeout_secs = 5 }}\n\n{}",
        s3_destination("wrongkey", &bucket, ""),
        objstores::s3().endpoint(),
        objstores::s3().access_key,
        job(&["wrongkey", "nobucket", "down", "gcs"], &recipient)
    ));
    let out = env
        .cairn()
        .env("TEST_S3_SECRET", "definitely-not-the-secret")
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    for name in ["wrongkey", "nobucket", "down", "gcs"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("FAIL destination `") && l.contains(&format!("`{name}`"))),
            "{name} should fail: {text}"
        );
    }
    assert!(
        !text.contains("definitely-not-the-secret") && !text.contains("y-secret-value"),
        "{text}"
    );
    let out = env
        .cairn()
        .env("TEST_S3_SECRET", "definitely-not-the-secret")
        .args(["backup", "app"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        !err.contains("definitely-not-the-secret") && !err.contains("y-secret-value"),
        "{err}"
    );
}
