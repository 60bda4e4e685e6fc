//! `cairn` as the tests run it: an `assert_cmd::Command` whose captured
//! stdout and stderr are scanned for every secret the harness knows (the test
//! servers' credentials and whatever the test registered on its `Env`) before
//! the test sees them. A hit fails the test, whatever it was checking.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::secrets::SecretScan;

pub struct CairnCommand {
    inner: assert_cmd::Command,
    secrets: Arc<Mutex<SecretScan>>,
    shown: String,
}

impl CairnCommand {
    pub(super) fn new(inner: assert_cmd::Command, secrets: Arc<Mutex<SecretScan>>) -> Self {
        CairnCommand {
            inner,
            secrets,
            shown: "cairn".into(),
        }
    }

    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.shown.push(' ');
        self.shown.push_str(&arg.as_ref().to_string_lossy());
        self.inner.arg(arg);
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for arg in args {
            self.arg(arg);
        }
        self
    }

    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.inner.env(key, value);
        self
    }

    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.inner.envs(vars);
        self
    }

    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        self.inner.env_remove(key);
        self
    }

    pub fn env_clear(&mut self) -> &mut Self {
        self.inner.env_clear();
        self
    }

    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.inner.current_dir(dir);
        self
    }

    pub fn write_stdin(&mut self, buffer: impl Into<Vec<u8>>) -> &mut Self {
        self.inner.write_stdin(buffer);
        self
    }

    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.inner.timeout(timeout);
        self
    }

    /// Runs cairn to its end; its output has been scanned for secrets.
    pub fn output(&mut self) -> std::io::Result<Output> {
        let out = self.inner.output()?;
        self.scan(&out);
        Ok(out)
    }

    /// `assert_cmd`'s assertions on an output that has been scanned for secrets.
    pub fn assert(&mut self) -> assert_cmd::assert::Assert {
        let out = self.inner.output().expect("run cairn");
        self.scan(&out);
        assert_cmd::assert::Assert::new(out)
    }

    fn scan(&self, out: &Output) {
        let scan = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        scan.assert_output(&self.shown, out);
    }
}
