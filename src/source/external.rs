//! Running external tools (pg_dump, mariadb-dump, user commands) as stream
//! producers and consumers.
//!
//! - Secrets reach a child only through its environment or a 0600 file, never argv.
//! - stderr is captured (the last 64 KiB) and logged, with secrets redacted.
//! - A consumer's stdin holds back the stream's last bytes until the caller has
//!   checked the artifact's hashes: the tool never sees end of input for damaged
//!   data, so a single-transaction restore rolls back instead of committing.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::{Error, Result};

const STDERR_TAIL: usize = 64 * 1024;
/// Bytes of a restore stream held back until its hashes are checked.
const HOLDBACK: usize = 256 * 1024;

pub use crate::redact::{redact_with as redact, url_decode};

/// Variables of cairn's environment that every child sees; nothing else is
/// passed on unless a program asks for it (`inherit`, `inherit_prefix`), so
/// that secrets in cairn's environment stay out of dump tools and user commands.
const BASE_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
];

/// Whether a child gets `name` from cairn's environment by default.
pub fn is_base_env(name: &str) -> bool {
    BASE_ENV.contains(&name) || name.starts_with("LC_")
}

/// A program to run: argv plus extra environment.
#[derive(Clone)]
pub struct Program {
    pub argv: Vec<OsString>,
    pub env: Vec<(String, String)>,
    /// Values to hide in anything shown or logged.
    pub secrets: Vec<String>,
    /// Names and name prefixes of cairn's variables passed on besides `BASE_ENV`.
    inherit: Vec<String>,
    inherit_prefixes: Vec<String>,
    /// Files the program reads (a 0600 service file), removed with the last clone.
    keep: Vec<Arc<SecretFile>>,
}

