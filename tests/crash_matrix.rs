//! The crash matrix: every named fault point of the engine (src/fault_point.rs)
//! is hit once with SIGKILL and once with an I/O error. This test binary is its own cairn: a case runs it again with
//! `common::FAULT_VAR` set, and that child arms the point
//! (`cairn::fault_point::arm`) and runs cairn's command line. Then the cairn
//! binary checks what a user relies on: `list` shows only
//! complete artifacts and each of them verifies, no run is left "running", the
//! restore target is the old file or the new one byte for byte, and the next
//! run finishes and, with `gc`, leaves nothing behind but listed artifacts.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::panic::catch_unwind;
use std::path::Path;
use std::process::{ExitCode, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Env, count_rows, create_sample_db, stderr};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Effect {
    Kill,
    Fail,
}

impl Effect {
    fn spec(self, point: &str) -> String {
        match self {
            Effect::Kill => format!("{point}:kill"),
            Effect::Fail => format!("{point}:fail"),
        }
    }
}

/// Runs `args` on the faulted build and checks that it stopped at `point`.
fn run_faulted(env: &Env, point: &str, effect: Effect, args: &[&str]) -> Output {
    let out = env
        .cairn_faulted(&effect.spec(point))
        .args(args)
        .output()
        .unwrap();
    let err = stderr(&out);
    let name = point.split('@').next().unwrap_or(point);
    assert!(
        err.contains(&format!("fault point {name} reached")),
        "cairn {args:?} never reached {point}: {err}"
    );
    if effect == Effect::Kill {
        assert_eq!(out.status.signal(), Some(9), "not killed: {err}");
    }
    out
}

fn ok(env: &Env, args: &[&str]) -> String {
    let out = env.cairn().args(args).output().unwrap();
    assert!(out.status.success(), "cairn {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The ids `list` shows, each of which verifies.
fn verified_ids(env: &Env) -> Vec<String> {
    let ids: Vec<String> = env
        .list()
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_string())
        .collect();
    for id in &ids {
        ok(env, &["verify", "app", id]);
    }
    ids
}

/// The state store opens and no run is left "running".
fn history_settled(env: &Env) -> Vec<serde_json::Value> {
    let runs: Vec<serde_json::Value> =
        serde_json::from_str(&ok(env, &["history", "--json"])).expect("history --json");
    assert!(
        runs.iter().all(|r| r["status"] != "running"),
        "a run is still running: {runs:#?}"
    );
    runs
}

/// After `gc`, every file in the destination belongs to a listed artifact.
fn only_listed_objects(env: &Env) {
    ok(env, &["gc", "app", "--grace", "0"]);
    let ids = verified_ids(env);
    let mut stray = Vec::new();
    walk(&env.path("backups"), &mut |path| {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if !ids.iter().any(|id| name.contains(id.as_str()))
            || path.to_string_lossy().contains(".partial/")
        {
            stray.push(path.display().to_string());
        }
    });
    assert!(
        stray.is_empty(),
        "left in the destination: {stray:?} (listed: {ids:?})"
    );
}

fn walk(dir: &Path, found: &mut dyn FnMut(&Path)) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, found);
        } else {
            found(&path);
        }
    }
}

/// A backup stopped at `point`: only `first` stays listed (or also the new
/// artifact, when the manifest was written before the stop), all verify; the
/// next backup and gc leave exactly the listed artifacts, and the newest restores.
fn backup_stopped_at(point: &str, effect: Effect, committed: bool) {
    let env = Env::new();
    env.sqlite_age_setup(3000);
    let first = env.backup("app")["id"].as_str().unwrap().to_string();
    create_sample_db(&env.path("app.db"), 50); // 50 more rows

    let out = run_faulted(&env, point, effect, &["backup", "app"]);
    if effect == Effect::Fail && !committed {
        assert!(!out.status.success(), "a failed backup exited 0");
        assert!(
            stderr(&out).contains("nothing was committed"),
            "{}",
            stderr(&out)
        );
    }
    let ids = verified_ids(&env);
    assert!(
        ids.contains(&first),
        "the earlier artifact is gone: {ids:?}"
    );
    assert_eq!(ids.len(), if committed { 2 } else { 1 }, "{ids:?}");
    history_settled(&env);

    env.backup("app");
    only_listed_objects(&env);
    ok(&env, &["restore", "app", "--to", "restored.db"]);
    assert_eq!(
        count_rows(&env.path("restored.db"), "items"),
        count_rows(&env.path("app.db"), "items")
    );
}

