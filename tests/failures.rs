//! Bad input never loses data: wrong keys, damaged or missing artifacts, broken
//! sources, failing encryption, full disks, bad destinations and `kill -9` in
//! the middle of a backup or a restore. Every failure must exit with the right
//! code, say what failed on stderr, leave nothing that `list` shows as an
//! artifact, and leave restore targets exactly as they were.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Env, stderr, stdout};
use rusqlite::Connection;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Runs `cairn <args>` in `env`.
fn run(env: &Env, args: &[&str]) -> Output {
    env.cairn().args(args).output().expect("run cairn")
}

/// Runs `cairn restore JOB [ID] --to TARGET [extra…]`.
fn restore(env: &Env, id: Option<&str>, target: &Path, extra: &[&str]) -> Output {
    let mut cmd = env.cairn();
    cmd.args(["restore", "app"]);
    if let Some(id) = id {
        cmd.arg(id);
    }
    cmd.arg("--to").arg(target).args(extra);
    cmd.output().expect("run cairn restore")
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        stdout(out),
        stderr(out)
    )
}

/// Asserts the exit code and that stderr contains every one of `needles`
/// (case-insensitively); returns stderr.
fn expect_failure(out: &Output, code: i32, needles: &[&str]) -> String {
    assert_eq!(out.status.code(), Some(code), "{}", describe(out));
    let err = stderr(out);
    let lower = err.to_lowercase();
    for needle in needles {
        assert!(
            lower.contains(&needle.to_lowercase()),
            "stderr should mention {needle:?}:\n{}",
            describe(out)
        );
    }
    err
}

/// `cairn list --json` parsed, whatever the exit code (a destination that
/// cannot be listed makes `list` exit 1 but it still prints JSON).
fn listed(env: &Env) -> Vec<serde_json::Value> {
    let out = run(env, &["list", "--json"]);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("list --json is not JSON ({e}):\n{}", describe(&out)))
}

/// Every regular file below `dir` (empty when `dir` does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        if meta.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Files left in `backups/<job>/.partial` (unfinished uploads).
fn partial_leftovers(env: &Env, job: &str) -> Vec<PathBuf> {
    files_under(&env.path("backups").join(job).join(".partial"))
}

/// Entries of `dir` whose name contains `needle` (restore temporaries, safety copies).
fn entries_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().contains(needle))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn restore_temps(dir: &Path) -> Vec<PathBuf> {
    entries_containing(dir, ".cairn-restore-")
}

fn safety_copies(dir: &Path) -> Vec<PathBuf> {
    entries_containing(dir, ".cairn-safety-")
}

fn manifest_path(env: &Env, entry: &serde_json::Value) -> PathBuf {
    env.path("backups").join("app").join(format!(
        "app-{}.manifest.json",
        entry["id"].as_str().expect("id")
    ))
}

fn id_of(entry: &serde_json::Value) -> &str {
    entry["id"].as_str().expect("id")
}

/// A database of about `mb` MiB of incompressible data, written fast: one
/// statement in one transaction, the blobs made by SQLite itself.
fn big_db(path: &Path, mb: u64) {
    let conn = Connection::open(path).expect("open big db");
    conn.execute_batch(
        "PRAGMA journal_mode = OFF;
         PRAGMA synchronous = OFF;
         CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL);",
    )
    .expect("schema");
    let rows = mb * 1024 * 1024 / 4096;
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO blobs (data) SELECT randomblob(4000) FROM n",
        [rows as i64],
    )
    .expect("fill big db");
    drop(conn);
    let size = std::fs::metadata(path).expect("stat big db").len();
    assert!(
        size >= mb * 1024 * 1024 * 9 / 10,
        "big db has only {size} bytes"
    );
}

fn sha256_file(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).expect("read for hashing");
    hex::encode(Sha256::digest(&bytes))
}

