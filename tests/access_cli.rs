//! Users, tokens, the audit log and schedule overrides through the real
//! binary: what an operator types, and what an attacker with a copy of the
//! state file would (not) find in it.

mod common;

use common::{Env, stderr, stdout};
use sha2::{Digest, Sha256};

fn env() -> Env {
    let env = Env::new();
    env.sqlite_age_setup(10);
    env
}

/// Every byte of the state store (with its WAL), to grep for secrets.
fn state_bytes(env: &Env) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(env.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("cairn-state") {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(!bytes.is_empty(), "no state file");
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn state(env: &Env) -> rusqlite::Connection {
    rusqlite::Connection::open(env.path("cairn-state.db")).unwrap()
}

fn add_user(env: &Env, name: &str, role: &str, password: &str) -> std::process::Output {
    env.cairn()
        .env("USER", "tester")
        .args(["user", "add", name, "--role", role, "--password-stdin"])
        .write_stdin(format!("{password}\n"))
        .output()
        .unwrap()
}

#[test]
fn users_are_added_listed_given_a_new_password_and_removed() {
    let env = env();
    let out = env.cairn().args(["user", "list"]).output().unwrap();
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("cairn user add NAME --role admin"),
        "{}",
        stdout(&out)
    );

    let out = add_user(&env, "ann", "admin", "correct horse battery");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        add_user(&env, "bob", "viewer", "another long password")
            .status
            .success()
    );

    let out = env.cairn().args(["user", "list"]).output().unwrap();
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("ann ") && l.contains("admin")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("bob ") && l.contains("viewer")),
        "{text}"
    );
    let out = env
        .cairn()
        .args(["--json", "user", "list"])
        .output()
        .unwrap();
    let users: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(users[0]["name"], "ann");
    assert_eq!(users[0]["role"], "admin");
    assert!(!stdout(&out).contains("argon2"), "{}", stdout(&out));

    // Stored as an argon2id PHC string, never as the password.
    let hash = |env: &Env| -> String {
        state(env)
            .query_row(
                "SELECT password_hash FROM users WHERE name = 'ann'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    let first = hash(&env);
    assert!(first.starts_with("$argon2id$"), "{first}");
    assert!(!contains(&state_bytes(&env), "correct horse battery"));

    let out = env
        .cairn()
        .args(["user", "passwd", "ann", "--password-stdin"])
        .write_stdin("a new password of mine\r\n")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let second = hash(&env);
    assert_ne!(first, second);
    assert!(!contains(&state_bytes(&env), "a new password of mine"));

    let out = env
        .cairn()
        .args(["user", "remove", "bob"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.cairn().args(["user", "list"]).output().unwrap();
    assert!(!stdout(&out).contains("bob"), "{}", stdout(&out));
    let out = env
        .cairn()
        .args(["user", "remove", "bob"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no user `bob`"), "{}", stderr(&out));
}

#[test]
fn bad_user_input_is_refused_with_a_reason() {
    let env = env();
    let cases: [(&[&str], &str, &str); 5] = [
        (
            &["user", "add", "ann", "--role", "admin", "--password-stdin"],
            "short\n",
            "at least 12",
        ),
        (
            &["user", "add", "ann", "--role", "root", "--password-stdin"],
            "correct horse battery\n",
            "admin, operator or viewer",
        ),
        (
            &["user", "add", "a b", "--role", "admin", "--password-stdin"],
            "correct horse battery\n",
            "cannot name a user",
        ),
        (
            &["user", "add", "ann", "--role", "admin", "--password-stdin"],
            "",
            "holds no password",
        ),
        // Not a terminal and no --password-stdin: no silent empty password.
        (
            &["user", "add", "ann", "--role", "admin"],
            "correct horse battery\n",
            "--password-stdin",
        ),
    ];
    for (args, input, message) in cases {
        let out = env.cairn().args(args).write_stdin(input).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
    let out = env
        .cairn()
        .args(["--json", "user", "list"])
        .output()
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!([])
    );

    assert!(
        add_user(&env, "ann", "admin", "correct horse battery")
            .status
            .success()
    );
    let again = add_user(&env, "ann", "viewer", "correct horse battery");
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("exists already"),
        "{}",
        stderr(&again)
    );
    let out = env
        .cairn()
        .args(["user", "passwd", "nobody", "--password-stdin"])
        .write_stdin("correct horse battery\n")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn a_token_is_printed_once_alone_and_only_its_hash_is_stored() {
    let env = env();
    let out = env
        .cairn()
        .args([
            "token",
            "create",
            "ci",
            "--role",
            "operator",
            "--expires",
            "30d",
            "--jobs",
            "app",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "only the token on stdout: {text:?}");
    let secret = lines[0].to_string();
    assert!(
        secret.starts_with("cairn_") && secret.len() == 49,
        "{secret}"
    );

    let out = env
        .cairn()
        .args([
            "--json",
            "token",
            "create",
            "deploy",
            "--role",
            "admin",
            "--expires",
            "never",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let second = created["token"].as_str().unwrap().to_string();
    assert!(second.starts_with("cairn_"));
    assert_eq!(created["name"], "deploy");
    assert_ne!(secret, second);

    // The store keeps the SHA-256, and nowhere the secret.
    let stored: String = state(&env)
        .query_row("SELECT hash FROM tokens WHERE name = 'ci'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored, hex::encode(Sha256::digest(secret.as_bytes())));
    let bytes = state_bytes(&env);
    for s in [&secret, &second] {
        assert!(!contains(&bytes, s), "a secret is in the state file");
        assert!(!contains(&bytes, &s["cairn_".len()..]));
    }

    // Listings show role, jobs, expiry, last use; never the secret or its hash.
    for json in [false, true] {
        let mut cmd = env.cairn();
        if json {
            cmd.arg("--json");
        }
        let out = cmd.args(["token", "list"]).output().unwrap();
        assert!(out.status.success());
        let text = stdout(&out);
        for s in [&secret, &second, &stored] {
            assert!(!text.contains(s.as_str()), "{text}");
        }
        assert!(!text.contains("cairn_"), "{text}");
        if json {
            let list: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(list[0]["name"], "ci");
            assert_eq!(list[0]["role"], "operator");
            assert_eq!(list[0]["jobs"], serde_json::json!(["app"]));
            assert_eq!(list[0]["state"], "active");
            assert!(list[0]["expires_at"].is_string());
            assert!(list[0].get("hash").is_none());
            assert!(list[1].get("expires_at").is_none(), "never expires");
        } else {
            let ci = text.lines().find(|l| l.starts_with("ci ")).unwrap();
            assert!(
                ci.contains("operator") && ci.contains("active") && ci.contains("app"),
                "{ci}"
            );
        }
    }

    let out = env
        .cairn()
        .args(["token", "revoke", "ci"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env
        .cairn()
        .args(["--json", "token", "list"])
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["state"], "revoked");
    assert!(list[0]["revoked_at"].is_string());
    let out = env
        .cairn()
        .args(["token", "revoke", "ci"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // A revoked token's name stays taken.
    let out = env
        .cairn()
        .args(["token", "create", "ci", "--role", "viewer"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).is_empty());
}

#[test]
fn bad_token_options_are_refused() {
    let env = env();
    let cases: [(&[&str], &str); 4] = [
        (
            &["token", "create", "t", "--role", "admin", "--jobs", "nope"],
            "nope",
        ),
        (
            &[
                "token",
                "create",
                "t",
                "--role",
                "admin",
                "--expires",
                "10s",
            ],
            "too short",
        ),
        (
            &[
                "token",
                "create",
                "t",
                "--role",
                "admin",
                "--expires",
                "soon",
            ],
            "--expires",
        ),
        (
            &["token", "create", "t/x", "--role", "admin"],
            "cannot name a token",
        ),
    ];
    for (args, message) in cases {
        let out = env.cairn().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{args:?}");
    }
    let out = env
        .cairn()
        .args(["--json", "token", "list"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out).trim(), "[]");
}

#[test]
fn the_audit_log_lists_cli_changes_and_verify_finds_tampering() {
    let env = env();
    assert!(
        add_user(&env, "ann", "admin", "correct horse battery")
            .status
            .success()
    );
    let token = |args: &[&str]| {
        let out = env
            .cairn()
            .env("USER", "tester")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    };
    token(&["token", "create", "ci", "--role", "viewer"]);
    token(&["token", "revoke", "ci"]);
    token(&["schedule", "app", "--disable"]);
    token(&["user", "remove", "ann"]);

    let out = env.cairn().args(["--json", "audit"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = entries.as_array().unwrap();
    let seen: Vec<(i64, &str, &str)> = entries
        .iter()
        .map(|e| {
            assert!(
                e["actor"].as_str().unwrap().starts_with("cli:tester@"),
                "{e}"
            );
            assert_eq!(e["result"], "ok");
            assert!(e["at"].is_string() && e["hash"].is_string());
            (
                e["seq"].as_i64().unwrap(),
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (1, "user.add", "ann"),
            (2, "token.create", "ci"),
            (3, "token.revoke", "ci"),
            (4, "schedule.set", "app"),
            (5, "user.remove", "ann"),
        ]
    );
    let out = env
        .cairn()
        .args(["audit", "--limit", "2"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("schedule.set") && text.contains("user.remove"),
        "{text}"
    );
    assert!(!text.contains("token.create"), "{text}");

    let out = env.cairn().args(["audit", "--verify"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("intact: 5 entries"),
        "{}",
        stdout(&out)
    );

    // Someone edits an entry in the file: --verify names it and fails.
    state(&env)
        .execute(
            "UPDATE audit SET actor = 'cli:someone@else' WHERE seq = 3",
            [],
        )
        .unwrap();
    let out = env.cairn().args(["audit", "--verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("broken at entry 3"),
        "{}",
        stderr(&out)
    );
    let out = env
        .cairn()
        .args(["--json", "audit", "--verify"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["broken"]["seq"], 3);
    assert_eq!(report["broken"]["kind"], "edited");
    assert_eq!(report["entries"], 2);
}

#[test]
fn a_removed_audit_entry_is_a_gap_verify_reports() {
    let env = env();
    for name in ["a1", "a2", "a3", "a4"] {
        let out = env
            .cairn()
            .args(["token", "create", name, "--role", "viewer"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    state(&env)
        .execute("DELETE FROM audit WHERE seq = 2", [])
        .unwrap();
    let out = env.cairn().args(["audit", "--verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(
        message.contains("broken at entry 3") && message.contains("entry 2 is missing"),
        "{message}"
    );
}

#[test]
fn schedule_overrides_are_stored_validated_and_cleared() {
    let env = env();
    let overrides = |env: &Env| -> Vec<(String, String)> {
        let conn = state(env);
        let mut stmt = conn
            .prepare("SELECT job, value FROM schedule_overrides")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let out = env
        .cairn()
        .args(["schedule", "app", "--cron", "0 3 * * *"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("overridden: `0 3 * * *`"),
        "{}",
        stdout(&out)
    );
    let stored = overrides(&env);
    assert_eq!(stored.len(), 1);
    let value: serde_json::Value = serde_json::from_str(&stored[0].1).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"mode": "cron", "cron": "0 3 * * *"})
    );

    let out = env
        .cairn()
        .args(["--json", "schedule", "app", "--disable"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["override"], serde_json::json!({"mode": "disabled"}));
    let value: serde_json::Value = serde_json::from_str(&overrides(&env)[0].1).unwrap();
    assert_eq!(value["mode"], "disabled");

    let out = env
        .cairn()
        .args(["schedule", "app", "--clear"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(overrides(&env).is_empty());

    let refused: [(&[&str], &str); 5] = [
        (
            &["schedule", "app", "--cron", "every day"],
            "is not a cron expression",
        ),
        (&["schedule", "app", "--cron", "0 0 31 2 *"], "never fires"),
        (&["schedule", "nope", "--disable"], "nope"),
        (&["schedule", "app"], "required"),
        (
            &["schedule", "app", "--disable", "--clear"],
            "cannot be used with",
        ),
    ];
    for (args, message) in refused {
        let out = env.cairn().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
    assert!(
        overrides(&env).is_empty(),
        "a refused change stores nothing"
    );
}
