//! Secret scan: a test registers every secret it plants (keys, passwords,
//! tokens, URLs holding them), then asserts that nothing cairn printed or
//! stored holds any of them — stdout, stderr, JSON logs, `history --run` logs,
//! the state store's bytes (WAL included) and every manifest.
#![allow(dead_code)]

use std::path::Path;
use std::process::Output;

use super::Env;

#[derive(Default)]
pub struct SecretScan {
    secrets: Vec<String>,
}

impl SecretScan {
    pub fn new() -> Self {
        SecretScan::default()
    }

    /// The credentials of every test server the harness starts: they reach
    /// cairn through configs and variables and must never come back out.
    pub fn with_harness_secrets() -> Self {
        let mut scan = SecretScan::new();
        for secret in [
            super::servers::PASSWORD,
            super::objstores::S3_SECRET_KEY,
            super::objstores::AZURE_KEY,
            super::objstores::WEBDAV_PASSWORD,
        ] {
            scan.register(secret);
        }
        scan
    }

    /// A secret as planted, and its percent-decoded form (URLs carry both).
    pub fn register(&mut self, secret: &str) -> &mut Self {
        assert!(
            secret.len() >= 6,
            "test secrets must be distinctive: {secret:?}"
        );
        self.secrets.push(secret.to_string());
        let decoded = url::form_urlencoded::parse(format!("x={secret}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let json = serde_json::to_string(secret).unwrap_or_default();
        let json = json.trim_matches('"').to_string();
        let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        for form in [decoded, json, encoded] {
            if form.len() >= 6 && !self.secrets.contains(&form) {
                self.secrets.push(form);
            }
        }
        self
    }

    /// Panics naming `what` and the secret if `bytes` hold one.
    pub fn assert_clean(&self, what: &str, bytes: &[u8]) {
        for secret in &self.secrets {
            let needle = secret.as_bytes();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                panic!(
                    "{what} leaks the secret {secret:?}:\n{}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
    }

    /// stdout and stderr of one cairn run.
    pub fn assert_output(&self, what: &str, out: &Output) {
        self.assert_clean(&format!("{what}: stdout"), &out.stdout);
        self.assert_clean(&format!("{what}: stderr"), &out.stderr);
    }

    /// Everything cairn keeps in `env`: the state store (file, WAL, shared
    /// memory), the full history with each run's log, and every manifest and
    /// other file under the env's folder that cairn wrote (`backups*`).
    pub fn assert_stored(&self, env: &Env, extra_env: &[(&str, &str)]) {
        for suffix in ["", "-wal", "-shm"] {
            let path = env.path(&format!("cairn-state.db{suffix}"));
            if let Ok(bytes) = std::fs::read(&path) {
                self.assert_clean(&path.display().to_string(), &bytes);
            }
        }
        let cairn = |args: &[&str]| {
            let mut cmd = env.cairn();
            for (k, v) in extra_env {
                cmd.env(k, v);
            }
            cmd.args(args).output().expect("cairn")
        };
        let history = cairn(&["history", "--json", "-n", "1000"]);
        self.assert_output("history --json", &history);
        let runs: Vec<serde_json::Value> =
            serde_json::from_slice(&history.stdout).unwrap_or_default();
        for run in runs {
            if let Some(id) = run["id"].as_i64() {
                let one = cairn(&["history", "--run", &id.to_string(), "--json"]);
                self.assert_output(&format!("history --run {id}"), &one);
            }
        }
        for args in [
            &["status", "--json"][..],
            &["report", "--json"],
            &["metrics"],
        ] {
            let out = cairn(args);
            self.assert_output(&args.join(" "), &out);
        }
        self.assert_files(&env.dir.path().join("backups"));
    }

    /// What cairn writes into a test's folder: the state store (file, WAL,
    /// shared memory), logs (`*.log`) and every manifest below it. Files the
    /// test wrote itself (its config, its source data) are not cairn's words.
    pub fn assert_written_by_cairn(&self, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                self.assert_written_by_cairn(&path);
            } else if kind.is_file()
                && (name.starts_with("cairn-state.db")
                    || name.ends_with(".log")
                    || name.ends_with(".manifest.json"))
                && let Ok(bytes) = std::fs::read(&path)
            {
                self.assert_clean(&path.display().to_string(), &bytes);
            }
        }
    }

    /// Every manifest (and other text) under `dir`.
    pub fn assert_files(&self, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                self.assert_files(&path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                self.assert_clean(&path.display().to_string(), &bytes);
            }
        }
    }
}
