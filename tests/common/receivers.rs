//! Real receivers on 127.0.0.1 for notification tests: a small HTTP/1.1
//! server that records every request (and answers with planned statuses and
//! delays), and a small SMTP server that records every message. Both speak
//! the real protocol over TCP on a free port of their own.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

#[derive(Default)]
struct Plan {
    statuses: VecDeque<u16>,
    delay: Duration,
    body: String,
}

pub struct HttpReceiver {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    plan: Arc<Mutex<Plan>>,
}

impl HttpReceiver {
    pub fn start() -> HttpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let plan = Arc::new(Mutex::new(Plan {
            body: "ok".into(),
            ..Plan::default()
        }));
        let (r, p) = (requests.clone(), plan.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, p) = (r.clone(), p.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &r, &p);
                });
            }
        });
        HttpReceiver {
            port,
            requests,
            plan,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The next requests get these statuses, in order; then 200.
    pub fn respond_with(&self, statuses: &[u16]) {
        self.plan.lock().unwrap().statuses.extend(statuses);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.plan.lock().unwrap().delay = delay;
    }

    pub fn set_body(&self, body: &str) {
        self.plan.lock().unwrap().body = body.to_string();
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (or `timeout` passed).
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Request> {
        let start = Instant::now();
        while self.requests.lock().unwrap().len() < n && start.elapsed() < timeout {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.requests()
    }
}

fn serve(
    stream: TcpStream,
    requests: &Mutex<Vec<Request>>,
    plan: &Mutex<Plan>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    let (status, delay, answer) = {
        let mut p = plan.lock().unwrap();
        (
            p.statuses.pop_front().unwrap_or(200),
            p.delay,
            p.body.clone(),
        )
    };
    requests.lock().unwrap().push(Request {
        method,
        path,
        headers,
        body,
    });
    std::thread::sleep(delay);
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} Status\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    )?;
    stream.flush()
}

#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub recipients: Vec<String>,
    /// The message as sent after DATA (headers and body), dot-unstuffed.
    pub data: String,
    /// `user\0password` from AUTH PLAIN, if the client authenticated.
    pub auth: Option<String>,
}

impl Mail {
    /// A header's value (unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// The body after the headers, with quoted-printable soft breaks undone.
    pub fn body(&self) -> String {
        let body = self.data.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        body.replace("=\r\n", "").replace("=3D", "=")
    }
}

/// What cairn sent a receiver is output too: no body may hold a harness
/// secret (skipped when the test already failed).
impl Drop for HttpReceiver {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let scan = super::secrets::SecretScan::with_harness_secrets();
        for request in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            scan.assert_clean(
                &format!(
                    "{} {} (body sent to the HTTP receiver)",
                    request.method, request.path
                ),
                &request.body,
            );
        }
    }
}

impl Drop for SmtpReceiver {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let scan = super::secrets::SecretScan::with_harness_secrets();
        for mail in self.mails.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            scan.assert_clean("a mail sent to the SMTP receiver", mail.data.as_bytes());
        }
    }
}

pub struct SmtpReceiver {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpReceiver {
    pub fn start() -> SmtpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let m = mails.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let m = m.clone();
                std::thread::spawn(move || {
                    let _ = smtp_session(stream, &m);
                });
            }
        });
        SmtpReceiver { port, mails }
    }

    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Mail> {
        let start = Instant::now();
        while self.mails.lock().unwrap().len() < n && start.elapsed() < timeout {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.mails.lock().unwrap().clone()
    }
}

fn smtp_session(stream: TcpStream, mails: &Mutex<Vec<Mail>>) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    out.write_all(b"220 localhost ESMTP cairn-test\r\n")?;
    let mut current = Mail {
        from: String::new(),
        recipients: Vec::new(),
        data: String::new(),
        auth: None,
    };
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let upper = command.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            out.write_all(b"250-localhost\r\n250-AUTH PLAIN\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")?;
        } else if upper.starts_with("HELO") {
            out.write_all(b"250 localhost\r\n")?;
        } else if upper.starts_with("AUTH PLAIN") {
            let encoded = command[10..].trim();
            current.auth = Some(
                String::from_utf8_lossy(&base64_decode(encoded))
                    .trim_start_matches('\0')
                    .to_string(),
            );
            out.write_all(b"235 2.7.0 Authentication successful\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            current.from = address(&command[10..]);
            out.write_all(b"250 2.1.0 Ok\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            current.recipients.push(address(&command[8..]));
            out.write_all(b"250 2.1.5 Ok\r\n")?;
        } else if upper == "DATA" {
            out.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l)? == 0 {
                    return Ok(());
                }
                if l == ".\r\n" || l == ".\n" {
                    break;
                }
                data.push_str(
                    l.strip_prefix('.')
                        .filter(|_| l.starts_with(".."))
                        .unwrap_or(&l),
                );
            }
            current.data = data;
            mails.lock().unwrap().push(current.clone());
            current.recipients.clear();
            out.write_all(b"250 2.0.0 Ok: queued\r\n")?;
        } else if upper == "QUIT" {
            out.write_all(b"221 2.0.0 Bye\r\n")?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            out.write_all(b"250 2.0.0 Ok\r\n")?;
        } else {
            out.write_all(b"502 5.5.2 Command not recognized\r\n")?;
        }
    }
}