impl Program {
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Program {
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            secrets: Vec::new(),
            inherit: Vec::new(),
            inherit_prefixes: Vec::new(),
            keep: Vec::new(),
        }
    }

    /// Passes these variables of cairn's environment on (a config's `env` list).
    pub fn inherit(mut self, names: &[String]) -> Self {
        self.inherit.extend(names.iter().cloned());
        self
    }

    /// Passes every variable of cairn's environment whose name starts with
    /// `prefix` on (`PG` for libpq's, `MYSQL` for the MySQL clients').
    pub fn inherit_prefix(mut self, prefix: &str) -> Self {
        self.inherit_prefixes.push(prefix.to_string());
        self
    }

    /// Keeps `file` until the program (and every clone of it) is dropped.
    pub fn keep(mut self, file: SecretFile) -> Self {
        self.keep.push(Arc::new(file));
        self
    }

    fn inherits(&self, name: &str) -> bool {
        is_base_env(name)
            || self.inherit.iter().any(|n| n == name)
            || self
                .inherit_prefixes
                .iter()
                .any(|p| name.starts_with(p.as_str()))
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn secret(mut self, secret: &str) -> Self {
        if !secret.is_empty() {
            self.secrets.push(secret.to_string());
        }
        self
    }

    pub fn name(&self) -> String {
        self.argv
            .first()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The command line for messages, secrets redacted.
    pub fn display(&self) -> String {
        let line: Vec<String> = self
            .argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        redact(&line.join(" "), &self.secrets)
    }

    fn command(&self) -> Result<Command> {
        let (program, args) = self
            .argv
            .split_first()
            .ok_or_else(|| Error::Usage("empty command".into()))?;
        let mut cmd = Command::new(program);
        cmd.args(args).env_clear();
        for (key, value) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| self.inherits(k)) {
                cmd.env(key, value);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        crate::descriptor_limit::give_back_to(&mut cmd);
        Ok(cmd)
    }

    fn spawn(&self, stdin: Stdio, stdout: Stdio) -> Result<(Child, StderrTail)> {
        let mut cmd = self.command()?;
        cmd.stdin(stdin).stdout(stdout).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            Error::Run(if e.kind() == io::ErrorKind::NotFound {
                format!("`{}` is not installed or not on PATH", self.name())
            } else {
                format!("cannot start `{}`: {e}", self.name())
            })
        })?;
        let tail = StderrTail::capture(child.stderr.take(), self.name(), self.secrets.clone());
        Ok((child, tail))
    }

    /// Runs to completion and returns stdout; a non-zero exit is an error with stderr.
    pub fn output(&self) -> Result<String> {
        let (mut child, tail) = self.spawn(Stdio::null(), Stdio::piped())?;
        let mut stdout = String::new();
        if let Some(mut out) = child.stdout.take() {
            out.read_to_string(&mut stdout)
                .map_err(|e| Error::Run(format!("cannot read output of `{}`: {e}", self.name())))?;
        }
        let status = child
            .wait()
            .map_err(|e| Error::Run(format!("`{}` did not finish: {e}", self.name())))?;
        let stderr = tail.finish();
        check_status(&self.name(), status, &stderr)?;
        Ok(stdout)
    }

    /// Streams the program's stdout into `out`. Returns its stderr (redacted).
    pub fn stream_to(&self, out: &mut dyn Write) -> Result<String> {
        let (mut child, tail) = self.spawn(Stdio::null(), Stdio::piped())?;
        let copied = match child.stdout.take() {
            Some(mut stdout) => crate::pipeline::copy(&mut stdout, out).map(|_| ()),
            None => Ok(()),
        };
        if copied.is_err() {
            let _ = child.kill();
        }
        let status = child
            .wait()
            .map_err(|e| Error::Run(format!("`{}` did not finish: {e}", self.name())))?;
        let stderr = tail.finish();
        check_status(&self.name(), status, &stderr)?;
        copied
            .map_err(|e| Error::Run(format!("stream from `{}` interrupted: {e}", self.name())))?;
        Ok(stderr)
    }

    /// Starts the program reading a stream on stdin (see `Receiver`).
    pub fn receiver(&self) -> Result<Receiver> {
        self.start_receiver(false)
    }

    /// Starts a program that reads only the start of a stream (e.g. `pg_restore
    /// --list`): once it stops reading, the rest of the stream is still read, so
    /// that its hashes can be checked.
    pub fn reader_of_prefix(&self) -> Result<Receiver> {
        self.start_receiver(true)
    }

    fn start_receiver(&self, reads_prefix_only: bool) -> Result<Receiver> {
        let (mut child, tail) = self.spawn(Stdio::piped(), Stdio::piped())?;
        let stdin = child.stdin.take();
        // Drain stdout so the child never blocks on a full pipe; keep its tail for logs.
        let stdout = StderrTail::capture(child.stdout.take(), self.name(), self.secrets.clone());
        Ok(Receiver {
            name: self.name(),
            child,
            stdin: stdin.map(|s| HoldBack::new(s, HOLDBACK)),
            stderr: Some(tail),
            stdout: Some(stdout),
            reads_prefix_only,
        })
    }
}

fn check_status(name: &str, status: ExitStatus, stderr: &str) -> Result<()> {
    if status.success() {
        return Ok(());
    }
    let how = match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => {
            use std::os::unix::process::ExitStatusExt;
            format!("was killed by signal {}", status.signal().unwrap_or(0))
        }
    };
    let detail = stderr.trim();
    Err(Error::Run(if detail.is_empty() {
        format!("`{name}` {how}")
    } else {
        format!("`{name}` {how}: {}", last_lines(detail, 6))
    }))
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Collects the tail of a child's output stream on a thread.
pub struct StderrTail {
    handle: Option<JoinHandle<()>>,
    buffer: Arc<Mutex<VecDeque<u8>>>,
    secrets: Vec<String>,
    name: String,
}

impl StderrTail {
    fn capture(
        stream: Option<impl Read + Send + 'static>,
        name: String,
        secrets: Vec<String>,
    ) -> Self {
        let buffer = Arc::new(Mutex::new(VecDeque::new()));
        let sink = buffer.clone();
        let handle = stream.map(|mut stream| {
            std::thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                while let Ok(n) = stream.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut buf) = sink.lock() {
                        buf.extend(&chunk[..n]);
                        let excess = buf.len().saturating_sub(STDERR_TAIL);
                        buf.drain(..excess);
                    }
                }
            })
        });
        StderrTail {
            handle,
            buffer,
            secrets,
            name,
        }
    }

    /// Waits for the stream to close and returns its tail, redacted and logged.
    pub fn finish(mut self) -> String {
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
        let bytes: Vec<u8> = self
            .buffer
            .lock()
            .map(|b| b.iter().copied().collect())
            .unwrap_or_default();
        let text = redact(&String::from_utf8_lossy(&bytes), &self.secrets);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            tracing::info!(tool = %self.name, "{line}");
        }
        text
    }
}

