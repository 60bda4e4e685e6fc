//! Artifacts restore WITHOUT cairn: every layer of a stored object is undone by
//! a standard tool (age, gpg, zstd, gunzip, tar), and the result is the database
//! or folder that was backed up.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Env, stderr};

/// Runs `script` with bash (`set -euo pipefail`), paths passed as $1, $2, …
fn bash(script: &str, args: &[&Path]) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .arg("bash")
        .args(args)
        .output()
        .expect("run bash")
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?}): {}",
        out.status,
        stderr(out)
    );
}

fn sha256sum(path: &Path) -> String {
    common::require_tool("sha256sum");
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert_ok(&out, "sha256sum");
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// `sqlite3 DB SQL` with the stock CLI.
fn sqlite3(db: &Path, sql: &str) -> String {
    common::require_tool("sqlite3");
    let out = Command::new("sqlite3").arg(db).arg(sql).output().unwrap();
    assert_ok(&out, &format!("sqlite3 {sql}"));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn manifest_of(env: &Env, entry: &serde_json::Value) -> serde_json::Value {
    let data = env.data_path(entry);
    let path = data.parent().unwrap().join(format!(
        "{}-{}.manifest.json",
        entry["job"].as_str().unwrap(),
        entry["id"].as_str().unwrap()
    ));
    serde_json::from_slice(&std::fs::read(path).expect("manifest next to the data object"))
        .expect("manifest is JSON")
}

/// A job `app` on a sample WAL database of `rows` items, with `compression` and
/// `encryption`; returns the path of the database.
fn sqlite_job(env: &Env, rows: u32, compression: &str, encryption: &str) -> PathBuf {
    let db = env.path("app.db");
    common::create_sample_db(&db, rows);
    env.write_config(&format!(
        "{}compression = \"{compression}\"\n",
        env.single_job_config(r#"{ kind = "sqlite", path = "app.db" }"#, encryption)
    ));
    db
}

/// The checks every database restored by standard tools must pass: the stored
/// object hashes as `list` says, the decoded bytes are the manifest's plaintext,
/// and the stock sqlite3 sees a sound database with the source's rows.
fn assert_restored_db(
    env: &Env,
    entry: &serde_json::Value,
    restored: &Path,
    source_rows: u32,
    suffix: &str,
) {
    let data = env.data_path(entry);
    assert!(
        entry["key"].as_str().unwrap().ends_with(suffix),
        "key {} should end with {suffix}",
        entry["key"]
    );
    assert_eq!(sha256sum(&data), entry["sha256"].as_str().unwrap());
    assert_eq!(
        std::fs::metadata(&data).unwrap().len(),
        entry["size"].as_u64().unwrap()
    );
    let manifest = manifest_of(env, entry);
    assert_eq!(
        sha256sum(restored),
        manifest["plaintext"]["sha256"].as_str().unwrap(),
        "the decoded bytes are not the plaintext cairn hashed"
    );
    let head = std::fs::read(restored).unwrap();
    assert!(
        head.starts_with(b"SQLite format 3\0"),
        "not a database file"
    );
    assert_eq!(sqlite3(restored, "PRAGMA integrity_check"), "ok");
    assert_eq!(
        sqlite3(restored, "SELECT count(*) FROM items"),
        source_rows.to_string()
    );
    assert_eq!(sqlite3(restored, "SELECT count(*) FROM suppliers"), "1");
    assert_eq!(
        sqlite3(restored, "SELECT name FROM suppliers WHERE id = 1"),
        "Acme Ümlaut"
    );
    assert_eq!(
        sqlite3(restored, "SELECT name FROM items ORDER BY id LIMIT 1"),
        "item 0 — naïve café"
    );
}

#[test]
fn zstd_age_recipients_decrypt_with_age_and_zstd() {
    common::require_tool("age");
    common::require_tool("zstd");
    let env = Env::new();
    let (identity, recipient) = env.keygen("identity.txt");
    sqlite_job(
        &env,
        700,
        "zstd",
        &format!(
            r#"{{ kind = "age", recipients = ["{recipient}"], identity_file = "identity.txt" }}"#
        ),
    );
    let entry = env.backup("app");
    let data = env.data_path(&entry);
    let restored = env.path("restored.db");
    let out = bash(
        r#"age -d -i "$1" "$2" | zstd -d > "$3""#,
        &[&identity, &data, &restored],
    );
    assert_ok(&out, "age -d | zstd -d");
    assert_restored_db(&env, &entry, &restored, 700, ".sqlite.zst.age");

    // The identity is really needed: another key does not open the artifact.
    let (other, _) = env.keygen("other.txt");
    let out = bash(
        r#"age -d -i "$1" "$2" > "$3""#,
        &[&other, &data, &env.path("nope")],
    );
    assert!(
        !out.status.success(),
        "age decrypted with the wrong identity"
    );
}

#[test]
fn gzip_without_encryption_is_a_gzip_of_the_database() {
    common::require_tool("gzip");
    let env = Env::new();
    sqlite_job(&env, 300, "gzip", r#"{ kind = "none" }"#);
    let entry = env.backup("app");
    let restored = env.path("restored.db");
    let out = bash(
        r#"gunzip -c "$1" > "$2""#,
        &[&env.data_path(&entry), &restored],
    );
    assert_ok(&out, "gunzip -c");
    assert_restored_db(&env, &entry, &restored, 300, ".sqlite.gz");
}

#[test]
fn zstd_without_encryption_is_a_zstd_frame_of_the_database() {
    common::require_tool("zstd");
    let env = Env::new();
    sqlite_job(&env, 300, "zstd", r#"{ kind = "none" }"#);
    let entry = env.backup("app");
    let restored = env.path("restored.db");
    let out = bash(
        r#"zstd -d -c "$1" > "$2""#,
        &[&env.data_path(&entry), &restored],
    );
    assert_ok(&out, "zstd -d");
    assert_restored_db(&env, &entry, &restored, 300, ".sqlite.zst");
    // The frame carries a checksum, so `zstd -t` really checks the content.
    assert_ok(
        &bash(r#"zstd -t -q "$1""#, &[&env.data_path(&entry)]),
        "zstd -t",
    );
}

#[test]
fn no_compression_no_encryption_artifact_is_the_database_itself() {
    let env = Env::new();
    sqlite_job(&env, 250, "none", r#"{ kind = "none" }"#);
    let entry = env.backup("app");
    let data = env.data_path(&entry);
    // Copy it: opening the stored object itself could add -wal/-shm files beside it.
    let restored = env.path("restored.db");
    std::fs::copy(&data, &restored).unwrap();
    assert_restored_db(&env, &entry, &restored, 250, ".sqlite");
    assert_eq!(
        entry["sha256"],
        manifest_of(&env, &entry)["plaintext"]["sha256"],
        "without compression or encryption the stored bytes are the plaintext"
    );
}

/// A private GNUPGHOME whose agent (if gpg starts one) is stopped on drop.
struct GnupgHome(PathBuf);

impl GnupgHome {
    fn new(env: &Env) -> Self {
        let home = env.path("gnupg");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        GnupgHome(home)
    }

    fn decrypt(&self, passphrase_file: &Path, artifact: &Path, out: &Path) -> Output {
        Command::new("bash")
            .arg("-c")
            .arg(
                r#"set -euo pipefail
gpg --batch --quiet --pinentry-mode loopback --no-symkey-cache --passphrase-file "$1" --decrypt "$2" | zstd -d > "$3""#,
            )
            .arg("bash")
            .args([passphrase_file, artifact, out])
            .env("GNUPGHOME", &self.0)
            .output()
            .expect("run gpg")
    }
}

impl Drop for GnupgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", &self.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn openpgp_decrypts_with_stock_gpg() {
    common::require_tool("gpg");
    common::require_tool("zstd");
    let env = Env::new();
    let pass_file = env.path("pgp-pass.txt");
    std::fs::write(&pass_file, "correct horse battery staple\n").unwrap();
    sqlite_job(
        &env,
        400,
        "zstd",
        r#"{ kind = "openpgp", passphrase_file = "pgp-pass.txt" }"#,
    );
    let entry = env.backup("app");
    let data = env.data_path(&entry);
    let gnupg = GnupgHome::new(&env);

    // A wrong passphrase first (so that no cache could help the right one later).
    let wrong_file = env.path("wrong-pass.txt");
    std::fs::write(&wrong_file, "correct horse battery stapler\n").unwrap();
    let wrong_out = env.path("wrong.db");
    let out = gnupg.decrypt(&wrong_file, &data, &wrong_out);
    assert!(
        !out.status.success(),
        "gpg accepted a wrong passphrase: {}",
        stderr(&out)
    );
    let garbage = std::fs::read(&wrong_out).unwrap_or_default();
    assert!(!garbage.starts_with(b"SQLite format 3"));

    let restored = env.path("restored.db");
    let out = gnupg.decrypt(&pass_file, &data, &restored);
    assert_ok(&out, "gpg --decrypt | zstd -d");
    assert_restored_db(&env, &entry, &restored, 400, ".sqlite.zst.gpg");
}

/// Runs `age -d -o OUT FILE` on a pseudo-terminal (the age CLI reads passphrases
/// only from a terminal), typing `passphrase` once the prompt appears.
fn age_decrypt_on_a_tty(artifact: &Path, out: &Path, passphrase: &str) -> (bool, String) {
    common::require_tool("script");
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
    let mut child = Command::new("script")
        .arg("-qec")
        .arg(format!("age -d -o {} {}", quote(out), quote(artifact)))
        .arg("/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn script");
    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let reader = {
        let seen = seen.clone();
        let mut stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let prompted = loop {
        let text = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
        if text.contains("passphrase") {
            break true;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdin = child.stdin.take().unwrap();
    if prompted {
        stdin
            .write_all(format!("{passphrase}\n").as_bytes())
            .unwrap();
        stdin.flush().unwrap();
    }
    // Keep the terminal open until age is done (scrypt takes about a second).
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    reader.join().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let transcript = format!(
        "prompted: {prompted}; tty: {}; stderr: {err}",
        String::from_utf8_lossy(&seen.lock().unwrap())
    );
    (status.success(), transcript)
}

#[test]
fn age_passphrase_decrypts_with_the_age_cli_on_a_terminal() {
    common::require_tool("age");
    common::require_tool("zstd");
    let env = Env::new();
    sqlite_job(
        &env,
        200,
        "zstd",
        r#"{ kind = "age-passphrase", passphrase_env = "CAIRN_TEST_AGE_PASS" }"#,
    );
    let passphrase = "tr0ub4dor & 3 spaces";
    let out = env
        .cairn()
        .env("CAIRN_TEST_AGE_PASS", passphrase)
        .args(["backup", "app"])
        .output()
        .unwrap();
    assert_ok(&out, "cairn backup");
    let entry = env.list().pop().expect("one artifact");
    let data = env.data_path(&entry);

    let wrong = env.path("wrong.zst");
    let (ok, transcript) = age_decrypt_on_a_tty(&data, &wrong, "not the passphrase");
    assert!(!ok, "age accepted a wrong passphrase: {transcript}");
    assert!(transcript.contains("incorrect passphrase"), "{transcript}");

    let decrypted = env.path("restored.db.zst");
    let (ok, transcript) = age_decrypt_on_a_tty(&data, &decrypted, passphrase);
    assert!(ok, "age -d failed: {transcript}");
    let restored = env.path("restored.db");
    assert_ok(
        &bash(r#"zstd -d -c "$1" > "$2""#, &[&decrypted, &restored]),
        "zstd -d",
    );
    assert_restored_db(&env, &entry, &restored, 200, ".sqlite.zst.age");
}

// ---------------------------------------------------------------- files jobs

/// What a tree holds, entry by entry (relative path → kind, mode, mtime, content).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, dir: &Path, into: &mut BTreeMap<PathBuf, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let mtime = format!("{}.{:09}", meta.mtime(), meta.mtime_nsec());
            let mode = meta.mode() & 0o7777;
            let kind = if meta.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                walk(root, &path, into);
                format!("dir {mode:o}")
            } else {
                let content = std::fs::read(&path).unwrap();
                format!(
                    "file {mode:o} {} bytes {}",
                    content.len(),
                    hex_sha256(&content)
                )
            };
            into.insert(rel, format!("{kind} mtime {mtime}"));
        }
    }
    let mut map = BTreeMap::new();
    walk(root, root, &mut map);
    map
}

fn hex_sha256(bytes: &[u8]) -> String {
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(bytes)?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

#[test]
fn files_job_extracts_with_zstd_and_tar() {
    common::require_tool("zstd");
    common::require_tool("tar");
    let env = Env::new();
    let root = env.path("site");
    let write = |rel: &str, content: &[u8], mode: u32| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    write("index.html", b"<h1>hello</h1>\n", 0o644);
    write("bin/run.sh", b"#!/bin/sh\necho run\n", 0o755);
    write("conf/secret.env", b"TOKEN=abc\n", 0o600);
    write("data/deep/er/values.csv", &b"1,2,3\n".repeat(5000), 0o640);
    write("skip.tmp", b"excluded", 0o644);
    std::fs::create_dir(root.join("empty")).unwrap();
    std::os::unix::fs::symlink("../index.html", root.join("bin/index-link")).unwrap();
    std::fs::set_permissions(root.join("conf"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let mut t = 1_600_000_000;
    for (rel, _) in snapshot(&root) {
        t += 3601;
        common::set_mtime(&root.join(rel), t);
    }
    env.write_config(&format!(
        "{}compression = \"zstd\"\n",
        env.single_job_config(
            r#"{ kind = "files", path = "site", exclude = ["*.tmp"] }"#,
            r#"{ kind = "none" }"#
        )
    ));
    let entry = env.backup("app");
    let data = env.data_path(&entry);
    assert!(entry["key"].as_str().unwrap().ends_with(".tar.zst"));
    assert_eq!(sha256sum(&data), entry["sha256"].as_str().unwrap());

    let out_dir = env.path("extracted");
    std::fs::create_dir(&out_dir).unwrap();
    assert_ok(
        &bash(r#"zstd -d < "$1" | tar -x -p -C "$2""#, &[&data, &out_dir]),
        "zstd -d | tar -x",
    );
    let mut expected = snapshot(&root);
    assert!(expected.remove(Path::new("skip.tmp")).is_some());
    let got = snapshot(&out_dir);
    assert_eq!(got, expected, "tar -x does not reproduce the tree");
    assert_eq!(
        std::fs::read_link(out_dir.join("bin/index-link")).unwrap(),
        Path::new("../index.html")
    );
    assert_eq!(
        std::fs::read(out_dir.join("bin/index-link")).unwrap(),
        b"<h1>hello</h1>\n"
    );
}