fn address(text: &str) -> String {
    let text = text.trim();
    let inner = text
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map_or(text, |(a, _)| a);
    inner.to_string()
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buffer = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let Some(v) = ALPHABET.iter().position(|&a| a == c) else {
            continue;
        };
        buffer = (buffer << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A real TLS SMTP server (`smtp_tls.py`, Python standard library) with a
/// self-signed certificate for 127.0.0.1 made by `openssl`: STARTTLS or
/// implicit TLS. Messages land as JSON files in `<dir>/mails`.
pub struct TlsSmtpReceiver {
    pub port: u16,
    /// The certificate to trust (`ca_file`).
    pub ca_file: std::path::PathBuf,
    mails: std::path::PathBuf,
    child: std::process::Child,
}

impl TlsSmtpReceiver {
    pub fn start(dir: &std::path::Path, implicit: bool) -> TlsSmtpReceiver {
        use std::process::{Command, Stdio};
        super::require_tool("openssl");
        super::require_tool("python3");
        let cert = dir.join("smtp-cert.pem");
        let key = dir.join("smtp-key.pem");
        let ca = dir.join("smtp-ca.pem");
        let ca_key = dir.join("smtp-ca-key.pem");
        let csr = dir.join("smtp.csr");
        let ext = dir.join("smtp-ext.cnf");
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let openssl = |args: Vec<&std::ffi::OsStr>| {
            let out = Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "openssl: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let os = |s: &'static str| std::ffi::OsStr::new(s);
        // A CA, and a server certificate for 127.0.0.1 signed by it.
        let mut args: Vec<&std::ffi::OsStr> = vec![os("req"), os("-x509")];
        args.extend(ec.iter().map(|a| os(a)));
        args.extend([
            os("-days"),
            os("2"),
            os("-subj"),
            os("/CN=cairn test CA"),
            os("-keyout"),
            ca_key.as_os_str(),
            os("-out"),
            ca.as_os_str(),
        ]);
        openssl(args);
        let mut args: Vec<&std::ffi::OsStr> = vec![os("req")];
        args.extend(ec.iter().map(|a| os(a)));
        args.extend([
            os("-subj"),
            os("/CN=127.0.0.1"),
            os("-keyout"),
            key.as_os_str(),
            os("-out"),
            csr.as_os_str(),
        ]);
        openssl(args);
        openssl(vec![
            os("x509"),
            os("-req"),
            os("-in"),
            csr.as_os_str(),
            os("-CA"),
            ca.as_os_str(),
            os("-CAkey"),
            ca_key.as_os_str(),
            os("-CAcreateserial"),
            os("-days"),
            os("2"),
            os("-extfile"),
            ext.as_os_str(),
            os("-out"),
            cert.as_os_str(),
        ]);
        let mails = dir.join("mails");
        std::fs::create_dir_all(&mails).unwrap();
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/smtp_tls.py");
        let mut command = Command::new("python3");
        command
            .arg(script)
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .arg("--out")
            .arg(&mails)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if implicit {
            command.arg("--implicit");
        }
        let mut child = command.spawn().expect("python3");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("smtp_tls.py said {line:?}"));
        TlsSmtpReceiver {
            port,
            ca_file: ca,
            mails,
            child,
        }
    }

    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
        let start = Instant::now();
        loop {
            let mut files: Vec<_> = std::fs::read_dir(&self.mails)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            if files.len() >= n || start.elapsed() > timeout {
                files.sort();
                return files
                    .iter()
                    .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
                    .collect();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TlsSmtpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