/// A child process that consumes a stream on stdin, with the stream's tail held
/// back until `commit`.
pub struct Receiver {
    name: String,
    child: Child,
    stdin: Option<HoldBack<ChildStdin>>,
    stderr: Option<StderrTail>,
    stdout: Option<StderrTail>,
    reads_prefix_only: bool,
}

impl Receiver {
    /// Feeds the stream, all but its last bytes.
    pub fn feed(&mut self, stream: &mut dyn Read) -> Result<()> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(Error::Run(format!("`{}` takes no input", self.name)));
        };
        // Not io::copy: a failed read (damage, reported as such by the caller)
        // must not be confused with a program that stopped reading.
        let mut buf = vec![0u8; 64 * 1024];
        let stopped = loop {
            let n = match stream.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Run(format!("reading the artifact failed: {e}"))),
            };
            if let Err(e) = stdin.write_all(&buf[..n]) {
                break e;
            }
        };
        if self.reads_prefix_only && stopped.kind() == io::ErrorKind::BrokenPipe {
            self.stdin = None;
            return io::copy(stream, &mut io::sink())
                .map(|_| ())
                .map_err(|e| Error::Run(format!("reading the artifact failed: {e}")));
        }
        // The program's failure (e.g. it rejected a statement), not damage in the artifact.
        Err(Error::Target {
            path: self.name.clone().into(),
            message: format!("`{}` stopped reading its input ({stopped})", self.name),
        })
    }

    /// The hashes matched: deliver the held-back tail, close stdin and wait.
    /// Returns the tails of what the program printed on stdout and stderr.
    pub fn commit(mut self) -> Result<(String, String)> {
        let delivered = match self.stdin.take() {
            Some(stdin) => stdin.release().map(drop),
            None => Ok(()),
        };
        let status = self
            .child
            .wait()
            .map_err(|e| Error::Run(format!("`{}` did not finish: {e}", self.name)))?;
        let stdout = self
            .stdout
            .take()
            .map(StderrTail::finish)
            .unwrap_or_default();
        let stderr = self
            .stderr
            .take()
            .map(StderrTail::finish)
            .unwrap_or_default();
        check_status(&self.name, status, &stderr)?;
        match delivered {
            Err(e) if !(self.reads_prefix_only && e.kind() == io::ErrorKind::BrokenPipe) => {
                Err(Error::Run(format!("cannot write to `{}`: {e}", self.name)))
            }
            _ => Ok((stdout, stderr)),
        }
    }

    /// Something did not check out: kill the tool before it sees end of input.
    pub fn abort(mut self) -> String {
        let _ = self.child.kill();
        self.stdin = None;
        let _ = self.child.wait();
        let _ = self.stdout.take().map(StderrTail::finish);
        self.stderr
            .take()
            .map(StderrTail::finish)
            .unwrap_or_default()
    }
}

/// A writer that keeps the last `hold` bytes written to it until `release`.
pub struct HoldBack<W: Write> {
    inner: W,
    held: VecDeque<u8>,
    hold: usize,
}

impl<W: Write> HoldBack<W> {
    pub fn new(inner: W, hold: usize) -> Self {
        HoldBack {
            inner,
            held: VecDeque::with_capacity(hold * 2),
            hold,
        }
    }

