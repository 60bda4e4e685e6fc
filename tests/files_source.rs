//! The folder source: what goes into the tar stream (and what must not), what
//! `cairn restore` brings back, and the manifest's facts.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Env, stderr};
use predicates::prelude::*;

const OUTSIDE_MARKER: &str = "OUTSIDE-THE-TREE-7f3c9e";
const EXCLUDED_MARKER: &str = "EXCLUDED-CONTENT-51d2aa";
const INSIDE_MARKER: &str = "INSIDE-THE-TREE-0b8e44";

/// One entry of a tree, described completely enough that two equal
/// descriptions mean the same content, kind, mode, mtime and link target.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    File {
        mode: u32,
        mtime: (i64, i64),
        len: u64,
        content: Vec<u8>,
    },
    Dir {
        mode: u32,
        mtime: (i64, i64),
    },
    Link {
        target: PathBuf,
        mtime: (i64, i64),
    },
}

/// Every entry below `root` (not `root` itself), by relative path.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    fn walk(root: &Path, dir: &Path, into: &mut BTreeMap<PathBuf, Node>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let mtime = (meta.mtime(), meta.mtime_nsec());
            let mode = meta.mode() & 0o7777;
            let node = if meta.file_type().is_symlink() {
                Node::Link {
                    target: std::fs::read_link(&path).unwrap(),
                    mtime,
                }
            } else if meta.is_dir() {
                walk(root, &path, into);
                Node::Dir { mode, mtime }
            } else if meta.is_file() {
                Node::File {
                    mode,
                    mtime,
                    len: meta.len(),
                    content: std::fs::read(&path).unwrap(),
                }
            } else {
                continue;
            };
            into.insert(rel, node);
        }
    }
    let mut map = BTreeMap::new();
    walk(root, root, &mut map);
    map
}

/// Compares two trees and names every difference (content is not printed).
fn assert_same_tree(got: &BTreeMap<PathBuf, Node>, expected: &BTreeMap<PathBuf, Node>) {
    let mut problems = Vec::new();
    for (path, want) in expected {
        match got.get(path) {
            None => problems.push(format!("missing: {}", path.display())),
            Some(have) if have != want => problems.push(format!(
                "differs: {}\n    expected {}\n    got      {}",
                path.display(),
                describe(want),
                describe(have)
            )),
            Some(_) => {}
        }
    }
    for path in got.keys().filter(|p| !expected.contains_key(*p)) {
        problems.push(format!("unexpected: {}", path.display()));
    }
    assert!(
        problems.is_empty(),
        "trees differ:\n{}",
        problems.join("\n")
    );
}

