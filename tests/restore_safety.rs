//! Restores that must not go wrong silently: hostile folder archives (paths
//! out of the target, links, device nodes, absurd names), a SQLite file that
//! another process has open, and the restored folder's own mode.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::Env;
use sha2::Digest as _;

fn all_output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(env: &Env, args: &[&str]) -> Output {
    env.cairn().args(args).output().expect("run cairn")
}

fn restore(env: &Env, target: &Path, extra: &[&str]) -> Output {
    env.cairn()
        .args(["restore", "app"])
        .args(extra)
        .arg("--to")
        .arg(target)
        .output()
        .expect("restore")
}

// ---------------------------------------------------------------------------
// Hand-made tar archives: raw GNU headers, so that names tar-rs's builder
// refuses (`..`, absolute paths) can be written.
// ---------------------------------------------------------------------------

fn padded(body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    out.resize(body.len().div_ceil(512) * 512, 0);
    out
}

fn header(name: &[u8], kind: tar::EntryType, size: u64, link: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    {
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name);
        gnu.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_mode(0o644);
    h.set_size(size);
    h.set_entry_type(kind);
    h.set_mtime(1_600_000_000);
    h.set_cksum();
    h.as_bytes().to_vec()
}

fn entry(name: &[u8], kind: tar::EntryType, body: &[u8], link: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if name.len() > 100 {
        let mut long = name.to_vec();
        long.push(0);
        out.extend(header(
            b"././@LongLink",
            tar::EntryType::GNULongName,
            long.len() as u64,
            b"",
        ));
        out.extend(padded(&long));
        out.extend(header(&name[..100], kind, body.len() as u64, link));
    } else {
        out.extend(header(name, kind, body.len() as u64, link));
    }
    out.extend(padded(body));
    out
}

fn file(name: &[u8]) -> Vec<u8> {
    entry(name, tar::EntryType::Regular, b"planted\n", b"")
}

fn archive(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = entries.concat();
    out.extend([0u8; 1024]);
    out
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A folder job without compression or encryption, so the stored object is
/// the tar itself; one real backup to plant archives into.
fn folder_job(env: &Env) -> serde_json::Value {
    let site = env.path("site");
    std::fs::create_dir_all(site.join("sub")).unwrap();
    std::fs::write(site.join("index.html"), "<h1>hi</h1>").unwrap();
    std::fs::write(site.join("sub/page.html"), "page").unwrap();
    let config = env.single_job_config(
        r#"{ kind = "files", path = "site" }"#,
        r#"{ kind = "none" }"#,
    );
    env.write_config(&format!(
        "{config}compression = \"none\"\ndrill = {{ scratch_dir = \"scratch\" }}\n"
    ));
    env.backup("app")
}

/// Replaces the artifact's data object by `tar` and makes its manifest match,
/// as someone who can write to storage could.
fn plant(env: &Env, entry: &serde_json::Value, tar: &[u8]) {
    std::fs::write(env.data_path(entry), tar).unwrap();
    let manifest_path = env.path(&format!(
        "backups/app/app-{}.manifest.json",
        entry["id"].as_str().unwrap()
    ));
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    for part in ["data", "plaintext"] {
        manifest[part]["size"] = (tar.len() as u64).into();
        manifest[part]["sha256"] = sha256(tar).into();
    }
    std::fs::write(
        &manifest_path,
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
}

fn entries_of(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn hostile_archives_stop_the_restore_and_leave_the_target_untouched() {
    let env = Env::new();
    let artifact = folder_job(&env);
    let outside = env.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("victim.txt"), "victim").unwrap();
    let outside_abs = outside.display().to_string();
    let victim_abs = outside.join("victim.txt").display().to_string();
    let long_name = format!("d/{}", "x".repeat(20_000));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dot-dot",
            archive(&[file(b"ok.txt"), file(b"../escape.txt")]),
            r#""../escape.txt" leaves the target folder"#,
        ),
        (
            "absolute",
            archive(&[file(b"/tmp/cairn-absolute-escape.txt")]),
            r#""/tmp/cairn-absolute-escape.txt" has an absolute path"#,
        ),
        (
            "through a link inside",
            archive(&[
                entry(b"sub", tar::EntryType::Directory, b"", b""),
                entry(b"link", tar::EntryType::Symlink, b"", b"sub"),
                file(b"link/through.txt"),
            ]),
            r#""link/through.txt""#,
        ),
        (
            "through a link outside",
            archive(&[
                entry(b"out", tar::EntryType::Symlink, b"", outside_abs.as_bytes()),
                file(b"out/escape.txt"),
            ]),
            r#""out/escape.txt" comes after a symbolic link"#,
        ),
        (
            "hard link",
            archive(&[entry(
                b"hard",
                tar::EntryType::Link,
                b"",
                victim_abs.as_bytes(),
            )]),
            r#""hard" is a hard link"#,
        ),
        (
            "device",
            archive(&[entry(b"dev", tar::EntryType::Char, b"", b"")]),
            r#""dev" is a device node"#,
        ),
        (
            "fifo with an odd name",
            archive(&[entry(b"fifo\x1b[31m\xff\n", tar::EntryType::Fifo, b"", b"")]),
            r#""fifo\u{1b}[31m\xff\n" is a FIFO"#,
        ),
        (
            "huge name",
            archive(&[file(long_name.as_bytes())]),
            "(20002 bytes) has a path of 20002 bytes",
        ),
    ];
    // A target that exists, to be replaced with --force, and one that does not.
    let existing = env.path("current");
    std::fs::create_dir_all(&existing).unwrap();
    std::fs::write(existing.join("keep.txt"), "keep").unwrap();
    let fresh = env.path("fresh");
    let before = entries_of(env.dir.path());
    for (case, tar, needle) in &cases {
        plant(&env, &artifact, tar);
        for (target, extra) in [(&fresh, &[][..]), (&existing, &["--force"][..])] {
            let out = restore(&env, target, extra);
            let text = all_output(&out);
            assert_eq!(out.status.code(), Some(1), "{case}: {text}");
            assert!(text.contains(needle), "{case}: {needle} not in {text}");
            assert!(
                text.contains("this archive was not made by cairn"),
                "{case}: {text}"
            );
            assert!(
                text.lines().all(|l| l.len() < 1000),
                "{case}: the name is shortened: {} bytes",
                text.len()
            );
            assert!(
                !text.contains('\x1b'),
                "{case}: raw control bytes are escaped"
            );
            assert!(!fresh.exists(), "{case}: nothing restored");
            assert_eq!(entries_of(&existing), vec!["keep.txt"], "{case}");
            assert_eq!(
                std::fs::read_to_string(existing.join("keep.txt")).unwrap(),
                "keep"
            );
            assert_eq!(
                entries_of(env.dir.path()),
                before,
                "{case}: no temporary, safety copy or escaped file beside the target"
            );
            assert_eq!(entries_of(&outside), vec!["victim.txt"], "{case}");
            assert_eq!(
                std::fs::read_to_string(outside.join("victim.txt")).unwrap(),
                "victim"
            );
        }
        assert!(!Path::new("/tmp/cairn-absolute-escape.txt").exists());
    }
    // A drill meets the same archive and says the same.
    plant(&env, &artifact, &cases[0].1);
    let out = run(&env, &["drill", "app"]);
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("not made by cairn"), "{text}");
    assert!(!env.path("escape.txt").exists() && !env.path("scratch/escape.txt").exists());
}

