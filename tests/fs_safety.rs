//! Nothing cairn deletes, reads or writes is outside the destination folder,
//! and it removes only what its own naming produces: symlinks planted in an
//! `fs` destination, manifests naming other files, a user's files in the job
//! folder, a running backup's upload, sources overlapping destinations.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::Env;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn run(env: &Env, args: &[&str]) -> Output {
    env.cairn().args(args).output().expect("run cairn")
}

/// A folder outside the destination holding `names`, each with its name as content.
fn outside(env: &Env, folder: &str, names: &[&str]) -> Vec<PathBuf> {
    let dir = env.path(folder);
    std::fs::create_dir_all(&dir).unwrap();
    names
        .iter()
        .map(|name| {
            let path = dir.join(name);
            std::fs::write(&path, name.as_bytes()).unwrap();
            path
        })
        .collect()
}

fn assert_intact(files: &[PathBuf]) {
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            std::fs::read_to_string(file).ok().as_deref(),
            Some(name.as_str()),
            "{} outside the destination was touched",
            file.display()
        );
    }
}

/// Names cairn's naming would give job `app`, so that only the link stands
/// between them and deletion.
const ORPHAN: &str = "app-20200101T000000Z-dead.sqlite.zst.age";
const PARTIAL: &str = "app-20200101T000000Z-dead.sqlite.zst.age.cairn-1-00000000-otherhost";

#[test]
fn gc_never_follows_linked_folders_out_of_the_destination() {
    let env = Env::new();
    env.sqlite_age_setup(10);
    env.backup("app");
    let partials = outside(&env, "elsewhere-partial", &[PARTIAL, "precious.txt"]);
    let linked = outside(&env, "elsewhere-linked", &[ORPHAN, "precious.txt"]);
    let other = outside(&env, "elsewhere-other", &[ORPHAN, "precious.txt"]);
    let job_dir = env.path("backups/app");
    std::fs::remove_dir_all(job_dir.join(".partial")).unwrap();
    std::os::unix::fs::symlink(env.path("elsewhere-partial"), job_dir.join(".partial")).unwrap();
    std::os::unix::fs::symlink(env.path("elsewhere-linked"), job_dir.join("link")).unwrap();
    std::os::unix::fs::symlink(env.path("elsewhere-other"), env.path("backups/other")).unwrap();
    // A link named like an orphan data object, pointing at a file outside.
    std::os::unix::fs::symlink(&linked[0], job_dir.join(ORPHAN)).unwrap();

    let out = run(&env, &["gc", "--grace", "0"]);
    assert_intact(&partials);
    assert_intact(&linked);
    assert_intact(&other);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("symbolic link"),
        "the linked .partial is named: {}",
        stdout(&out)
    );
    assert!(
        std::fs::symlink_metadata(job_dir.join(ORPHAN)).is_ok(),
        "a link is not an object cairn wrote"
    );
    // The real artifact is still fine.
    assert!(run(&env, &["verify", "app"]).status.success());
}