/// A restore over an existing file stopped at `point`: the target is the old
/// file or the new one, byte for byte; the next restore puts the new one in
/// place and leaves no temporary beside it.
fn restore_stopped_at(point: &str, effect: Effect, replaced: bool) {
    let env = Env::new();
    env.sqlite_age_setup(3000);
    env.backup("app");
    ok(&env, &["restore", "app", "--to", "new.db"]);
    let new = std::fs::read(env.path("new.db")).unwrap();
    let target = env.path("target.db");
    create_sample_db(&target, 10);
    let old = std::fs::read(&target).unwrap();
    assert_ne!(old, new);

    let out = run_faulted(
        &env,
        point,
        effect,
        &["restore", "app", "--to", "target.db", "--force"],
    );
    if effect == Effect::Fail {
        assert!(!out.status.success(), "a failed restore exited 0");
    }
    let now = std::fs::read(&target).unwrap();
    let expected = if replaced { &new } else { &old };
    assert!(
        now == *expected,
        "the target is neither the {} file ({} bytes, old {}, new {})",
        if replaced { "new" } else { "old" },
        now.len(),
        old.len(),
        new.len()
    );
    if replaced {
        // The previous content is kept whatever happened after the replace.
        let kept = beside_the_target(&env, "target.db.cairn-safety-")
            .into_iter()
            .filter(|p| {
                !p.to_string_lossy().ends_with("-wal") && !p.to_string_lossy().ends_with("-shm")
            })
            .any(|p| std::fs::read(p).unwrap() == old);
        assert!(kept, "the old target is not kept as a safety copy");
    }
    history_settled(&env);

    ok(&env, &["restore", "app", "--to", "target.db", "--force"]);
    assert!(
        std::fs::read(&target).unwrap() == new,
        "the next restore did not write the new file"
    );
    let temporaries = beside_the_target(&env, ".cairn-restore-");
    assert!(
        temporaries.is_empty(),
        "left beside the target: {temporaries:?}"
    );
}

/// The paths in the env's folder whose names contain `part`.
fn beside_the_target(env: &Env, part: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(part))
        })
        .collect()
}

/// Every file below `dir` (relative path and content), in order.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    walk(dir, &mut |path| {
        let name = path.strip_prefix(dir).unwrap().display().to_string();
        files.push((name, std::fs::read(path).unwrap()));
    });
    files.sort();
    files
}

