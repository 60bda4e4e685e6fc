//! Copies you can trust: marks per copy (a damaged copy never costs the good
//! one), `--allow-bad`, manifests from storage checked before use, and
//! `repair` / `copy` writing good copies over damaged or missing ones.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::receivers::HttpReceiver;
use common::{Env, create_sample_db, flip_byte, stderr, stdout};

/// Two fs destinations `a` and `b` (./a, ./b) and an unencrypted sqlite job
/// `app` that writes to both; `extra` is appended to the job.
fn two_destinations(env: &Env, extra: &str) {
    create_sample_db(&env.path("app.db"), 40);
    env.write_config(&format!(
        "[destinations.a]\nkind = \"fs\"\npath = \"a\"\n\n[destinations.b]\nkind = \"fs\"\npath = \"b\"\n\n[jobs.app]\nsource = {{ kind = \"sqlite\", path = \"app.db\" }}\ndestinations = [\"a\", \"b\"]\nencryption = {{ kind = \"none\" }}\n{extra}"
    ));
}

fn backup(env: &Env) -> String {
    let out = env
        .cairn()
        .args(["backup", "app", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "backup: {}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = report
        .as_array()
        .map_or(&report, |a| &a[0])
        .get("id")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    id.unwrap_or_else(|| panic!("no id in {report}"))
}

fn json(env: &Env, args: &[&str]) -> (i32, serde_json::Value) {
    let out = env.cairn().args(args).arg("--json").output().unwrap();
    let value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "{args:?}: not JSON: {}\nstderr: {}",
            stdout(&out),
            stderr(&out)
        )
    });
    (out.status.code().unwrap_or(-1), value)
}

fn data_file(env: &Env, dest: &str, id: &str) -> PathBuf {
    let folder = env.path(&format!("{dest}/app"));
    std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(&format!("app-{id}.")) && !name.ends_with(".manifest.json")
        })
        .unwrap_or_else(|| panic!("no data object of {id} in {}", folder.display()))
}

fn manifest_file(env: &Env, dest: &str, id: &str) -> PathBuf {
    env.path(&format!("{dest}/app/app-{id}.manifest.json"))
}

fn restore_to(env: &Env, args: &[&str], target: &Path) -> std::process::Output {
    env.cairn()
        .arg("restore")
        .args(args)
        .arg("--to")
        .arg(target)
        .output()
        .unwrap()
}