    /// Writes what was held back and returns the inner writer.
    pub fn release(mut self) -> io::Result<W> {
        let (a, b) = self.held.as_slices();
        self.inner.write_all(a)?;
        self.inner.write_all(b)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for HoldBack<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.held.extend(buf);
        let excess = self.held.len().saturating_sub(self.hold);
        if excess > 0 {
            let out: Vec<u8> = self.held.drain(..excess).collect();
            self.inner.write_all(&out)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A 0600 temporary file removed on drop (passwords for tools that read files).
pub struct SecretFile {
    pub path: PathBuf,
}

/// Secret files are named `cairn-secret-<pid>-<nonce>.cnf`.
const SECRET_FILE_PREFIX: &str = "cairn-secret-";

impl SecretFile {
    pub fn new(contents: &str) -> Result<Self> {
        Self::new_in(&std::env::temp_dir(), contents)
    }

    /// A secret file in `dir`. A killed process cannot remove its own, so
    /// those of processes that are gone are removed first.
    fn new_in(dir: &Path, contents: &str) -> Result<Self> {
        crate::leftovers::sweep_dir(dir, SECRET_FILE_PREFIX, "a killed dump tool's run");
        let nonce: u64 = rand::random();
        let path = dir.join(format!(
            "{SECRET_FILE_PREFIX}{}-{nonce:016x}.cnf",
            std::process::id()
        ));
        let mut file = crate::local_fs::create_private(&path).map_err(|e| {
            Error::Run(format!(
                "cannot create a private temp file in {}: {e}",
                dir.display()
            ))
        })?;
        file.write_all(contents.as_bytes())
            .map_err(|e| Error::Run(format!("cannot write {}: {e}", path.display())))?;
        Ok(SecretFile { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The first of `candidates` found on PATH.
pub fn find_tool(candidates: &[&str]) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    candidates.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
            .map(|_| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_is_private_gone_on_drop_and_a_dead_process_one_is_swept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let orphan = dir
            .path()
            .join(format!("{SECRET_FILE_PREFIX}{dead}-00.cnf"));
        let live = dir
            .path()
            .join(format!("{SECRET_FILE_PREFIX}{}-01.cnf", std::process::id()));
        std::fs::write(&orphan, "password=old").unwrap();
        std::fs::write(&live, "password=in use").unwrap();

        let file = SecretFile::new_in(dir.path(), "password=new").unwrap();
        assert!(
            !orphan.exists(),
            "a killed process's secret file is removed"
        );
        assert!(live.exists(), "a running process's secret file is kept");
        let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(file.path()).unwrap(),
            "password=new"
        );
        let path = file.path().to_path_buf();
        drop(file);
        assert!(!path.exists());
    }

    #[test]
    fn passwords_are_removed_from_urls() {
        use crate::redact::display_url;
        assert_eq!(
            display_url("postgres://app:s3cret@db:5432/shop?sslmode=require"),
            "postgres://app@db:5432/shop?sslmode=require"
        );
        assert_eq!(
            display_url("postgres://app:ab/cd+ef@db/shop"),
            "postgres://app@db/shop"
        );
        assert_eq!(redact("pw=hunter2 x", &["hunter2".into()]), "pw=*** x");
    }

    #[test]
    fn children_see_only_the_variables_they_need() {
        let program = Program::new(["env"]).env("CAIRN_JOB", "j");
        assert!(program.inherits("PATH") && program.inherits("LC_ALL"));
        assert!(!program.inherits("AWS_SECRET_ACCESS_KEY") && !program.inherits("PGPASSWORD"));
        let program = program
            .inherit(&["AWS_PROFILE".to_string()])
            .inherit_prefix("PG");
        assert!(program.inherits("AWS_PROFILE") && program.inherits("PGHOST"));
        assert!(!program.inherits("AWS_PROFILES"));
        let seen = program.output().unwrap();
        assert!(seen.contains("CAIRN_JOB=j\n"), "{seen}");
        assert!(
            seen.lines().all(|l| {
                let name = l.split('=').next().unwrap_or_default();
                program.inherits(name) || name == "CAIRN_JOB"
            }),
            "{seen}"
        );
    }

    #[test]
    fn holdback_keeps_the_tail_until_released() {
        let mut w = HoldBack::new(Vec::new(), 4);
        w.write_all(b"abcdefgh").unwrap();
        assert_eq!(w.inner, b"abcd");
        w.write_all(b"ij").unwrap();
        assert_eq!(w.inner, b"abcdef");
        assert_eq!(w.release().unwrap(), b"abcdefghij");
    }

    #[test]
    fn failing_tools_report_status_and_stderr() {
        let err = Program::new(["sh", "-c", "echo boom >&2; exit 3"])
            .output()
            .unwrap_err()
            .to_string();
        assert!(err.contains("status 3") && err.contains("boom"), "{err}");
        let err = Program::new(["cairn-no-such-tool"])
            .output()
            .unwrap_err()
            .to_string();
        assert!(err.contains("not installed"), "{err}");
    }
}