fn describe(node: &Node) -> String {
    match node {
        Node::File {
            mode, mtime, len, ..
        } => format!("file mode {mode:o} mtime {mtime:?} {len} bytes"),
        Node::Dir { mode, mtime } => format!("folder mode {mode:o} mtime {mtime:?}"),
        Node::Link { target, mtime } => {
            format!("symlink -> {} mtime {mtime:?}", target.display())
        }
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Deterministic, incompressible bytes.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

const LONG_DIR: &str = "a-rather-long-folder-name-that-keeps-going-and-going-0123456789";
const LONG_FILE: &str = "and-a-file-name-that-is-long-too-so-the-path-passes-100-chars.txt";
const NON_ASCII: &str = "données/naïve café – 日本語 ✓.txt";

/// Paths (relative) that the job's excludes must leave out.
const EXCLUDED: &[&str] = &[
    "scratch.tmp",
    "docs/nested/draft.tmp",
    "cache",
    "cache/blob.bin",
    "cache/sub",
    "cache/sub/deep.txt",
    "docs/cache",
    "docs/cache/page.html",
    "logs/2024/01/app.log.gz",
    "logs/2024/old.gz",
    "logs/top.gz",
];

const EXCLUDE_CONFIG: &str = r#"["*.tmp", "cache", "logs/**/*.gz"]"#;

/// Builds the test tree under `<env>/tree` plus `<env>/outside`; returns the root.
fn build_tree(env: &Env) -> PathBuf {
    let root = env.path("tree");
    let outside = env.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(
        outside.join("secret.txt"),
        format!("{OUTSIDE_MARKER}: must never be in the artifact\n"),
    )
    .unwrap();
    std::fs::create_dir(outside.join("dir")).unwrap();
    std::fs::write(outside.join("dir/inner.txt"), OUTSIDE_MARKER).unwrap();

    let write = |rel: &str, content: &[u8], mode: u32| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        chmod(&p, mode);
    };
    write(
        "docs/readme.txt",
        format!("{INSIDE_MARKER}\nread me\n").as_bytes(),
        0o640,
    );
    write("docs/nested/deeper/leaf.txt", b"a leaf\n", 0o600);
    write("bin/run.sh", b"#!/bin/sh\necho run\n", 0o755);
    write(
        "big.bin",
        &noise(5 * 1024 * 1024, 0x9e37_79b9_7f4a_7c15),
        0o644,
    );
    write(NON_ASCII, "ünïcödé content\n".as_bytes(), 0o644);
    write(
        &format!("{LONG_DIR}/{LONG_DIR}/{LONG_FILE}"),
        b"deep and long\n",
        0o644,
    );
    write("empty-file", b"", 0o444);
    // Near misses of the excludes: these must be kept.
    write("cache.txt", b"not the cache folder\n", 0o644);
    write("notes.tmp.txt", b"not a .tmp file\n", 0o644);
    write("logs/keep.txt", b"kept log\n", 0o644);
    write("logs/2024/app.log", b"kept, not .gz\n", 0o644);
    write("other/archive.gz", b"kept: not under logs/\n", 0o644);
    // Excluded.
    let excluded = format!("{EXCLUDED_MARKER}\n");
    for rel in EXCLUDED {
        if rel.contains('.') {
            write(rel, excluded.as_bytes(), 0o644);
        }
    }
    std::fs::create_dir_all(root.join("empty")).unwrap();
    chmod(&root.join("empty"), 0o700);
    chmod(&root.join("docs/nested"), 0o750);
    // Links: relative inside, to a folder inside, outside (absolute and relative),
    // dangling, and one whose target is longer than 100 bytes.
    let link = |target: &str, rel: &str| {
        std::os::unix::fs::symlink(target, root.join(rel)).unwrap();
    };
    link("../docs/readme.txt", "bin/readme-link");
    link("docs/nested", "nested-link");
    link(outside.join("secret.txt").to_str().unwrap(), "outside-abs");
    link("../outside/secret.txt", "outside-rel");
    link("../outside/dir", "outside-dir");
    link("does/not/exist", "dangling");
    link(
        &format!("{LONG_DIR}/{LONG_DIR}/{LONG_FILE}"),
        "long-target-link",
    );
    // A FIFO is neither file, folder nor link: skipped, and reported.
    let fifo = std::ffi::CString::new(root.join("queue.fifo").to_str().unwrap()).unwrap();
    // SAFETY: valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);

    // Distinct whole-second mtimes for everything, set after the tree is complete
    // (creating entries changes their folder's mtime).
    let mut t = 1_500_000_000i64;
    for rel in snapshot(&root).keys() {
        t += 86_399;
        common::set_mtime(&root.join(rel), t);
    }
    root
}

/// The tree as it must come back: everything but the excludes (and the FIFO).
fn expected_tree(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut tree = snapshot(root);
    for rel in EXCLUDED {
        assert!(
            tree.remove(Path::new(rel)).is_some(),
            "test tree lacks {rel}"
        );
    }
    tree
}

fn files_job(env: &Env, compression: &str) {
    env.write_config(&format!(
        "{}compression = \"{compression}\"\n",
        env.single_job_config(
            &format!(r#"{{ kind = "files", path = "tree", exclude = {EXCLUDE_CONFIG} }}"#),
            r#"{ kind = "none" }"#,
        )
    ));
}

fn cat(env: &Env) -> Vec<u8> {
    let out = env.cairn().args(["cat", "app"]).output().unwrap();
    assert!(out.status.success(), "cat failed: {}", stderr(&out));
    out.stdout
}

/// `tar -tv` of a tar stream: (type char, path, link target).
fn tar_listing(tar_bytes: &[u8]) -> Vec<(char, String, Option<String>)> {
    common::require_tool("tar");
    let mut child = Command::new("tar")
        .args(["-t", "-v", "--quoting-style=literal", "-f", "-"])
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let bytes = tar_bytes.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&bytes));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(out.status.success(), "tar -t failed: {}", stderr(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            // drwxr-x--- root/root 0 2017-07-14 04:26 docs/nested/
            let kind = line.chars().next().unwrap();
            let fields: Vec<&str> = line.split_whitespace().collect();
            // The name starts after the time field (the 5th whitespace field).
            let time = fields[4];
            let name_start = line.find(&format!(" {time} ")).unwrap() + time.len() + 2;
            let name = &line[name_start..];
            let (name, target) = match name.split_once(" -> ") {
                Some((n, t)) => (n.to_string(), Some(t.to_string())),
                None => (name.to_string(), None),
            };
            (kind, name.trim_end_matches('/').to_string(), target)
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn the_archive_holds_links_as_links_and_leaves_out_excludes() {
    let env = Env::new();
    let root = build_tree(&env);
    files_job(&env, "zstd");
    let entry = env.backup("app");
    assert!(entry["key"].as_str().unwrap().ends_with(".tar.zst"));

    let plain = cat(&env);
    assert!(
        contains(&plain, INSIDE_MARKER),
        "the plaintext should hold the tree's files"
    );
    assert!(
        !contains(&plain, OUTSIDE_MARKER),
        "content outside the tree leaked into the artifact through a symlink"
    );
    assert!(
        !contains(&plain, EXCLUDED_MARKER),
        "excluded content is in the artifact"
    );

    let listing = tar_listing(&plain);
    let find = |name: &str| listing.iter().find(|(_, n, _)| n == name);
    let outside = root.parent().unwrap().join("outside");
    for (name, target) in [
        (
            "outside-abs",
            outside.join("secret.txt").display().to_string(),
        ),
        ("outside-rel", "../outside/secret.txt".to_string()),
        ("outside-dir", "../outside/dir".to_string()),
        ("nested-link", "docs/nested".to_string()),
        ("bin/readme-link", "../docs/readme.txt".to_string()),
        ("dangling", "does/not/exist".to_string()),
        (
            "long-target-link",
            format!("{LONG_DIR}/{LONG_DIR}/{LONG_FILE}"),
        ),
    ] {
        let (kind, _, got) = find(name).unwrap_or_else(|| panic!("{name} not in {listing:?}"));
        assert_eq!(*kind, 'l', "{name} is not stored as a symlink");
        assert_eq!(got.as_deref(), Some(target.as_str()), "{name}'s target");
    }
    // Nothing was stored below a symlinked folder.
    assert!(
        !listing
            .iter()
            .any(|(_, n, _)| n.starts_with("outside-dir/") || n.starts_with("nested-link/")),
        "a symlinked folder was followed: {listing:?}"
    );
    for rel in EXCLUDED {
        assert!(find(rel).is_none(), "excluded {rel} is in the archive");
    }
    assert!(find("queue.fifo").is_none());
    let long = format!("{LONG_DIR}/{LONG_DIR}/{LONG_FILE}");
    assert!(long.len() > 100);
    for name in [
        "cache.txt",
        "notes.tmp.txt",
        "logs/keep.txt",
        "logs/2024/app.log",
        "other/archive.gz",
        "empty",
        NON_ASCII,
        long.as_str(),
        "big.bin",
    ] {
        assert!(find(name).is_some(), "{name} missing from {listing:?}");
    }
    assert_eq!(find("empty").unwrap().0, 'd');
    // Every stored path is relative and inside the tree.
    for (_, name, _) in &listing {
        assert!(
            !name.starts_with('/') && !name.split('/').any(|c| c == ".."),
            "{name}"
        );
    }
}

#[test]
fn restore_reproduces_the_tree_exactly() {
    let env = Env::new();
    let root = build_tree(&env);
    files_job(&env, "gzip");
    env.backup("app");
    let expected = expected_tree(&root);

    let target = env.path("restored");
    let out = env
        .cairn()
        .args(["restore", "app", "--to"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(out.status.success(), "restore failed: {}", stderr(&out));
    assert_same_tree(&snapshot(&target), &expected);
    // The restored links work the way the originals did.
    assert_eq!(
        std::fs::read_to_string(target.join("bin/readme-link")).unwrap(),
        format!("{INSIDE_MARKER}\nread me\n")
    );
    assert!(target.join("nested-link/deeper/leaf.txt").is_file());
    // No temporaries are left beside the target.
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("cairn-restore") || n.contains("cairn-safety"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn restore_onto_an_existing_folder_needs_force_and_keeps_a_safety_copy() {
    let env = Env::new();
    let root = build_tree(&env);
    files_job(&env, "zstd");
    env.backup("app");
    let expected = expected_tree(&root);

    let target = env.path("live");
    std::fs::create_dir_all(target.join("old/sub")).unwrap();
    std::fs::write(target.join("old/sub/state.txt"), b"the current state\n").unwrap();
    std::fs::write(
        target.join("docs"),
        b"a file where the backup has a folder\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("old/sub", target.join("old-link")).unwrap();
    let before = snapshot(&target);

    env.cairn()
        .args(["restore", "app", "--to"])
        .arg(&target)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--force"));
    assert_same_tree(&snapshot(&target), &before);

    let out = env
        .cairn()
        .args(["restore", "app", "--force", "--json", "--to"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restore --force failed: {}",
        stderr(&out)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let safety = PathBuf::from(report["safety_copy"].as_str().expect("a safety copy"));
    assert_ne!(safety, target);
    assert_eq!(safety.parent(), target.parent());
    assert_same_tree(&snapshot(&safety), &before);
    assert_same_tree(&snapshot(&target), &expected);

    // A second forced restore keeps a second, distinct safety copy.
    let out = env
        .cairn()
        .args(["restore", "app", "--force", "--json", "--to"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let second = PathBuf::from(report["safety_copy"].as_str().unwrap());
    assert_ne!(second, safety);
    assert_same_tree(&snapshot(&safety), &before);
    assert_same_tree(&snapshot(&second), &expected);
    assert_same_tree(&snapshot(&target), &expected);
}

#[test]
fn manifest_counts_files_folders_and_symlinks() {
    let env = Env::new();
    let root = build_tree(&env);
    files_job(&env, "none");
    let entry = env.backup("app");
    let expected = expected_tree(&root);

    let data = env.data_path(&entry);
    assert!(entry["key"].as_str().unwrap().ends_with(".tar"));
    let manifest_path = data.parent().unwrap().join(format!(
        "app-{}.manifest.json",
        entry["id"].as_str().unwrap()
    ));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(manifest_path).unwrap()).unwrap();
    assert_eq!(manifest["source"]["kind"], "files");
    let facts = &manifest["source"]["facts"];
    let count = |f: fn(&Node) -> bool| expected.values().filter(|n| f(n)).count() as u64;
    let files = count(|n| matches!(n, Node::File { .. }));
    let folders = count(|n| matches!(n, Node::Dir { .. }));
    let links = count(|n| matches!(n, Node::Link { .. }));
    // Guard against a tree builder that silently built less than intended.
    assert_eq!((files, folders, links), (12, 12, 7), "{expected:#?}");
    assert_eq!(facts["files"].as_u64(), Some(files), "{facts}");
    assert_eq!(facts["folders"].as_u64(), Some(folders), "{facts}");
    assert_eq!(facts["symlinks"].as_u64(), Some(links), "{facts}");
    let bytes: u64 = expected
        .values()
        .map(|n| match n {
            Node::File { len, .. } => *len,
            _ => 0,
        })
        .sum();
    assert_eq!(facts["file_bytes"].as_u64(), Some(bytes), "{facts}");
    assert_eq!(
        facts["skipped"],
        serde_json::json!(["queue.fifo"]),
        "{facts}"
    );
    assert_eq!(
        facts["exclude"],
        serde_json::from_str::<serde_json::Value>(EXCLUDE_CONFIG).unwrap()
    );
    // Uncompressed and unencrypted, the stored object is the plaintext tar stream.
    assert_eq!(manifest["plaintext"]["sha256"], manifest["data"]["sha256"]);
    let stored = std::fs::read(&data).unwrap();
    assert_eq!(
        stored.len() as u64,
        manifest["plaintext"]["size"].as_u64().unwrap()
    );
    assert!(stored.len() > 5 * 1024 * 1024);
}