/// The same for a folder target, which is exchanged rather than replaced.
fn restore_folder_stopped_at(point: &str, effect: Effect, replaced: bool) {
    let env = Env::new();
    let data = common::random_data_folder(&env, 300_000);
    std::fs::write(data.join("notes.txt"), "the new content\n").unwrap();
    env.write_config(&env.single_job_config(
        r#"{ kind = "files", path = "data" }"#,
        r#"{ kind = "none" }"#,
    ));
    env.backup("app");
    let new = tree(&data);
    let target = env.path("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("old.txt"), "the old content\n").unwrap();
    let old = tree(&target);

    let out = run_faulted(
        &env,
        point,
        effect,
        &["restore", "app", "--to", "target", "--force"],
    );
    if effect == Effect::Fail {
        assert!(!out.status.success(), "a failed restore exited 0");
    }
    let now = tree(&target);
    assert!(
        now == if replaced { new.clone() } else { old.clone() },
        "the target folder is not the {} one: {:?}",
        if replaced { "new" } else { "old" },
        now.iter().map(|(name, _)| name).collect::<Vec<_>>()
    );
    if replaced {
        // The previous content is kept whatever happened after the exchange.
        let kept = beside_the_target(&env, "target.cairn-safety-")
            .into_iter()
            .any(|p| tree(&p) == old);
        assert!(kept, "the old target folder is not kept as a safety copy");
    }
    history_settled(&env);

    ok(&env, &["restore", "app", "--to", "target", "--force"]);
    assert!(
        tree(&target) == new,
        "the next restore did not write the new folder"
    );
    let temporaries = beside_the_target(&env, ".cairn-restore-");
    assert!(
        temporaries.is_empty(),
        "left beside the target: {temporaries:?}"
    );
}

/// A prune stopped between deleting a manifest and its data: what is listed
/// verifies, the newest is kept, and the next prune and gc finish the job.
fn prune_stopped(effect: Effect) {
    let env = Env::new();
    env.sqlite_age_setup(500);
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    env.write_config(&format!("{config}retention = {{ keep_last = 1 }}\n"));
    let mut newest = String::new();
    for _ in 0..3 {
        newest = env.backup("app")["id"].as_str().unwrap().to_string();
    }
    let out = run_faulted(
        &env,
        "prune.after_manifest_delete",
        effect,
        &["prune", "app"],
    );
    if effect == Effect::Fail {
        assert!(!out.status.success(), "a failed prune exited 0");
    }
    let ids = verified_ids(&env);
    assert!(
        ids.contains(&newest),
        "the newest artifact was pruned: {ids:?}"
    );
    // Killed: the first manifest is gone; failed: the prune went on to the second.
    let left = if effect == Effect::Kill { 2 } else { 1 };
    assert_eq!(ids.len(), left, "{ids:?}");
    history_settled(&env);

    ok(&env, &["prune", "app"]);
    assert_eq!(verified_ids(&env), vec![newest]);
    only_listed_objects(&env);
}

/// gc stopped before its first delete of two leftovers (a data object whose
/// manifest never came, an unfinished upload): the artifact stays, the next gc
/// removes both.
fn gc_stopped(effect: Effect) {
    let env = Env::new();
    env.sqlite_age_setup(3000);
    let first = env.backup("app")["id"].as_str().unwrap().to_string();
    run_faulted(
        &env,
        "backup.before_manifest",
        Effect::Kill,
        &["backup", "app"],
    );
    run_faulted(
        &env,
        "backup.upload_write",
        Effect::Kill,
        &["backup", "app"],
    );

    let out = run_faulted(
        &env,
        "gc.before_delete",
        effect,
        &["gc", "app", "--grace", "0"],
    );
    if effect == Effect::Fail {
        assert!(!out.status.success(), "a failed gc exited 0");
    }
    assert_eq!(verified_ids(&env), vec![first.clone()]);
    history_settled(&env);
    only_listed_objects(&env);
    assert_eq!(verified_ids(&env), vec![first]);
}

/// A drill stopped before it removes its scratch copy: the next drill removes
/// the leftover, passes, and leaves the scratch folder empty.
fn drill_stopped(effect: Effect) {
    let env = Env::new();
    env.sqlite_age_setup(500);
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    env.write_config(&format!(
        "{config}drill = {{ scratch_dir = \"scratch\" }}\n"
    ));
    env.backup("app");

    let out = run_faulted(&env, "drill.before_cleanup", effect, &["drill", "app"]);
    let scratch = env.path("scratch");
    let left = || -> Vec<String> {
        std::fs::read_dir(&scratch)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    match effect {
        Effect::Kill => assert!(
            !left().is_empty(),
            "a killed drill left nothing to clean up"
        ),
        Effect::Fail => {
            assert!(
                !out.status.success(),
                "a drill that could not clean up exited 0"
            );
            assert_eq!(
                left(),
                Vec::<String>::new(),
                "the scratch copy was not removed"
            );
        }
    }
    history_settled(&env);

    let report: serde_json::Value =
        serde_json::from_str(&ok(&env, &["drill", "app", "--json"])).expect("drill --json");
    assert_eq!(report["ok"], true, "{report:#}");
    if effect == Effect::Kill {
        assert_eq!(
            report["leftovers_removed"].as_array().map(Vec::len),
            Some(1),
            "{report:#}"
        );
    }
    assert_eq!(
        left(),
        Vec::<String>::new(),
        "the next drill left its scratch copy"
    );
}

/// A backup to S3 (SeaweedFS, 5 MiB parts, a 16 MiB artifact) stopped at
/// `point`: nothing new is listed and the earlier artifact verifies; a failed
/// upload leaves no multipart upload behind (a killed one does, invisible
/// until a lifecycle rule removes it: see the README); the next backup and gc
/// leave only listed objects in the bucket, and the newest reads back whole.
fn s3_backup_stopped_at(
    point: &str,
    effect: Effect,
    killed_leaves: std::ops::RangeInclusive<usize>,
) {
    let s3 = common::objstores::s3();
    let bucket = common::objstores::unique_name("crash");
    s3.create_bucket(&bucket);
    let env = Env::new();
    let data: Vec<u8> = {
        use std::io::Read;
        let mut bytes = vec![0; 16 * 1024 * 1024];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .unwrap();
        bytes
    };
    std::fs::write(env.path("data.bin"), &data).unwrap();
    env.write_config(&format!(
        "[destinations.s3]\nkind = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{}\"\n\
         region = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n\
         transfer = {{ part_size_mib = 5 }}\n\n\
         [jobs.app]\nsource = {{ kind = \"command\", backup = [\"cat\", \"data.bin\"] }}\n\
         destinations = [\"s3\"]\nencryption = {{ kind = \"none\" }}\n",
        s3.endpoint(),
        s3.region,
        s3.access_key,
        s3.secret_key
    ));
    let first = env.backup("app")["id"].as_str().unwrap().to_string();

    let out = run_faulted(&env, point, effect, &["backup", "app"]);
    let uploads = || {
        s3.request("GET", &format!("/{bucket}"), &[("uploads", "")], b"")
            .unwrap()
            .text()
            .matches("<Upload>")
            .count()
    };
    if effect == Effect::Fail {
        assert!(!out.status.success(), "a failed backup exited 0");
        assert!(
            stderr(&out).contains("nothing was committed"),
            "{}",
            stderr(&out)
        );
        assert_eq!(uploads(), 0, "a failed upload was not aborted");
    } else {
        // A kill right after a part may come before the upload was started.
        assert!(
            killed_leaves.contains(&uploads()),
            "a killed upload stays unfinished and unlisted: {} of {killed_leaves:?}",
            uploads()
        );
    }
    assert_eq!(verified_ids(&env), [first]);
    history_settled(&env);

    env.backup("app");
    ok(&env, &["gc", "app", "--grace", "0"]);
    let ids = verified_ids(&env);
    assert_eq!(ids.len(), 2, "{ids:?}");
    let stray: Vec<String> = s3
        .list_objects(&bucket)
        .into_iter()
        .filter(|key| !ids.iter().any(|id| key.contains(id.as_str())) || key.contains(".partial/"))
        .collect();
    assert!(
        stray.is_empty(),
        "left in the bucket: {stray:?} (listed: {ids:?})"
    );
    let out = env.cairn().args(["cat", "app"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        out.stdout == data,
        "the newest artifact does not read back whole"
    );
}

/// Each case: a name and what it runs.
const CASES: &[(&str, fn())] = &[
    ("backup_killed_while_uploading", || {
        backup_stopped_at("backup.upload_write", Effect::Kill, false)
    }),
    ("backup_failing_while_uploading", || {
        backup_stopped_at("backup.upload_write", Effect::Fail, false)
    }),
    ("backup_killed_before_the_data_commit", || {
        backup_stopped_at("backup.before_data_commit", Effect::Kill, false)
    }),
    ("backup_failing_before_the_data_commit", || {
        backup_stopped_at("backup.before_data_commit", Effect::Fail, false)
    }),
    ("backup_killed_renaming_the_data", || {
        backup_stopped_at("store.fs.before_rename@1", Effect::Kill, false)
    }),
    ("backup_failing_renaming_the_data", || {
        backup_stopped_at("store.fs.before_rename@1", Effect::Fail, false)
    }),
    ("backup_killed_between_data_and_manifest", || {
        backup_stopped_at("backup.before_manifest", Effect::Kill, false)
    }),
    ("backup_failing_between_data_and_manifest", || {
        backup_stopped_at("backup.before_manifest", Effect::Fail, false)
    }),
    ("backup_killed_renaming_the_manifest", || {
        backup_stopped_at("store.fs.before_rename@2", Effect::Kill, false)
    }),
    ("backup_failing_renaming_the_manifest", || {
        backup_stopped_at("store.fs.before_rename@2", Effect::Fail, false)
    }),
    ("backup_killed_before_recording_the_run", || {
        backup_stopped_at("state.before_finish_run", Effect::Kill, true)
    }),
    ("backup_failing_to_record_the_run", || {
        backup_stopped_at("state.before_finish_run", Effect::Fail, true)
    }),
    ("backup_killed_between_s3_parts", || {
        s3_backup_stopped_at("store.remote.part_boundary@2", Effect::Kill, 0..=1)
    }),
    ("backup_failing_between_s3_parts", || {
        s3_backup_stopped_at("store.remote.part_boundary@2", Effect::Fail, 0..=0)
    }),
    ("backup_killed_before_completing_the_s3_upload", || {
        // Exactly one: also proves that the server lists unfinished uploads.
        s3_backup_stopped_at("store.remote.before_complete", Effect::Kill, 1..=1)
    }),
    ("backup_failing_before_completing_the_s3_upload", || {
        s3_backup_stopped_at("store.remote.before_complete", Effect::Fail, 0..=0)
    }),
    ("restore_killed_before_the_exchange", || {
        restore_stopped_at("restore.before_exchange", Effect::Kill, false)
    }),
    ("restore_failing_before_the_exchange", || {
        restore_stopped_at("restore.before_exchange", Effect::Fail, false)
    }),
    ("restore_killed_after_the_exchange", || {
        restore_stopped_at("restore.after_exchange", Effect::Kill, true)
    }),
    ("restore_failing_after_the_exchange", || {
        restore_stopped_at("restore.after_exchange", Effect::Fail, true)
    }),
    ("folder_restore_killed_before_the_exchange", || {
        restore_folder_stopped_at("restore.before_exchange", Effect::Kill, false)
    }),
    ("folder_restore_failing_before_the_exchange", || {
        restore_folder_stopped_at("restore.before_exchange", Effect::Fail, false)
    }),
    ("folder_restore_killed_after_the_exchange", || {
        restore_folder_stopped_at("restore.after_exchange", Effect::Kill, true)
    }),
    ("folder_restore_failing_after_the_exchange", || {
        restore_folder_stopped_at("restore.after_exchange", Effect::Fail, true)
    }),
    ("prune_killed_between_manifest_and_data", || {
        prune_stopped(Effect::Kill)
    }),
    ("prune_failing_between_manifest_and_data", || {
        prune_stopped(Effect::Fail)
    }),
    ("gc_killed_before_a_delete", || gc_stopped(Effect::Kill)),
    ("gc_failing_before_a_delete", || gc_stopped(Effect::Fail)),
    ("drill_killed_before_cleaning_up", || {
        drill_stopped(Effect::Kill)
    }),
    ("drill_failing_to_clean_up", || drill_stopped(Effect::Fail)),
];

/// Every point the engine names is in the matrix above.
fn every_fault_point_is_in_the_matrix() {
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/crash_matrix.rs"
    ))
    .unwrap();
    for point in cairn::fault_point::POINTS {
        assert!(
            source.contains(&format!("\"{point}")),
            "fault point {point} is not in the crash matrix"
        );
    }
}

/// Two roles: run as `cargo test` runs it, the matrix (each case in parallel,
/// named arguments filter them); run by a case with [`common::FAULT_VAR`] set,
/// cairn's command line with that fault point armed.
fn main() -> ExitCode {
    if let Some(spec) = std::env::var_os(common::FAULT_VAR) {
        // SAFETY: nothing else runs yet: no other thread reads the environment.
        unsafe {
            std::env::remove_var(common::FAULT_VAR);
            std::env::set_var(
                cairn::store::remote::OWNER_VAR,
                std::process::id().to_string(),
            );
        }
        if let Err(e) = cairn::fault_point::arm(&spec.to_string_lossy()) {
            eprintln!("crash matrix: {e}");
            return ExitCode::from(2);
        }
        let code = cairn::cli::main();
        cairn::store::remote::stop_ssh_masters();
        return code;
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut cases: Vec<(&str, fn())> = CASES.to_vec();
    cases.push((
        "every_fault_point_is_in_the_matrix",
        every_fault_point_is_in_the_matrix,
    ));
    cases.retain(|(name, _)| {
        filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
    });
    println!("\nrunning {} tests", cases.len());
    let queue = Mutex::new(cases.into_iter());
    let failed = Mutex::new(Vec::new());
    let passed = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let Some((name, case)) = queue.lock().unwrap().next() else {
                        return;
                    };
                    if catch_unwind(case).is_ok() {
                        println!("test {name} ... ok");
                        passed.fetch_add(1, Ordering::Relaxed);
                    } else {
                        println!("test {name} ... FAILED");
                        failed.lock().unwrap().push(name);
                    }
                }
            });
        }
    });
    let failed = failed.into_inner().unwrap();
    let passed = passed.into_inner();
    if failed.is_empty() {
        println!("\ntest result: ok. {passed} passed; 0 failed\n");
        ExitCode::SUCCESS
    } else {
        println!(
            "\nfailures: {failed:?}\ntest result: FAILED. {passed} passed; {} failed\n",
            failed.len()
        );
        ExitCode::FAILURE
    }
}
