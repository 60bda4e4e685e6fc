//! Signed manifests: `cairn keygen --signing`, signatures checked by the
//! reference `minisign` program, and untrusted artifacts (unsigned, tampered,
//! signed by another key) refused by readers and left alone by prune.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::objstores::{self, unique_name};
use common::{Env, create_sample_db, require_tool, stderr, stdout};

/// `cairn keygen --signing -o NAME`: (key file, public key line).
fn signing_key(env: &Env, name: &str) -> (PathBuf, String) {
    let path = env.path(name);
    let out = env
        .cairn()
        .args(["keygen", "--signing", "-o"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "keygen: {}", stderr(&out));
    (path, stdout(&out).trim().to_string())
}

/// A sqlite job `app` into ./backups with the given job-level `signing` (or none).
fn configure(env: &Env, signing: Option<&str>, extra: &str) {
    let mut text = env.single_job_config(
        r#"{ kind = "sqlite", path = "app.db" }"#,
        r#"{ kind = "none" }"#,
    );
    if let Some(signing) = signing {
        text.push_str(&format!("signing = {signing}\n"));
    }
    text.push_str(extra);
    env.write_config(&text);
}

fn signed(key: &Path, public: &str) -> String {
    format!(
        r#"{{ key_file = "{}", public_key = "{public}" }}"#,
        key.display()
    )
}

fn backup(env: &Env) -> String {
    let out = env
        .cairn()
        .args(["backup", "app", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "backup: {}", stderr(&out));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    reports[0]["id"].as_str().unwrap().to_string()
}

fn manifest_path(env: &Env, id: &str) -> PathBuf {
    env.path(&format!("backups/app/app-{id}.manifest.json"))
}

fn minisign_verify(manifest: &Path, public: &str) -> std::process::Output {
    require_tool("minisign");
    Command::new("minisign")
        .arg("-Vm")
        .arg(manifest)
        .arg("-P")
        .arg(public)
        .output()
        .unwrap()
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    stdout(&out).split_whitespace().next().unwrap().to_string()
}

fn entry<'a>(list: &'a [serde_json::Value], id: &str) -> &'a serde_json::Value {
    list.iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {list:?}"))
}

/// Changes one byte of a manifest, keeping it valid JSON.
fn tamper(manifest: &Path) {
    let text = std::fs::read_to_string(manifest).unwrap();
    let at = text.find("\"cairn_version\"").unwrap();
    let digit = at + text[at..].find(|c: char| c.is_ascii_digit()).unwrap();
    let mut bytes = text.into_bytes();
    bytes[digit] = if bytes[digit] == b'9' {
        b'8'
    } else {
        bytes[digit] + 1
    };
    std::fs::write(manifest, bytes).unwrap();
}

#[test]
fn keygen_writes_a_key_that_minisign_signs_with() {
    require_tool("minisign");
    let env = Env::new();
    let (key, public) = signing_key(&env, "release.key");
    assert!(public.starts_with("RW") && public.len() == 56, "{public}");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let pub_file = env.path("release.pub");
    assert!(
        std::fs::read_to_string(&pub_file)
            .unwrap()
            .contains(&public)
    );

    let file = env.path("notes.txt");
    std::fs::write(&file, "signed by minisign with a cairn key\n").unwrap();
    let out = Command::new("minisign")
        .arg("-S")
        .arg("-s")
        .arg(&key)
        .arg("-m")
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "minisign -S: {}", stderr(&out));
    let out = Command::new("minisign")
        .arg("-Vm")
        .arg(&file)
        .arg("-p")
        .arg(&pub_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "minisign -V: {}", stderr(&out));

    // Never overwritten.
    let out = env
        .cairn()
        .args(["keygen", "--signing", "-o"])
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
}