#[test]
fn prune_of_a_planted_manifest_never_deletes_what_it_names() {
    let env = Env::new();
    env.sqlite_age_setup(10);
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    env.write_config(&format!("{config}retention = {{ keep_last = 1 }}\n"));
    let entry = env.backup("app");
    let important = outside(&env, "elsewhere", &["important.txt"]);
    let job_dir = env.path("backups/app");
    std::os::unix::fs::symlink(env.path("elsewhere"), job_dir.join("link")).unwrap();
    std::fs::write(job_dir.join("notes.txt"), "notes.txt").unwrap();
    let real: serde_json::Value = serde_json::from_slice(
        &std::fs::read(job_dir.join(format!(
            "app-{}.manifest.json",
            entry["id"].as_str().unwrap()
        )))
        .unwrap(),
    )
    .unwrap();
    // Two old, broken-looking artifacts: one names a file through the link, one a
    // user's file inside the job folder. Both are what retention would delete.
    for (id, data_key) in [
        ("20200101T000000Z-0001", "app/link/important.txt"),
        ("20200101T000000Z-0002", "app/notes.txt"),
    ] {
        let mut planted = real.clone();
        planted["id"] = id.into();
        planted["created_at"] = "2020-01-01T00:00:00Z".into();
        planted["finished_at"] = "2020-01-01T00:00:01Z".into();
        planted["data"]["key"] = data_key.into();
        std::fs::write(
            job_dir.join(format!("app-{id}.manifest.json")),
            serde_json::to_vec_pretty(&planted).unwrap(),
        )
        .unwrap();
    }

    let out = run(&env, &["prune", "--json"]);
    assert_intact(&important);
    assert_eq!(
        std::fs::read_to_string(job_dir.join("notes.txt")).unwrap(),
        "notes.txt"
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &report[0]["destinations"][0];
    assert!(d["delete"].as_array().unwrap().is_empty(), "{d}");
    let untouched = d["untouched"].to_string();
    assert!(
        untouched.contains("app/link/important.txt") && untouched.contains("app/notes.txt"),
        "both planted manifests are reported: {untouched}"
    );
    // The planted manifests stay for a person to look at, and the real artifact too.
    assert!(
        job_dir
            .join("app-20200101T000000Z-0001.manifest.json")
            .exists()
    );
    assert!(env.data_path(&entry).exists());
}

#[test]
fn gc_removes_only_names_cairn_gives_and_leaves_a_users_files() {
    let env = Env::new();
    env.sqlite_age_setup(10);
    let entry = env.backup("app");
    let job_dir = env.path("backups/app");
    let users = [
        job_dir.join("notes.txt"),
        job_dir.join("app-notes.txt"),
        job_dir.join("app-20200101T000000Z-dead.manifest.json.bak"),
        job_dir.join(".partial/notes.txt"),
    ];
    for file in &users {
        std::fs::write(file, "mine").unwrap();
    }
    let orphan = job_dir.join(ORPHAN);
    let partial = job_dir.join(".partial").join(PARTIAL);
    std::fs::write(&orphan, "half").unwrap();
    std::fs::write(&partial, "half").unwrap();

    let out = run(&env, &["gc", "--grace", "0", "--json"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    for file in &users {
        assert_eq!(
            std::fs::read_to_string(file).ok().as_deref(),
            Some("mine"),
            "gc removed {}",
            file.display()
        );
    }
    assert!(
        !orphan.exists() && !partial.exists(),
        "cairn's own leftovers go"
    );
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reports[0]["removed"].as_array().unwrap().len(), 2);
    assert!(env.data_path(&entry).exists());
}

/// A backup of a command source that waits for `go` to exist before it ends.
struct SlowBackup {
    child: Child,
    go: PathBuf,
}

impl SlowBackup {
    fn start(env: &Env) -> SlowBackup {
        let go = env.path("go");
        env.write_config(&env.single_job_config(
            &format!(
                r#"{{ kind = "command", backup = ["sh", "-c", "echo data; while [ ! -e '{}' ]; do sleep 0.05; done"] }}"#,
                go.display()
            ),
            r#"{ kind = "none" }"#,
        ));
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("cairn"))
            .current_dir(env.dir.path())
            .env_remove("CAIRN_CONFIG")
            .env_remove("CAIRN_LOG")
            .arg("--config")
            .arg(env.config_path())
            .args(["backup", "app"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        SlowBackup { child, go }
    }

    fn finish(mut self) -> std::process::ExitStatus {
        std::fs::write(&self.go, "").unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for SlowBackup {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.go, "");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn gc_skips_a_job_whose_backup_is_running() {
    let env = Env::new();
    let backup = SlowBackup::start(&env);
    let partial_dir = env.path("backups/app/.partial");
    let deadline = Instant::now() + Duration::from_secs(30);
    while files_in(&partial_dir).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the backup never started its upload"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = run(&env, &["gc", "--grace", "0"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("skipped") && stdout(&out).contains("already running"),
        "{}",
        stdout(&out)
    );
    assert_eq!(files_in(&partial_dir).len(), 1, "the running upload stays");
    let status = backup.finish();
    assert!(status.success(), "the backup completes after gc");
    assert_eq!(env.list().len(), 1);
}

#[test]
fn backup_never_writes_through_a_linked_partial_folder() {
    let env = Env::new();
    env.sqlite_age_setup(10);
    env.backup("app");
    let elsewhere = env.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let partial = env.path("backups/app/.partial");
    std::fs::remove_dir_all(&partial).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &partial).unwrap();

    let out = run(&env, &["backup", "app"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("symbolic link"), "{all}");
    assert!(
        files_in(&elsewhere).is_empty(),
        "nothing was written through the link"
    );
    assert_eq!(env.list().len(), 1, "no new artifact");
}

#[test]
fn a_linked_job_folder_is_neither_listed_nor_written() {
    let env = Env::new();
    env.sqlite_age_setup(10);
    let elsewhere = env.path("elsewhere");
    std::fs::create_dir_all(env.path("backups")).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, env.path("backups/app")).unwrap();
    let out = run(&env, &["backup", "app"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(files_in(&elsewhere).is_empty());
}

fn files_job_config(env: &Env, source: &str, destination: &str) {
    env.write_config(&format!(
        "[destinations.local]\nkind = \"fs\"\npath = \"{destination}\"\n\n[jobs.site]\nsource = {{ kind = \"files\", path = \"{source}\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\n"
    ));
}

#[test]
fn check_and_backup_refuse_overlapping_source_and_destination() {
    for (source, destination, needle) in [
        ("site", "site/backups", "destination is inside the source"),
        (
            "store/site",
            "store",
            "source folder is inside the destination",
        ),
        ("site", "site", "destination is inside the source"),
        // The same folder through a link is still the same folder.
        ("site", "alias/backups", "destination is inside the source"),
    ] {
        let env = Env::new();
        std::fs::create_dir_all(env.path(source)).unwrap();
        std::fs::write(env.path(source).join("index.html"), "hi").unwrap();
        std::os::unix::fs::symlink(env.path("site"), env.path("alias")).ok();
        files_job_config(&env, source, destination);
        for verb in ["check", "backup"] {
            let out = run(&env, &[verb, "site"]);
            let all = format!("{}{}", stdout(&out), stderr(&out));
            assert_eq!(
                out.status.code(),
                Some(2),
                "{verb} {source} {destination}: {all}"
            );
            assert!(all.contains("overlap") && all.contains(needle), "{all}");
        }
        let job_folder = env.path(destination).join("site");
        assert!(
            !files_in(&job_folder)
                .iter()
                .any(|f| f.to_string_lossy().ends_with(".manifest.json"))
                && !job_folder.join(".partial").exists(),
            "nothing was backed up into {destination}"
        );
    }
    // Siblings with a common name prefix do not overlap.
    let env = Env::new();
    std::fs::create_dir_all(env.path("site")).unwrap();
    files_job_config(&env, "site", "site-backups");
    let out = run(&env, &["backup", "site"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn check_leaves_nothing_in_the_destination() {
    let env = Env::new();
    env.sqlite_age_setup(10);
    std::fs::create_dir_all(env.path("backups")).unwrap();
    let out = run(&env, &["check"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        files_in(&env.path("backups")),
        Vec::<PathBuf>::new(),
        "check removes what it created"
    );
}