#[test]
fn a_damaged_copy_in_one_destination_never_costs_the_good_copy_in_another() {
    let env = Env::new();
    two_destinations(&env, "");
    let older = backup(&env);
    let newest = backup(&env);
    flip_byte(&data_file(&env, "a", &newest));

    let (code, report) = json(&env, &["verify", "app"]);
    assert_eq!(code, 1, "{report}");
    let copies = report["copies"].as_array().unwrap();
    let verdict = |d: &str| copies.iter().find(|c| c["destination"] == d).unwrap();
    assert_eq!(verdict("a")["damaged"], true, "{report}");
    assert_eq!(verdict("b")["ok"], true, "{report}");

    // The plan says which copy goes and why; the other copy stays.
    let out = env.cairn().args(["prune", "--dry-run"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = stdout(&out);
    assert!(
        plan.lines()
            .any(|l| l.contains("delete") && l.contains(&newest) && l.contains("marked bad")),
        "{plan}"
    );
    let (code, pruned) = json(&env, &["prune"]);
    assert_eq!(code, 0, "{pruned}");
    let in_dest = |d: &str| {
        pruned[0]["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["destination"] == d)
            .unwrap()
            .clone()
    };
    let deleted: Vec<String> = in_dest("a")["delete"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(deleted, vec![newest.clone()], "{pruned}");
    assert!(
        in_dest("b")["delete"].as_array().unwrap().is_empty(),
        "{pruned}"
    );
    assert!(!manifest_file(&env, "a", &newest).exists());
    assert!(manifest_file(&env, "b", &newest).exists());
    assert!(data_file(&env, "b", &newest).exists());
    assert!(manifest_file(&env, "a", &older).exists());

    // The intact copy is the newest good one, and restores without any flag.
    let (_, status) = json(&env, &["status", "app"]);
    let job = &status["jobs"][0];
    assert_eq!(job["newest_good"]["id"], newest.as_str(), "{status}");
    let dest_status = |d: &str| {
        job["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["destination"] == d)
            .unwrap()
            .clone()
    };
    assert_eq!(dest_status("b")["artifacts"], 2, "{status}");
    assert_eq!(dest_status("a")["artifacts"], 1, "{status}");
    let listed = env.list();
    assert!(
        listed
            .iter()
            .any(|e| e["id"] == newest.as_str() && e["destination"] == "b"),
        "{listed:?}"
    );
    let target = env.path("out.db");
    let out = restore_to(&env, &["app"], &target);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(common::count_rows(&target, "items"), 40);
    let out = env
        .cairn()
        .args(["drill", "app", "--json"])
        .output()
        .unwrap();
    // A drill (no drill settings needed) also reads the good copy.
    assert!(out.status.success(), "{}", stderr(&out));
    let drilled: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(drilled["id"], newest.as_str());
    assert_eq!(drilled["destination"], "b");
}

#[test]
fn a_copy_marked_bad_is_read_with_allow_bad_and_force_only_replaces_the_target() {
    let env = Env::new();
    create_sample_db(&env.path("app.db"), 12);
    env.write_config(&env.single_job_config(
        r#"{ kind = "sqlite", path = "app.db" }"#,
        r#"{ kind = "none" }"#,
    ));
    let entry = env.backup("app");
    let id = entry["id"].as_str().unwrap().to_string();
    let data = env.data_path(&entry);
    flip_byte(&data);
    let (code, _) = json(&env, &["verify", "app"]);
    assert_eq!(code, 1);
    // The damage was transient (flipped back); the mark stays until verified.
    flip_byte(&data);

    let target = env.path("live.db");
    create_sample_db(&target, 3);
    let out = restore_to(&env, &["app", &id, "--force"], &target);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("marked bad") && stderr(&out).contains("--allow-bad"),
        "{}",
        stderr(&out)
    );
    assert_eq!(common::count_rows(&target, "items"), 3, "target untouched");
    let out = env.cairn().args(["cat", "app", &id]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--allow-bad"), "{}", stderr(&out));
    let out = env
        .cairn()
        .args(["cat", "app", &id, "--allow-bad"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // --allow-bad alone does not replace an existing target …
    let out = restore_to(&env, &["app", &id, "--allow-bad"], &target);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    // … both together do.
    let out = restore_to(&env, &["app", &id, "--allow-bad", "--force"], &target);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(common::count_rows(&target, "items"), 12);
}

/// A sqlite job `app` with one fs destination `local` (./backups), one backup.
fn one_destination(env: &Env) -> serde_json::Value {
    create_sample_db(&env.path("app.db"), 5);
    env.write_config(&env.single_job_config(
        r#"{ kind = "sqlite", path = "app.db" }"#,
        r#"{ kind = "none" }"#,
    ));
    env.backup("app")
}

/// Writes a copy of `entry`'s manifest under id `id`, changed by `edit`.
fn plant_manifest(
    env: &Env,
    entry: &serde_json::Value,
    id: &str,
    edit: impl Fn(&mut serde_json::Value),
) {
    let real = env.path(&format!(
        "backups/app/app-{}.manifest.json",
        entry["id"].as_str().unwrap()
    ));
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(real).unwrap()).unwrap();
    manifest["id"] = serde_json::json!(id);
    edit(&mut manifest);
    std::fs::write(
        env.path(&format!("backups/app/app-{id}.manifest.json")),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
}

#[test]
fn a_giant_manifest_is_reported_as_too_large_without_reading_it() {
    let env = Env::new();
    let entry = one_destination(&env);
    let giant =
        std::fs::File::create(env.path("backups/app/app-20260101T000000Z-0001.manifest.json"))
            .unwrap();
    giant.set_len(40 * 1024 * 1024).unwrap();
    let out = env.cairn().args(["list"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("manifest too large"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains(entry["id"].as_str().unwrap()));
}

#[test]
fn a_manifest_whose_id_disagrees_with_its_name_is_never_used() {
    let env = Env::new();
    let entry = one_destination(&env);
    let victim = env.path("victim.manifest.json");
    std::fs::write(&victim, "keep me").unwrap();
    // Named like an artifact, but claims another id.
    let planted = env.path("backups/app/app-20260101T000000Z-0002.manifest.json");
    let real = env.path(&format!(
        "backups/app/app-{}.manifest.json",
        entry["id"].as_str().unwrap()
    ));
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(real).unwrap()).unwrap();
    manifest["id"] = serde_json::json!("../../victim");
    manifest["created_at"] = serde_json::json!("2020-01-01T00:00:00Z");
    std::fs::write(&planted, serde_json::to_vec(&manifest).unwrap()).unwrap();

    let out = env.cairn().args(["list"]).output().unwrap();
    assert!(
        stderr(&out).contains("does not match its name"),
        "{}",
        stderr(&out)
    );
    let (code, pruned) = json(&env, &["prune"]);
    assert_eq!(code, 0, "{pruned}");
    let untouched = pruned[0]["destinations"][0]["untouched"].to_string();
    assert!(untouched.contains("does not match its name"), "{pruned}");
    assert!(planted.exists() && victim.exists());
    let out = env
        .cairn()
        .args(["verify", "app", "20260101T000000Z-0002"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("its manifest is unreadable")
            && stderr(&out).contains("does not match its name"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn verify_of_an_unreadable_manifest_says_so() {
    let env = Env::new();
    one_destination(&env);
    std::fs::write(
        env.path("backups/app/app-20260101T000000Z-0003.manifest.json"),
        "{ not json",
    )
    .unwrap();
    let out = env
        .cairn()
        .args(["verify", "app", "20260101T000000Z-0003"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("its manifest is unreadable"), "{err}");
    assert!(!err.contains("has no artifact with id"), "{err}");
}

#[test]
fn byte_totals_of_hostile_sizes_do_not_wrap() {
    let env = Env::new();
    let entry = one_destination(&env);
    // The data keys cairn's naming gives these ids (prune deletes no other name).
    let key = entry["key"].as_str().unwrap();
    let extensions = &key[key.find('.').unwrap()..];
    plant_manifest(&env, &entry, "20200101T000000Z-00aa", |m| {
        m["data"]["size"] = serde_json::json!(u64::MAX);
        m["data"]["key"] = serde_json::json!(format!("app/app-20200101T000000Z-00aa{extensions}"));
        m["created_at"] = serde_json::json!("2020-01-01T00:00:00Z");
    });
    plant_manifest(&env, &entry, "20200101T000000Z-00bb", |m| {
        m["data"]["size"] = serde_json::json!(2);
        m["data"]["key"] = serde_json::json!(format!("app/app-20200101T000000Z-00bb{extensions}"));
        m["created_at"] = serde_json::json!("2020-01-01T00:00:01Z");
    });
    // u64::MAX + 2 would wrap to 1 byte.
    let out = env.cairn().args(["prune", "--dry-run"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("would delete 2 (16777216.0 TiB)"),
        "{}",
        stdout(&out)
    );
    let out = env.cairn().args(["prune"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, history) = json(&env, &["history", "app"]);
    let prune = history
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "prune")
        .unwrap();
    assert_eq!(prune["bytes"], i64::MAX, "{prune}");
}

#[test]
fn repair_writes_damaged_and_missing_copies_from_the_good_ones() {
    let env = Env::new();
    let hook = HttpReceiver::start();
    two_destinations(
        &env,
        &format!(
            "notify = [{{ channel = \"ops\", events = [\"repair_succeeded\", \"repair_failed\"] }}]\n\n[notify.ops]\nkind = \"webhook\"\nurl = \"{}\"\n",
            hook.url("/hook")
        ),
    );
    let older = backup(&env);
    let newest = backup(&env);
    flip_byte(&data_file(&env, "a", &newest));
    let (code, _) = json(&env, &["verify", "app"]);
    assert_eq!(code, 1);
    // The older artifact is lost in b.
    std::fs::remove_file(data_file(&env, "b", &older)).unwrap();
    std::fs::remove_file(manifest_file(&env, "b", &older)).unwrap();
    let damaged_before = std::fs::read(data_file(&env, "a", &newest)).unwrap();

    let (code, plan) = json(&env, &["repair", "--dry-run"]);
    assert_eq!(code, 0, "{plan}");
    let actions = plan[0]["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 2, "{plan}");
    assert!(actions.iter().all(|a| a["status"] == "planned"));
    assert_eq!(
        std::fs::read(data_file(&env, "a", &newest)).unwrap(),
        damaged_before
    );
    assert!(!manifest_file(&env, "b", &older).exists());

    let (code, report) = json(&env, &["repair"]);
    assert_eq!(code, 0, "{report}");
    let actions = report[0]["actions"].as_array().unwrap();
    let action = |id: &str| actions.iter().find(|a| a["id"] == id).unwrap();
    assert_eq!(action(&newest)["destination"], "a");
    assert_eq!(action(&newest)["from"], "b");
    assert_eq!(action(&newest)["status"], "repaired");
    assert_eq!(action(&older)["destination"], "b");
    assert_eq!(action(&older)["status"], "repaired");
    for id in [&older, &newest] {
        assert_eq!(
            std::fs::read(data_file(&env, "a", id)).unwrap(),
            std::fs::read(data_file(&env, "b", id)).unwrap(),
            "copies of {id} are byte-identical"
        );
        assert_eq!(
            std::fs::read(manifest_file(&env, "a", id)).unwrap(),
            std::fs::read(manifest_file(&env, "b", id)).unwrap()
        );
    }
    // The repaired copy is trusted again: listed, verified, nothing to prune.
    assert_eq!(env.list().len(), 4);
    let (code, verified) = json(&env, &["verify", "app", &newest]);
    assert_eq!(code, 0, "{verified}");
    let (code, again) = json(&env, &["repair"]);
    assert_eq!(code, 0);
    assert!(
        again[0]["actions"].as_array().unwrap().is_empty(),
        "{again}"
    );
    let (_, history) = json(&env, &["history", "app"]);
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "repair" && r["status"] == "success"),
        "{history}"
    );
    let events = hook.wait_for(1, Duration::from_secs(10));
    assert!(
        events
            .iter()
            .any(|r| r.json()["kind"] == "repair_succeeded"),
        "{:?}",
        events.iter().map(|r| r.text()).collect::<Vec<_>>()
    );
}

#[test]
fn repair_repairs_a_truncated_copy_without_a_verification_first() {
    let env = Env::new();
    two_destinations(&env, "");
    let id = backup(&env);
    let path = data_file(&env, "b", &id);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let out = env.cairn().args(["repair", "app"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("repaired 1 copy"), "{}", stdout(&out));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn repair_without_any_good_copy_fails_clearly() {
    let env = Env::new();
    let hook = HttpReceiver::start();
    two_destinations(
        &env,
        &format!(
            "notify = [\"ops\"]\n\n[notify.ops]\nkind = \"webhook\"\nurl = \"{}\"\n",
            hook.url("/hook")
        ),
    );
    let id = backup(&env);
    flip_byte(&data_file(&env, "a", &id));
    flip_byte(&data_file(&env, "b", &id));
    let (code, _) = json(&env, &["verify", "app", &id]);
    assert_eq!(code, 1);
    let before_a = std::fs::read(data_file(&env, "a", &id)).unwrap();
    let out = env.cairn().args(["repair", "app"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("CANNOT repair") && text.contains("no destination holds a good copy"),
        "{text}"
    );
    assert_eq!(std::fs::read(data_file(&env, "a", &id)).unwrap(), before_a);
    let events = hook.wait_for(1, Duration::from_secs(10));
    assert!(
        events.iter().any(|r| r.json()["kind"] == "repair_failed"),
        "{:?}",
        events.iter().map(|r| r.text()).collect::<Vec<_>>()
    );
}

#[test]
fn copy_fills_a_destination_added_later_and_restores_from_it() {
    let env = Env::new();
    create_sample_db(&env.path("app.db"), 25);
    let config = |dests: &str| {
        format!(
            "[destinations.a]\nkind = \"fs\"\npath = \"a\"\n\n[destinations.c]\nkind = \"fs\"\npath = \"c\"\n\n[jobs.app]\nsource = {{ kind = \"sqlite\", path = \"app.db\" }}\ndestinations = [{dests}]\nencryption = {{ kind = \"none\" }}\n"
        )
    };
    env.write_config(&config("\"a\""));
    let older = backup(&env);
    let newest = backup(&env);
    // Not yet one of the job's destinations: refused, nothing written.
    let out = env
        .cairn()
        .args(["copy", "app", "--to", "c"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!env.path("c/app").exists());

    env.write_config(&config("\"a\", \"c\""));
    let out = env
        .cairn()
        .args(["copy", "app", "--to", "c"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(manifest_file(&env, "c", &newest).exists());
    assert!(!manifest_file(&env, "c", &older).exists());
    let (code, dry) = json(&env, &["copy", "app", "--all", "--to", "c", "--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!(dry[0]["actions"].as_array().unwrap().len(), 1, "{dry}");
    assert!(!manifest_file(&env, "c", &older).exists());
    let (code, copied) = json(&env, &["copy", "app", "--all", "--to", "c"]);
    assert_eq!(code, 0, "{copied}");
    assert_eq!(
        std::fs::read(data_file(&env, "c", &older)).unwrap(),
        std::fs::read(data_file(&env, "a", &older)).unwrap()
    );

    // The new destination alone restores the job.
    std::fs::remove_dir_all(env.path("a")).unwrap();
    let target = env.path("restored.db");
    let out = restore_to(&env, &["app", &older, "--from", "c"], &target);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(common::count_rows(&target, "items"), 25);
    let (_, history) = json(&env, &["history", "app"]);
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "copy"),
        "{history}"
    );
}

#[test]
fn repair_leaves_alone_what_a_destinations_retention_removed() {
    let env = Env::new();
    two_destinations(&env, "[jobs.app.destination_retention.b]\nkeep_last = 1\n");
    let older = backup(&env);
    let newest = backup(&env);
    let out = env.cairn().args(["prune"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!manifest_file(&env, "b", &older).exists());
    let (code, report) = json(&env, &["repair", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(
        report[0]["actions"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert!(manifest_file(&env, "b", &newest).exists());
}

#[test]
fn repair_cron_becomes_a_daemon_schedule_and_bad_crons_are_refused() {
    let env = Env::new();
    two_destinations(&env, "repair = { cron = \"30 4 * * *\" }\n");
    let config = cairn::config::Config::load(&env.config_path()).unwrap();
    let entries = cairn::schedule::entries(&config);
    let repair = entries
        .iter()
        .find(|e| e.key.starts_with("repair:app:"))
        .expect("a scheduled repair");
    assert_eq!(repair.args, ["repair", "app"]);
    two_destinations(&env, "repair = { cron = \"not a cron\" }\n");
    let out = env.cairn().args(["check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("repair.cron"), "{}", stderr(&out));
}

fn s3_destination(name: &str, bucket: &str, prefix: &str) -> String {
    let s3 = common::objstores::s3();
    format!(
        "[destinations.{name}]\nkind = \"s3\"\nbucket = \"{bucket}\"\nprefix = \"{prefix}\"\nendpoint = \"{}\"\nregion = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n\n",
        s3.endpoint(),
        s3.region,
        s3.access_key,
        s3.secret_key
    )
}

#[test]
fn repair_and_copy_with_s3_destinations() {
    let s3 = common::objstores::s3();
    let bucket = common::objstores::unique_name("repair");
    s3.create_bucket(&bucket);
    let env = Env::new();
    create_sample_db(&env.path("app.db"), 30);
    let config = |dests: &str| {
        format!(
            "[destinations.a]\nkind = \"fs\"\npath = \"a\"\n\n{}{}[jobs.app]\nsource = {{ kind = \"sqlite\", path = \"app.db\" }}\ndestinations = [{dests}]\nencryption = {{ kind = \"none\" }}\n",
            s3_destination("s", &bucket, "one"),
            s3_destination("later", &bucket, "two"),
        )
    };
    env.write_config(&config("\"a\", \"s\""));
    let older = backup(&env);
    let newest = backup(&env);
    let s3_key = |prefix: &str, id: &str, manifest: bool| {
        let local = if manifest {
            manifest_file(&env, "a", id)
        } else {
            data_file(&env, "a", id)
        };
        format!(
            "{prefix}/app/{}",
            local.file_name().unwrap().to_string_lossy()
        )
    };
    // Damage the newest copy in S3 (same size) and lose the older one there.
    let key = s3_key("one", &newest, false);
    let mut bytes = s3.get_object(&bucket, &key).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    s3.put_object(&bucket, &key, &bytes);
    s3.delete_object(&bucket, &s3_key("one", &older, false));
    s3.delete_object(&bucket, &s3_key("one", &older, true));
    let (code, report) = json(&env, &["verify", "app"]);
    assert_eq!(code, 1, "{report}");

    let (code, plan) = json(&env, &["repair", "--dry-run"]);
    assert_eq!(code, 0, "{plan}");
    assert_eq!(plan[0]["actions"].as_array().unwrap().len(), 2, "{plan}");
    assert_eq!(
        s3.get_object(&bucket, &key).unwrap(),
        bytes,
        "dry run wrote"
    );

    let (code, report) = json(&env, &["repair"]);
    assert_eq!(code, 0, "{report}");
    for id in [&older, &newest] {
        assert_eq!(
            s3.get_object(&bucket, &s3_key("one", id, false)).unwrap(),
            std::fs::read(data_file(&env, "a", id)).unwrap(),
            "{id} repaired byte-identical"
        );
        assert_eq!(
            s3.get_object(&bucket, &s3_key("one", id, true)).unwrap(),
            std::fs::read(manifest_file(&env, "a", id)).unwrap()
        );
    }
    let (code, verified) = json(&env, &["verify", "app", &newest, "--from", "s"]);
    assert_eq!(code, 0, "{verified}");

    // A destination added later is filled by `copy` and restores on its own.
    env.write_config(&config("\"a\", \"s\", \"later\""));
    let (code, copied) = json(&env, &["copy", "app", "--all", "--to", "later"]);
    assert_eq!(code, 0, "{copied}");
    assert_eq!(
        copied[0]["actions"].as_array().unwrap().len(),
        2,
        "{copied}"
    );
    let target = env.path("from-later.db");
    let out = restore_to(&env, &["app", &older, "--from", "later"], &target);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(common::count_rows(&target, "items"), 30);
}

#[test]
fn the_manifest_cache_is_used_while_an_object_is_unchanged_and_read_again_when_it_changes() {
    let env = Env::new();
    let entry = one_destination(&env);
    let id = entry["id"].as_str().unwrap().to_string();
    let path = env.path(&format!("backups/app/app-{id}.manifest.json"));
    let cache = env.path("cairn-state.db.manifest-cache");
    assert!(cache.exists(), "listing fills the cache");
    let tag_of = |env: &Env| env.list()[0]["tag"].clone();
    // Objects are cached only once their modification time is a few seconds
    // old (a store with whole seconds could not tell a rewrite in the same
    // second), so the rewrites below are dated a minute back.
    let base = std::time::SystemTime::now() - Duration::from_secs(60);
    let rewrite = |tag: &str, when: std::time::SystemTime| {
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        manifest["tag"] = serde_json::json!(tag);
        std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(when).unwrap();
    };
    rewrite("aaaa", base);
    assert_eq!(tag_of(&env), "aaaa");
    // Same size and time: the cached manifest is what is listed.
    rewrite("bbbb", base);
    assert_eq!(tag_of(&env), "aaaa");
    // A newer time (or another size) is read again.
    rewrite("cccc", base + Duration::from_secs(5));
    assert_eq!(tag_of(&env), "cccc");
    rewrite("longer tag", base + Duration::from_secs(5));
    assert_eq!(tag_of(&env), "longer tag");
    // An object written just now is not cached yet: a rewrite within the
    // same second is still seen.
    rewrite("dddd", std::time::SystemTime::now());
    assert_eq!(tag_of(&env), "dddd");
    rewrite(
        "eeee",
        std::fs::metadata(&path).unwrap().modified().unwrap(),
    );
    assert_eq!(tag_of(&env), "eeee");
    // Deleting the cache loses nothing.
    std::fs::remove_file(&cache).unwrap();
    assert_eq!(tag_of(&env), "eeee");
}