#[test]
fn a_signed_artifact_verifies_without_cairn() {
    let env = Env::new();
    create_sample_db(&env.path("app.db"), 40);
    let (key, public) = signing_key(&env, "signing.key");
    configure(&env, Some(&signed(&key, &public)), "");
    let id = backup(&env);
    let manifest = manifest_path(&env, &id);
    let signature = PathBuf::from(format!("{}.minisig", manifest.display()));
    assert!(signature.exists(), "no signature beside the manifest");

    // The README's recipe, step 1: the manifest's signature.
    let out = minisign_verify(&manifest, &public);
    assert!(out.status.success(), "minisign -V: {}", stderr(&out));
    // Step 2: the data object's SHA-256 as the manifest records it.
    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let data = env
        .path("backups")
        .join(recorded["data"]["key"].as_str().unwrap());
    assert_eq!(
        sha256sum(&data),
        recorded["data"]["sha256"].as_str().unwrap()
    );

    let list = env.list();
    assert_eq!(entry(&list, &id)["trust"], "signed");
    env.cairn().args(["verify", "app"]).assert().success();
    env.cairn()
        .args(["restore", "app", "--to"])
        .arg(env.path("restored.db"))
        .assert()
        .success();
    assert_eq!(common::count_rows(&env.path("restored.db"), "items"), 40);
}