#[test]
fn a_restored_folder_keeps_the_top_folders_mode() {
    let env = Env::new();
    folder_job(&env);
    std::fs::set_permissions(env.path("site"), std::fs::Permissions::from_mode(0o751)).unwrap();
    env.backup("app");
    let target = env.path("restored");
    let out = restore(&env, &target, &[]);
    assert!(out.status.success(), "{}", all_output(&out));
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o751, "the source folder was 0751, restored {mode:o}");
    assert_eq!(
        std::fs::read_to_string(target.join("sub/page.html")).unwrap(),
        "page"
    );
}

fn sha256_file(path: &PathBuf) -> String {
    sha256(&std::fs::read(path).unwrap())
}

#[test]
fn forced_restore_refuses_a_sqlite_file_another_process_has_open() {
    let env = Env::new();
    env.sqlite_age_setup(10);
    env.backup("app");
    let db = env.path("app.db");
    // This test process is "the application": it has the database open.
    let app = rusqlite::Connection::open(&db).unwrap();
    let rows: i64 = app
        .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 10);
    let before = sha256_file(&db);

    let out = restore(&env, &db, &["--force"]);
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("is open in another process"), "{text}");
    assert!(
        text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );
    assert!(text.contains("--force twice"), "{text}");
    assert_eq!(sha256_file(&db), before, "the open database is untouched");
    assert!(
        !entries_of(env.dir.path())
            .iter()
            .any(|n| n.contains("cairn-safety") || n.contains("cairn-restore")),
        "{:?}",
        entries_of(env.dir.path())
    );

    let out = restore(&env, &db, &["--force", "--force"]);
    assert!(out.status.success(), "{}", all_output(&out));
    drop(app);
    assert_eq!(common::count_rows(&db, "items"), 10);
}

#[test]
fn a_restore_runs_quick_check_and_check_full_also_refuses_broken_foreign_keys() {
    let env = Env::new();
    env.sqlite_age_setup(10);
    let db = env.path("app.db");
    // With `foreign_keys` off (SQLite's own default), a row that breaks a
    // foreign key is stored.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "PRAGMA foreign_keys = OFF;
             INSERT INTO items (sku, name, quantity, supplier_id) VALUES ('orphan', 'x', 1, 999);",
        )
        .unwrap();
    env.backup("app");

    let quick = env.path("quick.db");
    let out = env
        .cairn()
        .args(["--json", "restore", "app", "--to"])
        .arg(&quick)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", all_output(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let actions = report["actions"].to_string();
    assert!(actions.contains("PRAGMA quick_check"), "{actions}");
    assert_eq!(common::count_rows(&quick, "items"), 11);

    let full = env.path("full.db");
    let out = restore(&env, &full, &["--check", "full"]);
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("foreign_key_check"), "{text}");
    assert!(text.contains("items row"), "{text}");
    assert!(
        !full.exists(),
        "a database that failed its check was put in place"
    );
    assert!(
        !entries_of(env.dir.path())
            .iter()
            .any(|n| n.contains("cairn-restore")),
        "{:?}",
        entries_of(env.dir.path())
    );

    // A consistent database passes the full check, and the report says so.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("DELETE FROM items WHERE sku = 'orphan'", [])
        .unwrap();
    env.backup("app");
    let out = env
        .cairn()
        .args(["--json", "restore", "app", "--check", "full", "--to"])
        .arg(&full)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", all_output(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let actions = report["actions"].to_string();
    assert!(
        actions.contains("integrity_check and PRAGMA foreign_key_check"),
        "{actions}"
    );
    assert_eq!(common::count_rows(&full, "items"), 10);
}