/// A sqlite job `app` on ./app.db with the given encryption and compression.
fn sqlite_job(env: &Env, encryption: &str, compression: &str) {
    env.write_config(&format!(
        "{}compression = \"{compression}\"\n",
        env.single_job_config(r#"{ kind = "sqlite", path = "app.db" }"#, encryption)
    ));
}

/// A running `cairn` that is SIGKILLed if the test panics before it is reaped.
struct Running(Option<Child>);

impl Running {
    fn spawn(env: &Env, args: &[&str]) -> Self {
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("cairn"))
            .current_dir(env.dir.path())
            .env_remove("CAIRN_CONFIG")
            .env_remove("CAIRN_LOG")
            .arg("--config")
            .arg(env.config_path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cairn");
        Running(Some(child))
    }

    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child")
    }

    /// Polls `ready` until it holds, failing if the process exits first.
    fn wait_until(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if ready() {
                return;
            }
            if let Some(status) = self.child().try_wait().expect("try_wait") {
                let out = self
                    .0
                    .take()
                    .expect("child")
                    .wait_with_output()
                    .expect("output");
                panic!(
                    "cairn exited ({status}) before {what}; the test could not interrupt it:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// `kill -9`, then reaps the process; asserts it really died of the signal.
    fn kill9(mut self) {
        let mut child = self.0.take().expect("child");
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill -9 failed");
        let status = child.wait().expect("wait");
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "cairn finished ({status}) before it was killed; the test did not interrupt it"
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A small tmpfs mounted on a folder, unmounted on drop (also when the test panics).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts or fails the test: these tests are `#[ignore]`d, and run only
    /// where mounting is allowed (scripts/test as root).
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "`mount -t tmpfs` failed (this full-disk test needs root): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = std::process::Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds it open: detach it so the temp dir can go.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.dir)
                .status();
        }
    }
}

// ---------------------------------------------------------------------------
// 1. Wrong passphrase
// ---------------------------------------------------------------------------

fn wrong_passphrase_case(kind: &str) {
    let env = Env::new();
    common::create_sample_db(&env.path("app.db"), 50);
    sqlite_job(
        &env,
        &format!(r#"{{ kind = "{kind}", passphrase_env = "PW" }}"#),
        "zstd",
    );
    let out = env
        .cairn()
        .env("PW", "a")
        .args(["backup", "app"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{kind}: {}", describe(&out));
    assert_eq!(env.list().len(), 1);

    let target = env.path("restored.db");
    let out = env
        .cairn()
        .env("PW", "b")
        .args(["restore", "app", "--to"])
        .arg(&target)
        .output()
        .unwrap();
    expect_failure(&out, 1, &["wrong passphrase"]);
    assert!(
        !target.exists(),
        "{kind}: a failed restore created the target"
    );
    assert_eq!(
        restore_temps(env.dir.path()),
        Vec::<PathBuf>::new(),
        "{kind}"
    );

    // Verify with the wrong passphrase fails too, and the artifact itself is fine.
    let out = env
        .cairn()
        .env("PW", "b")
        .args(["verify", "app"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{kind}: {}", describe(&out));
    let out = env
        .cairn()
        .env("PW", "a")
        .args(["restore", "app", "--to"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(out.status.success(), "{kind}: {}", describe(&out));
    assert_eq!(common::count_rows(&target, "items"), 50);
}

#[test]
fn wrong_age_passphrase_fails_and_writes_nothing() {
    wrong_passphrase_case("age-passphrase");
}

#[test]
fn wrong_openpgp_passphrase_fails_and_writes_nothing() {
    wrong_passphrase_case("openpgp");
}

// ---------------------------------------------------------------------------
// 2. Wrong age identity
// ---------------------------------------------------------------------------

#[test]
fn wrong_age_identity_fails_and_names_the_key() {
    let env = Env::new();
    let (_, recipient) = env.sqlite_age_setup(20);
    env.backup("app");
    let (other, _) = env.keygen("other.txt");
    env.write_config(&env.single_job_config(
        r#"{ kind = "sqlite", path = "app.db" }"#,
        &format!(
            r#"{{ kind = "age", recipients = ["{recipient}"], identity_file = "{}" }}"#,
            other.display()
        ),
    ));
    let target = env.path("restored.db");
    let out = restore(&env, None, &target, &[]);
    let err = expect_failure(&out, 1, &["identit"]);
    assert!(
        err.contains("wrong key") || err.contains("identity_file"),
        "the message should point at the key: {err}"
    );
    assert!(!target.exists());
    assert_eq!(restore_temps(env.dir.path()), Vec::<PathBuf>::new());
    let out = run(&env, &["verify", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
}

// ---------------------------------------------------------------------------
// 3. Truncated data object
// ---------------------------------------------------------------------------

#[test]
fn truncated_data_object_is_not_listed_and_not_restored() {
    let env = Env::new();
    env.sqlite_age_setup(300);
    let entry = env.backup("app");
    let id = id_of(&entry).to_string();
    let data = env.data_path(&entry);
    let size = std::fs::metadata(&data).unwrap().len();
    assert!(size > 100);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .unwrap()
        .set_len(size / 2)
        .unwrap();

    let out = run(&env, &["list", "--json"]);
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(listed.is_empty(), "truncated artifact listed: {listed:?}");
    let err = stderr(&out);
    assert!(
        err.contains(&id) || err.contains(entry["key"].as_str().unwrap()),
        "list should warn about the damaged artifact: {}",
        describe(&out)
    );
    assert!(err.contains("bytes"), "{err}");
    // Human list warns as well.
    let out = run(&env, &["list"]);
    assert!(stderr(&out).contains("warning"), "{}", describe(&out));

    let out = run(&env, &["verify", "app", &id]);
    expect_failure(&out, 1, &[&id, "damaged"]);

    let target = env.path("x.db");
    let out = restore(&env, Some(&id), &target, &[]);
    expect_failure(&out, 1, &["damaged"]);
    assert!(!target.exists());
    assert_eq!(restore_temps(env.dir.path()), Vec::<PathBuf>::new());
    // Without an id there is no complete artifact to fall back to.
    let out = restore(&env, None, &target, &[]);
    expect_failure(&out, 1, &["no complete artifact"]);
    assert!(!target.exists());
}

// ---------------------------------------------------------------------------
// 4. One flipped byte
// ---------------------------------------------------------------------------

#[test]
fn flipped_byte_fails_verify_and_leaves_the_target_alone() {
    let env = Env::new();
    env.sqlite_age_setup(300);
    let entry = env.backup("app");
    let id = id_of(&entry).to_string();
    let data = env.data_path(&entry);
    let mut bytes = std::fs::read(&data).unwrap();
    let size = bytes.len();
    let middle = size / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&data, &bytes).unwrap();
    assert_eq!(std::fs::metadata(&data).unwrap().len() as usize, size);

    // Same size: still listed, but verification reads it and refuses it.
    assert_eq!(env.list().len(), 1);
    let out = run(&env, &["verify", "app", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stdout(&out).contains("SHA-256") && stderr(&out).contains("SHA-256"),
        "verify should name the SHA-256 mismatch: {}",
        describe(&out)
    );

    let target = env.path("live.db");
    common::create_sample_db(&target, 3);
    let before = std::fs::read(&target).unwrap();
    let out = restore(&env, Some(&id), &target, &["--force"]);
    expect_failure(&out, 1, &["SHA-256", "damaged"]);
    assert_eq!(std::fs::read(&target).unwrap(), before, "target changed");
    assert_eq!(restore_temps(env.dir.path()), Vec::<PathBuf>::new());
    assert_eq!(safety_copies(env.dir.path()), Vec::<PathBuf>::new());
    assert_eq!(common::count_rows(&target, "items"), 3);
}

// ---------------------------------------------------------------------------
// 5. Missing manifest
// ---------------------------------------------------------------------------

#[test]
fn missing_manifest_means_no_artifact() {
    let env = Env::new();
    env.sqlite_age_setup(10);
    let entry = env.backup("app");
    let id = id_of(&entry).to_string();
    std::fs::remove_file(manifest_path(&env, &entry)).unwrap();
    assert!(env.data_path(&entry).exists());

    assert!(env.list().is_empty());
    let target = env.path("restored.db");
    let out = restore(&env, None, &target, &[]);
    expect_failure(&out, 1, &["no complete artifact", "cairn backup app"]);
    let out = restore(&env, Some(&id), &target, &[]);
    expect_failure(&out, 1, &["no artifact with id", "cairn list app"]);
    assert!(!target.exists());
    let out = run(&env, &["verify", "app", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
}

// ---------------------------------------------------------------------------
// 6. Manifest with an edited sha256
// ---------------------------------------------------------------------------

#[test]
fn edited_manifest_hash_fails_verify_and_restore() {
    let env = Env::new();
    env.sqlite_age_setup(10);
    let entry = env.backup("app");
    let id = id_of(&entry).to_string();
    let path = manifest_path(&env, &entry);
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let sha = manifest["data"]["sha256"].as_str().unwrap().to_string();
    let edited = format!(
        "{}{}",
        if sha.starts_with('0') { "1" } else { "0" },
        &sha[1..]
    );
    manifest["data"]["sha256"] = edited.into();
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();

    let out = run(&env, &["verify", "app", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stdout(&out).contains("FAILED"), "{}", describe(&out));
    let out = run(&env, &["verify", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));

    let target = env.path("restored.db");
    let out = restore(&env, Some(&id), &target, &[]);
    expect_failure(&out, 1, &["SHA-256"]);
    assert!(!target.exists());
    assert_eq!(restore_temps(env.dir.path()), Vec::<PathBuf>::new());
}

// ---------------------------------------------------------------------------
// 7. Garbage manifest
// ---------------------------------------------------------------------------

#[test]
fn garbage_manifest_is_reported_and_others_still_listed() {
    let env = Env::new();
    env.sqlite_age_setup(10);
    let bad = env.backup("app");
    let good = loop {
        let entry = env.backup("app");
        if entry["id"] != bad["id"] {
            break entry;
        }
    };
    let bad_manifest = manifest_path(&env, &bad);
    std::fs::write(&bad_manifest, b"this is { not json").unwrap();

    let out = run(&env, &["list", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["id"], good["id"]);
    let err = stderr(&out);
    let bad_name = bad_manifest.file_name().unwrap().to_string_lossy();
    assert!(
        err.contains(&*bad_name) && err.contains("not a cairn manifest"),
        "list should warn about the garbage manifest: {}",
        describe(&out)
    );

    // The good artifact is still the one restored and verified.
    let out = run(&env, &["verify", "app"]);
    assert!(out.status.success(), "{}", describe(&out));
    let target = env.path("restored.db");
    let out = restore(&env, None, &target, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(common::count_rows(&target, "items"), 10);
}

// ---------------------------------------------------------------------------
// 8. Unknown job, unreadable or missing sources
// ---------------------------------------------------------------------------

#[test]
fn unknown_job_is_exit_2_and_stores_nothing() {
    let env = Env::new();
    env.sqlite_age_setup(1);
    let out = run(&env, &["backup", "nope"]);
    expect_failure(&out, 2, &["unknown job `nope`"]);
    assert_eq!(files_under(&env.path("backups")), Vec::<PathBuf>::new());
}

fn assert_source_failure(env: &Env, path_in_message: &Path) {
    let out = run(env, &["backup", "app"]);
    let err = expect_failure(&out, 1, &["job `app`"]);
    assert!(
        err.contains(&*path_in_message.to_string_lossy()),
        "the message should name {}: {}",
        path_in_message.display(),
        describe(&out)
    );
    assert!(env.list().is_empty());
    assert_eq!(partial_leftovers(env, "app"), Vec::<PathBuf>::new());
    assert_eq!(files_under(&env.path("backups")), Vec::<PathBuf>::new());
}

#[test]
fn missing_sqlite_source_fails_cleanly() {
    let env = Env::new();
    sqlite_job(&env, r#"{ kind = "none" }"#, "zstd");
    assert_source_failure(&env, &env.path("app.db"));
    assert!(!env.path("app.db").exists(), "backup created the source");
}

#[test]
fn non_sqlite_source_fails_cleanly_and_is_not_modified() {
    let env = Env::new();
    let text: Vec<u8> = (0..20_000u32)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect();
    std::fs::write(env.path("app.db"), &text).unwrap();
    sqlite_job(&env, r#"{ kind = "none" }"#, "zstd");
    assert_source_failure(&env, &env.path("app.db"));
    assert_eq!(std::fs::read(env.path("app.db")).unwrap(), text);
}

#[test]
fn missing_files_source_fails_cleanly() {
    let env = Env::new();
    env.write_config(&env.single_job_config(
        r#"{ kind = "files", path = "data" }"#,
        r#"{ kind = "none" }"#,
    ));
    assert_source_failure(&env, &env.path("data"));
}

// ---------------------------------------------------------------------------
// 9. Encryption fails closed
// ---------------------------------------------------------------------------

#[test]
fn missing_recipients_file_stores_nothing() {
    let env = Env::new();
    common::create_sample_db(&env.path("app.db"), 5);
    sqlite_job(
        &env,
        r#"{ kind = "age", recipients_file = "recipients.txt" }"#,
        "zstd",
    );
    let out = run(&env, &["backup", "app"]);
    expect_failure(&out, 1, &["recipients.txt"]);
    assert_eq!(files_under(&env.path("backups")), Vec::<PathBuf>::new());
    assert!(listed(&env).is_empty());
}

#[test]
fn unset_or_empty_passphrase_stores_nothing() {
    for kind in ["age-passphrase", "openpgp"] {
        let env = Env::new();
        common::create_sample_db(&env.path("app.db"), 5);
        sqlite_job(
            &env,
            &format!(r#"{{ kind = "{kind}", passphrase_env = "CAIRN_FAILURES_PW" }}"#),
            "zstd",
        );
        let out = env
            .cairn()
            .env_remove("CAIRN_FAILURES_PW")
            .args(["backup", "app"])
            .output()
            .unwrap();
        expect_failure(&out, 2, &["CAIRN_FAILURES_PW", "not set"]);
        assert_eq!(
            files_under(&env.path("backups")),
            Vec::<PathBuf>::new(),
            "{kind}"
        );

        let out = env
            .cairn()
            .env("CAIRN_FAILURES_PW", "")
            .args(["backup", "app"])
            .output()
            .unwrap();
        expect_failure(&out, 1, &["empty"]);
        assert_eq!(
            files_under(&env.path("backups")),
            Vec::<PathBuf>::new(),
            "{kind}"
        );
        assert!(listed(&env).is_empty(), "{kind}");
    }
}

// ---------------------------------------------------------------------------
// 10. Full disk
// ---------------------------------------------------------------------------

#[test]
#[ignore = "mounts a tmpfs, so needs root: scripts/test runs it as root with --ignored"]
fn full_destination_disk_commits_nothing() {
    let env = Env::new();
    big_db(&env.path("app.db"), 4);
    let _mount = Tmpfs::mount(&env.path("backups"), "1m");
    for compression in ["none", "zstd"] {
        sqlite_job(&env, r#"{ kind = "none" }"#, compression);
        let out = run(&env, &["backup", "app"]);
        let err = expect_failure(
            &out,
            1,
            &[
                "job `app`",
                "nothing was committed",
                "destination `local`",
                "disk is full",
            ],
        );
        let lower = err.to_lowercase();
        assert!(
            lower.contains("no space left") || lower.contains("disk is full"),
            "{compression}: stderr should say the disk is full: {}",
            describe(&out)
        );
        assert!(env.list().is_empty(), "{compression}");
        assert_eq!(
            partial_leftovers(&env, "app"),
            Vec::<PathBuf>::new(),
            "{compression}"
        );
        assert_eq!(
            files_under(&env.path("backups")),
            Vec::<PathBuf>::new(),
            "{compression}"
        );
    }
}

#[test]
#[ignore = "mounts a tmpfs, so needs root: scripts/test runs it as root with --ignored"]
fn full_restore_target_disk_leaves_the_target_alone() {
    let env = Env::new();
    big_db(&env.path("app.db"), 4);
    sqlite_job(&env, r#"{ kind = "none" }"#, "zstd");
    env.backup("app");

    let _mount = Tmpfs::mount(&env.path("full"), "1m");
    let target = env.path("full/live.db");
    common::create_sample_db(&target, 4);
    let before = std::fs::read(&target).unwrap();

    let out = restore(&env, None, &target, &["--force"]);
    let err = expect_failure(&out, 1, &[]);
    let lower = err.to_lowercase();
    assert!(
        lower.contains("no space left") || lower.contains("disk is full"),
        "stderr should say the target's disk is full: {}",
        describe(&out)
    );
    assert!(
        !lower.contains("damaged"),
        "a full target disk is not a damaged artifact: {}",
        describe(&out)
    );
    assert_eq!(std::fs::read(&target).unwrap(), before, "target changed");
    assert_eq!(restore_temps(&env.path("full")), Vec::<PathBuf>::new());
    assert_eq!(safety_copies(&env.path("full")), Vec::<PathBuf>::new());
    assert_eq!(common::count_rows(&target, "items"), 4);
    // The artifact itself is still good.
    let out = run(&env, &["verify", "app"]);
    assert!(out.status.success(), "{}", describe(&out));
}

#[test]
#[ignore = "mounts a tmpfs, so needs root: scripts/test runs it as root with --ignored"]
fn full_drill_scratch_disk_is_named_and_marks_nothing_bad() {
    let env = Env::new();
    big_db(&env.path("app.db"), 4);
    sqlite_job(&env, r#"{ kind = "none" }"#, "zstd");
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    env.write_config(&format!(
        "{config}drill = {{ scratch_dir = \"scratch\" }}\n"
    ));
    env.backup("app");

    let _mount = Tmpfs::mount(&env.path("scratch"), "1m");
    let out = run(&env, &["drill", "app"]);
    let err = expect_failure(&out, 1, &["scratch"]);
    let lower = err.to_lowercase();
    assert!(
        lower.contains("free") || lower.contains("no space") || lower.contains("full"),
        "stderr should say the scratch folder is too small: {}",
        describe(&out)
    );
    assert!(
        !lower.contains("damaged"),
        "a full scratch disk is not a damaged artifact: {}",
        describe(&out)
    );
    assert_eq!(files_under(&env.path("scratch")), Vec::<PathBuf>::new());
    // Not marked bad: the artifact still restores without --allow-bad.
    let out = restore(&env, None, &env.path("restored.db"), &[]);
    assert!(out.status.success(), "{}", describe(&out));
}

/// Writes zeros into `path` until its disk is full.
fn fill_disk(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    let _ = file.sync_all();
}

#[test]
#[ignore = "mounts a tmpfs, so needs root: scripts/test runs it as root with --ignored"]
fn full_state_store_disk_is_named_and_the_store_survives() {
    let env = Env::new();
    common::create_sample_db(&env.path("app.db"), 50);
    let _mount = Tmpfs::mount(&env.path("state"), "1m");
    sqlite_job(&env, r#"{ kind = "none" }"#, "zstd");
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    env.write_config(&format!(
        "{config}\n[state]\npath = \"state/cairn-state.db\"\n"
    ));
    env.backup("app");
    fill_disk(&env.path("state/filler"));

    let out = run(&env, &["backup", "app"]);
    let err = describe(&out);
    assert!(
        err.contains("cairn-state.db") && err.to_lowercase().contains("full"),
        "the warning should name the state store and say its disk is full: {err}"
    );
    // The backup itself is whole: history is what could not be written.
    assert!(out.status.success(), "{err}");
    assert_eq!(listed(&env).len(), 2);
    let out = run(&env, &["verify", "app"]);
    assert!(out.status.success(), "{}", describe(&out));

    std::fs::remove_file(env.path("state/filler")).unwrap();
    let conn = Connection::open(env.path("state/cairn-state.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(conn);
    env.backup("app");
    let out = run(&env, &["history", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        runs.iter().filter(|r| r["status"] == "success").count() >= 2,
        "the runs before and after the full disk are recorded: {runs:#?}"
    );
}

// ---------------------------------------------------------------------------
// 11. kill -9 during a backup
// ---------------------------------------------------------------------------

#[test]
fn kill_during_backup_leaves_no_artifact_and_the_next_backup_works() {
    let env = Env::new();
    big_db(&env.path("app.db"), 150);
    sqlite_job(&env, r#"{ kind = "none" }"#, "zstd");

    let partial = env.path("backups/app/.partial");
    let mut running = Running::spawn(&env, &["backup", "app"]);
    running.wait_until("an upload in .partial has data", || {
        files_under(&partial)
            .iter()
            .any(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 0))
    });
    running.kill9();

    assert!(env.list().is_empty(), "a killed backup must not be listed");
    let leftovers = files_under(&partial);
    assert_eq!(
        leftovers.len(),
        1,
        "the killed upload stays until the next backup"
    );
    let entry = env.backup("app");
    assert_eq!(env.list().len(), 1);
    assert!(
        !leftovers[0].exists(),
        "the next backup removes the upload of the dead process"
    );
    let target = env.path("restored.db");
    let out = restore(&env, Some(id_of(&entry)), &target, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(common::integrity(&target), "ok");
    assert_eq!(
        common::count_rows(&target, "blobs"),
        common::count_rows(&env.path("app.db"), "blobs")
    );
}

// ---------------------------------------------------------------------------
// 12. kill -9 during a restore
// ---------------------------------------------------------------------------

#[test]
fn kill_during_restore_leaves_the_target_and_the_next_restore_cleans_up() {
    let env = Env::new();
    big_db(&env.path("app.db"), 60);
    sqlite_job(&env, r#"{ kind = "none" }"#, "zstd");
    env.backup("app");

    let target = env.path("live.db");
    common::create_sample_db(&target, 6);
    let before = std::fs::read(&target).unwrap();
    let before_sha = sha256_file(&target);

    let dir = env.dir.path().to_path_buf();
    let mut running = Running::spawn(
        &env,
        &[
            "restore",
            "app",
            "--force",
            "--to",
            &target.to_string_lossy(),
        ],
    );
    running.wait_until("a restore temporary appears", || {
        entries_containing(&dir, ".live.db.cairn-restore-")
            .iter()
            .any(|p| std::fs::metadata(p).is_ok())
    });
    running.kill9();

    assert_eq!(std::fs::read(&target).unwrap(), before, "target changed");
    assert_eq!(sha256_file(&target), before_sha);
    assert_eq!(common::count_rows(&target, "items"), 6);
    assert_eq!(safety_copies(&dir), Vec::<PathBuf>::new());
    let stale = entries_containing(&dir, ".live.db.cairn-restore-");
    assert_eq!(
        stale.len(),
        1,
        "the killed restore leaves its temporary: {stale:?}"
    );

    let out = env
        .cairn()
        .args(["restore", "app", "--force", "--json", "--to"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        restore_temps(&dir),
        Vec::<PathBuf>::new(),
        "the second restore should remove the stale temporary"
    );
    assert_eq!(common::integrity(&target), "ok");
    assert_eq!(
        common::count_rows(&target, "blobs"),
        common::count_rows(&env.path("app.db"), "blobs")
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let safety = PathBuf::from(report["safety_copy"].as_str().expect("safety copy"));
    assert_eq!(
        std::fs::read(&safety).unwrap(),
        before,
        "safety copy differs"
    );
}

// ---------------------------------------------------------------------------
// 13. Destination that is a regular file
// ---------------------------------------------------------------------------

#[test]
fn destination_that_is_a_file_fails_and_names_it() {
    let env = Env::new();
    common::create_sample_db(&env.path("app.db"), 5);
    sqlite_job(&env, r#"{ kind = "none" }"#, "zstd");
    std::fs::write(env.path("backups"), b"not a folder\n").unwrap();

    let out = run(&env, &["backup", "app"]);
    expect_failure(&out, 1, &["destination `local`", "job `app`"]);
    assert_eq!(
        std::fs::read(env.path("backups")).unwrap(),
        b"not a folder\n"
    );
    assert!(listed(&env).is_empty());
}

#[test]
fn verify_fails_when_the_newest_artifact_is_damaged_even_if_an_older_one_is_fine() {
    let env = Env::new();
    env.sqlite_age_setup(10);
    let older = env.backup("app");
    let newer = env.backup("app");
    let data = env.data_path(&newer);
    let bytes = std::fs::read(&data).unwrap();
    std::fs::write(&data, &bytes[..bytes.len() / 2]).unwrap();
    let out = run(&env, &["verify", "app"]);
    let text = format!("{}{}", common::stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(text.contains(newer["id"].as_str().unwrap()), "{text}");
    // The older artifact itself still verifies when asked for by id.
    let out = run(&env, &["verify", "app", older["id"].as_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
}