#[test]
fn a_tampered_manifest_is_untrusted_and_refused_unless_allowed() {
    let env = Env::new();
    create_sample_db(&env.path("app.db"), 30);
    let (key, public) = signing_key(&env, "signing.key");
    configure(&env, Some(&signed(&key, &public)), "");
    let id = backup(&env);
    let manifest = manifest_path(&env, &id);
    tamper(&manifest);
    assert!(!minisign_verify(&manifest, &public).status.success());

    let list = env.list();
    let e = entry(&list, &id);
    assert_eq!(e["trust"], "untrusted");
    assert!(
        e["trust_problem"]
            .as_str()
            .unwrap()
            .contains("does not verify"),
        "{e}"
    );
    let out = env.cairn().arg("list").output().unwrap();
    assert!(stdout(&out).contains("UNTRUSTED"), "{}", stdout(&out));

    for args in [
        vec!["restore", "app", "--to", "restored.db"],
        vec!["restore", "app", id.as_str(), "--to", "restored.db"],
        vec!["verify", "app"],
        vec!["cat", "app"],
        vec!["drill", "app"],
    ] {
        let out = env.cairn().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("untrusted") && err.contains("--allow-unsigned"),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty() || args[0] != "cat");
    }
    assert!(!env.path("restored.db").exists());

    env.cairn()
        .args(["restore", "app", "--allow-unsigned", "--to", "restored.db"])
        .assert()
        .success();
    assert_eq!(common::count_rows(&env.path("restored.db"), "items"), 30);

    // status and the report do not count it as good.
    let out = env.cairn().args(["status", "--json"]).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let job = &status["jobs"][0];
    assert_eq!(job["destinations"][0]["artifacts"], 0, "{job}");
    assert_eq!(job["destinations"][0]["untrusted"], 1, "{job}");
    assert!(job["newest_good"].is_null(), "{job}");
    let out = env.cairn().arg("metrics").output().unwrap();
    assert!(
        stdout(&out)
            .contains("cairn_destination_untrusted_artifacts{job=\"app\",destination=\"local\"} 1"),
        "{}",
        stdout(&out)
    );
    let out = env.cairn().args(["report", "--json"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = report["jobs"][0]["problems"].to_string();
    assert!(problems.contains("1 untrusted artifact"), "{problems}");
}

#[test]
fn an_untrusted_copy_is_skipped_for_a_trusted_one_and_never_marked_bad() {
    let env = Env::new();
    create_sample_db(&env.path("app.db"), 15);
    let (key, public) = signing_key(&env, "signing.key");
    env.write_config(&format!(
        "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n\
         [destinations.second]\nkind = \"fs\"\npath = \"second\"\n\n\
         [jobs.app]\nsource = {{ kind = \"sqlite\", path = \"app.db\" }}\ndestinations = [\"local\", \"second\"]\nencryption = {{ kind = \"none\" }}\nsigning = {}\n",
        signed(&key, &public)
    ));
    let id = backup(&env);
    tamper(&manifest_path(&env, &id));
    let list = env.list();
    let trust = |dest: &str| {
        list.iter()
            .find(|e| e["destination"] == dest)
            .map(|e| e["trust"].clone())
    };
    assert_eq!(trust("local").unwrap(), "untrusted");
    assert_eq!(trust("second").unwrap(), "signed");

    // verify names the untrusted copy (exit 1) but does not mark the artifact bad.
    let out = env.cairn().args(["verify", "app"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("untrusted"), "{}", stdout(&out));
    for _ in 0..2 {
        let out = env
            .cairn()
            .args(["restore", "app", "--force", "--json", "--to", "restored.db"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(common::count_rows(&env.path("restored.db"), "items"), 15);
    let out = env.cairn().args(["status", "--json"]).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["jobs"][0]["newest_good"]["id"], id.as_str());
}

#[test]
fn unsigned_artifacts_are_untrusted_and_prune_leaves_them_uncounted() {
    let env = Env::new();
    create_sample_db(&env.path("app.db"), 20);
    let (key, public) = signing_key(&env, "signing.key");
    let retention = "retention = { keep_last = 1 }\n";
    configure(&env, Some(&signed(&key, &public)), retention);
    let signed_old = backup(&env);
    let signed_new = backup(&env);
    // A newer artifact without a signature (written by a config that does not
    // sign, as anyone who can write to storage could).
    configure(&env, None, retention);
    let unsigned = backup(&env);
    configure(&env, Some(&signed(&key, &public)), retention);

    let list = env.list();
    assert_eq!(entry(&list, &signed_old)["trust"], "signed");
    assert_eq!(entry(&list, &unsigned)["trust"], "untrusted");
    assert!(
        entry(&list, &unsigned)["trust_problem"]
            .as_str()
            .unwrap()
            .contains("not signed")
    );

    let out = env.cairn().args(["prune", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &report[0]["destinations"][0];
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["id"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    // keep_last = 1 counts the newest *signed* artifact, not the newer unsigned one.
    assert_eq!(ids(&d["keep"]), vec![signed_new.clone()], "{d}");
    assert_eq!(ids(&d["delete"]), vec![signed_old.clone()], "{d}");
    assert_eq!(ids(&d["untrusted"]), vec![unsigned.clone()], "{d}");
    assert!(manifest_path(&env, &unsigned).exists(), "untrusted deleted");
    let old = manifest_path(&env, &signed_old);
    assert!(!old.exists());
    assert!(
        !PathBuf::from(format!("{}.minisig", old.display())).exists(),
        "the signature goes with its artifact"
    );
    let out = env.cairn().args(["prune", "--dry-run"]).output().unwrap();
    assert!(stdout(&out).contains("untrusted"), "{}", stdout(&out));

    // Newest good is the signed one: restore without an id takes it.
    let out = env.cairn().args(["status", "--json"]).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["jobs"][0]["newest_good"]["id"], signed_new.as_str());
    let out = env
        .cairn()
        .args(["restore", "app", "--json", "--to", "restored.db"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&signed_new), "{}", stdout(&out));
}

#[test]
fn another_public_key_makes_artifacts_untrusted() {
    let env = Env::new();
    create_sample_db(&env.path("app.db"), 10);
    let (key, public) = signing_key(&env, "signing.key");
    let (_, other) = signing_key(&env, "other.key");
    configure(&env, Some(&signed(&key, &public)), "");
    let id = backup(&env);
    configure(&env, Some(&format!(r#"{{ public_key = "{other}" }}"#)), "");
    let list = env.list();
    let e = entry(&list, &id);
    assert_eq!(e["trust"], "untrusted");
    assert!(
        e["trust_problem"].as_str().unwrap().contains("another key"),
        "{e}"
    );
    let out = env
        .cairn()
        .args(["restore", "app", "--to", "restored.db"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("untrusted"), "{}", stderr(&out));
}

#[test]
fn backup_refuses_to_write_artifacts_it_would_not_trust() {
    let env = Env::new();
    create_sample_db(&env.path("app.db"), 10);
    let (key, _) = signing_key(&env, "signing.key");
    let (_, other) = signing_key(&env, "other.key");
    for signing in [
        format!(
            r#"{{ key_file = "{}", public_key = "{other}" }}"#,
            key.display()
        ),
        format!(r#"{{ public_key = "{other}" }}"#),
        r#"{ key_file = "missing.key" }"#.to_string(),
    ] {
        configure(&env, Some(&signing), "");
        let out = env.cairn().args(["backup", "app"]).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{signing}");
        assert!(
            stderr(&out).contains("signing") || stderr(&out).contains("missing.key"),
            "{signing}: {}",
            stderr(&out)
        );
        let written = std::fs::read_dir(env.path("backups/app"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().is_file())
                    .count()
            })
            .unwrap_or(0);
        assert_eq!(written, 0, "{signing}: something was written");
    }
}

#[test]
fn signing_works_on_a_host_with_only_age_recipients() {
    let env = Env::new();
    create_sample_db(&env.path("app.db"), 10);
    let (_, recipient) = env.keygen("identity.txt");
    std::fs::remove_file(env.path("identity.txt")).unwrap();
    let (key, public) = signing_key(&env, "signing.key");
    let mut text = env.single_job_config(
        r#"{ kind = "sqlite", path = "app.db" }"#,
        &format!(r#"{{ kind = "age", recipients = ["{recipient}"] }}"#),
    );
    text.push_str(&format!("signing = {}\n", signed(&key, &public)));
    env.write_config(&text);
    let id = backup(&env);
    let out = minisign_verify(&manifest_path(&env, &id), &public);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn top_level_signing_applies_to_jobs_and_a_job_may_override_it() {
    let env = Env::new();
    create_sample_db(&env.path("app.db"), 10);
    let (key, public) = signing_key(&env, "signing.key");
    let (other_key, other) = signing_key(&env, "other.key");
    let jobs = format!(
        "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n\
         [jobs.app]\nsource = {{ kind = \"sqlite\", path = \"app.db\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\n\n\
         [jobs.other]\nsource = {{ kind = \"sqlite\", path = \"app.db\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\nsigning = {}\n",
        signed(&other_key, &other)
    );
    env.write_config(&format!("signing = {}\n\n{jobs}", signed(&key, &public)));
    env.cairn().args(["backup", "app"]).assert().success();
    env.cairn().args(["backup", "other"]).assert().success();
    let list = env.list();
    assert!(list.iter().all(|e| e["trust"] == "signed"), "{list:?}");
    let app = list.iter().find(|e| e["job"] == "app").unwrap();
    let other_entry = list.iter().find(|e| e["job"] == "other").unwrap();
    let manifest = |e: &serde_json::Value| {
        env.path("backups").join(format!(
            "{}/{}-{}.manifest.json",
            e["job"].as_str().unwrap(),
            e["job"].as_str().unwrap(),
            e["id"].as_str().unwrap()
        ))
    };
    assert!(minisign_verify(&manifest(app), &public).status.success());
    assert!(
        minisign_verify(&manifest(other_entry), &other)
            .status
            .success()
    );
    assert!(
        !minisign_verify(&manifest(other_entry), &public)
            .status
            .success()
    );
}

#[test]
fn bad_signing_config_is_an_error_with_its_position() {
    let env = Env::new();
    create_sample_db(&env.path("app.db"), 1);
    configure(&env, Some(r#"{ public_key = "RWnot-a-key" }"#), "");
    let out = env.cairn().arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("cairn.toml:9:"), "{err}");
    assert!(err.contains("jobs.app.signing.public_key"), "{err}");
    assert!(err.contains("not a minisign public key"), "{err}");

    configure(&env, Some("{}"), "");
    let out = env.cairn().arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cairn.toml:9:"), "{}", stderr(&out));

    let job = env.single_job_config(
        r#"{ kind = "sqlite", path = "app.db" }"#,
        r#"{ kind = "none" }"#,
    );
    env.write_config(&format!("signing = {{ public_key = \"RWbad\" }}\n\n{job}"));
    let out = env.cairn().arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("cairn.toml:1:"), "{err}");
    assert!(err.contains("key `signing.public_key`"), "{err}");

    configure(&env, Some(r#"{ key = "x" }"#), "");
    let out = env.cairn().arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown field"), "{}", stderr(&out));
}

#[test]
fn gc_keeps_signatures_of_manifests_and_removes_orphans() {
    let env = Env::new();
    create_sample_db(&env.path("app.db"), 5);
    let (key, public) = signing_key(&env, "signing.key");
    configure(&env, Some(&signed(&key, &public)), "");
    let kept = backup(&env);
    let gone = backup(&env);
    std::fs::remove_file(manifest_path(&env, &gone)).unwrap();
    let out = env
        .cairn()
        .args(["gc", "--grace", "0", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let sig = |id: &str| PathBuf::from(format!("{}.minisig", manifest_path(&env, id).display()));
    assert!(sig(&kept).exists(), "gc removed a live signature");
    assert!(!sig(&gone).exists(), "gc left an orphan signature");
    assert_eq!(entry(&env.list(), &kept)["trust"], "signed");
}

fn s3_config(bucket: &str, signing: &str) -> String {
    let s3 = objstores::s3();
    format!(
        "[destinations.remote]\nkind = \"s3\"\nbucket = \"{bucket}\"\nprefix = \"team\"\nendpoint = \"{}\"\nregion = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"${{TEST_S3_SECRET}}\"\n\n\
         [jobs.app]\nsource = {{ kind = \"sqlite\", path = \"app.db\" }}\ndestinations = [\"remote\"]\nencryption = {{ kind = \"none\" }}\nsigning = {signing}\nretention = {{ keep_last = 1 }}\n",
        s3.endpoint(),
        s3.region,
        s3.access_key
    )
}

#[test]
fn signed_manifests_on_s3() {
    let s3 = objstores::s3();
    let bucket = unique_name("sig");
    s3.create_bucket(&bucket);
    let env = Env::new();
    create_sample_db(&env.path("app.db"), 25);
    let (key, public) = signing_key(&env, "signing.key");
    env.write_config(&s3_config(&bucket, &signed(&key, &public)));
    let cairn = || {
        let mut cmd = env.cairn();
        cmd.env("TEST_S3_SECRET", &s3.secret_key);
        cmd
    };
    cairn().args(["backup", "app"]).assert().success();
    let keys = s3.list_objects(&bucket);
    let manifest_key = keys
        .iter()
        .find(|k| k.ends_with(".manifest.json"))
        .expect("a manifest")
        .clone();
    let signature_key = format!("{manifest_key}.minisig");
    assert!(keys.contains(&signature_key), "{keys:?}");

    // Stock minisign on the downloaded objects.
    let manifest_file = env.path("downloaded.manifest.json");
    let manifest = s3.get_object(&bucket, &manifest_key).unwrap();
    std::fs::write(&manifest_file, &manifest).unwrap();
    std::fs::write(
        env.path("downloaded.manifest.json.minisig"),
        s3.get_object(&bucket, &signature_key).unwrap(),
    )
    .unwrap();
    let out = minisign_verify(&manifest_file, &public);
    assert!(out.status.success(), "{}", stderr(&out));

    // One byte changed in storage: untrusted, refused, allowed on request.
    tamper(&manifest_file);
    s3.put_object(
        &bucket,
        &manifest_key,
        &std::fs::read(&manifest_file).unwrap(),
    );
    let out = cairn().args(["list", "--json"]).output().unwrap();
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["trust"], "untrusted", "{list:?}");
    let out = cairn()
        .args(["restore", "app", "--to", "restored.db"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--allow-unsigned"),
        "{}",
        stderr(&out)
    );
    cairn()
        .args(["restore", "app", "--allow-unsigned", "--to", "restored.db"])
        .assert()
        .success();
    assert_eq!(common::count_rows(&env.path("restored.db"), "items"), 25);

    // An unsigned artifact is untrusted too; prune neither counts it nor
    // deletes it, and deletes a pruned artifact's signature with it.
    s3.delete_object(&bucket, &signature_key);
    s3.put_object(&bucket, &manifest_key, &manifest);
    cairn().args(["backup", "app"]).assert().success();
    cairn().args(["backup", "app"]).assert().success();
    let out = cairn().args(["list", "--json"]).output().unwrap();
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let trust: Vec<&str> = list.iter().map(|e| e["trust"].as_str().unwrap()).collect();
    assert_eq!(trust, ["untrusted", "signed", "signed"], "{list:?}");
    let out = cairn().args(["prune", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &report[0]["destinations"][0];
    assert_eq!(d["untrusted"][0]["id"], list[0]["id"], "{d}");
    assert_eq!(d["keep"][0]["id"], list[2]["id"], "{d}");
    assert_eq!(d["delete"][0]["id"], list[1]["id"], "{d}");
    let keys = s3.list_objects(&bucket);
    assert!(
        keys.contains(&manifest_key),
        "the untrusted artifact was deleted"
    );
    let pruned = list[1]["id"].as_str().unwrap();
    assert!(
        !keys.iter().any(|k| k.contains(pruned)),
        "the pruned artifact or its signature is left: {keys:?}"
    );
}
