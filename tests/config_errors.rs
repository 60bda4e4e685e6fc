//! Configs that cannot work are refused by `cairn check` with the file, line,
//! column and key, exit 2 — not accepted and failing later.

mod common;

use common::{Env, stderr};

const DEST: &str = "[destinations.local]\nkind = \"fs\"\npath = \"b\"\n";
const JOB: &str = "[jobs.app]\nsource = { kind = \"sqlite\", path = \"a.db\" }\ndestinations = [\"local\"]\nencryption = { kind = \"none\" }\n";

/// `cairn check` on `config`: asserts exit 2 and returns stderr.
fn refused(config: &str) -> String {
    let env = Env::new();
    env.write_config(config);
    let out = env.cairn().arg("check").output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "accepted:\n{config}\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn a_cron_expression_that_never_fires_is_refused() {
    let err = refused(&format!(
        "{DEST}\n{JOB}schedules = [{{ cron = \"0 0 30 2 *\" }}]\n"
    ));
    assert!(err.contains("cairn.toml:9:"), "{err}");
    assert!(err.contains("jobs.app.schedules"), "{err}");
    assert!(err.contains("never fires"), "{err}");
}

#[test]
fn a_folder_as_state_path_is_refused() {
    let err = refused(&format!("{DEST}\n{JOB}\n[state]\npath = \"/\"\n"));
    assert!(err.contains("state.path"), "{err}");
    assert!(err.contains("is a folder"), "{err}");
    assert!(err.contains("cairn.toml:11:"), "{err}");
}

#[test]
fn empty_source_and_destination_paths_are_refused() {
    let err = refused(&format!(
        "{DEST}\n[jobs.app]\nsource = {{ kind = \"sqlite\", path = \"\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\n"
    ));
    assert!(err.contains("jobs.app.source.path"), "{err}");
    assert!(err.contains("the path is empty"), "{err}");
    assert!(err.contains("cairn.toml:6:"), "{err}");

    let err = refused(&format!(
        "{DEST}\n[jobs.app]\nsource = {{ kind = \"files\", path = \"\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\n"
    ));
    assert!(err.contains("jobs.app.source.path"), "{err}");

    let err = refused(&format!(
        "[destinations.local]\nkind = \"fs\"\npath = \"\"\n\n{JOB}"
    ));
    assert!(err.contains("destinations.local.path"), "{err}");
    assert!(err.contains("cairn.toml:1:"), "{err}");
}

#[test]
fn a_huge_jitter_is_refused() {
    let err = refused(&format!(
        "{DEST}\n{JOB}schedules = [{{ cron = \"@daily\" }}]\njitter = \"100000000d\"\n"
    ));
    assert!(err.contains("jobs.app.jitter"), "{err}");
    assert!(err.contains("cairn.toml:10:"), "{err}");
}

#[test]
fn bad_names_are_refused_with_their_position() {
    let long = "j".repeat(5000);
    let err = refused(&format!(
        "{DEST}\n[jobs.{long}]\nsource = {{ kind = \"sqlite\", path = \"a.db\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\n"
    ));
    assert!(err.contains("cairn.toml:5:"), "{err}");
    assert!(err.contains("at most 100"), "{err}");
    assert!(
        err.len() < 1000,
        "the message repeats the whole name: {err}"
    );

    for name in [r#""a/b""#, r#""..""#, r#""a\nb""#, r#""../../x""#] {
        let err = refused(&format!(
            "{DEST}\n[jobs.{name}]\nsource = {{ kind = \"sqlite\", path = \"a.db\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\n"
        ));
        assert!(err.contains("cairn.toml:5:"), "{name}: {err}");
        assert!(err.contains("is not allowed"), "{name}: {err}");
        assert!(!err.contains("a\nb"), "a raw newline in the message: {err}");
    }
}

#[test]
fn a_tag_the_config_would_refuse_is_refused_on_the_command_line() {
    let env = Env::new();
    env.sqlite_age_setup(5);
    let out = env
        .cairn()
        .args(["backup", "app", "--tag", "../../x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not allowed"), "{}", stderr(&out));
    assert!(env.list().is_empty(), "a backup was made");
}
