//! The daemon serving its UI and API over TLS itself (`[daemon] tls_cert`,
//! `tls_key`, issue 13): a browser-like client that trusts only the test's CA
//! signs in over HTTPS and gets a `Secure` session cookie; plain HTTP to the
//! same port gets no HTTP answer. (A public listener without TLS is refused:
//! tests/web_api.rs.)

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn::state::{Role, User};
use common::Env;
use common::receivers::closed_port;

const PASSWORD: &str = "correct horse battery staple";

/// A daemon process, killed when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl(args: &[&std::ffi::OsStr]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it; (CA, cert, key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    common::require_tool("openssl");
    let [ca, ca_key, cert, key, csr, ext] = [
        "ca.pem",
        "ca-key.pem",
        "tls-cert.pem",
        "tls-key.pem",
        "tls.csr",
        "tls-ext.cnf",
    ]
    .map(|name| dir.join(name));
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let os = std::ffi::OsStr::new;
    let ec = [
        os("-newkey"),
        os("ec"),
        os("-pkeyopt"),
        os("ec_paramgen_curve:prime256v1"),
        os("-nodes"),
    ];
    let mut args = vec![os("req"), os("-x509")];
    args.extend(ec);
    args.extend([
        os("-days"),
        os("2"),
        os("-subj"),
        os("/CN=cairn web_tls test CA"),
        os("-keyout"),
        ca_key.as_os_str(),
        os("-out"),
        ca.as_os_str(),
    ]);
    openssl(&args);
    let mut args = vec![os("req")];
    args.extend(ec);
    args.extend([
        os("-subj"),
        os("/CN=127.0.0.1"),
        os("-keyout"),
        key.as_os_str(),
        os("-out"),
        csr.as_os_str(),
    ]);
    openssl(&args);
    openssl(&[
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
    (ca, cert, key)
}

fn add_admin(env: &Env) {
    let store = cairn::state::open_path(&env.path("cairn-state.db")).unwrap();
    let added = store
        .add_user(&User {
            name: "ann".into(),
            role: Role::Admin,
            password_hash: cairn::auth::password::hash(PASSWORD).unwrap(),
            created_at: jiff::Timestamp::now(),
        })
        .unwrap();
    assert!(added);
}

/// An env with a job and an admin, and a daemon serving TLS on `port`.
fn tls_daemon(env: &Env, port: u16) -> (Daemon, PathBuf) {
    common::create_sample_db(&env.path("app.db"), 5);
    let (ca, cert, key) = certificates(env.dir.path());
    env.write_config(&format!(
        "[daemon]\nlisten = \"127.0.0.1:{port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\n\
         [destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n\
         [jobs.app]\nsource = {{ kind = \"sqlite\", path = \"app.db\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\n",
        cert.display(),
        key.display()
    ));
    add_admin(env);
    let child = env
        .cairn_process()
        .arg("daemon")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the daemon does not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    (daemon, ca)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A client that trusts only the test's CA and follows no redirects.
fn client(ca: &Path) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[test]
fn https_login_sets_a_secure_cookie_that_opens_the_dashboard() {
    let env = Env::new();
    let port = closed_port();
    let (_daemon, ca) = tls_daemon(&env, port);
    let base = format!("https://127.0.0.1:{port}");
    let client = client(&ca);
    runtime().block_on(async {
        let login_page = client.get(format!("{base}/login")).send().await.unwrap();
        assert_eq!(login_page.status(), 200);
        let html = login_page.text().await.unwrap();
        assert!(html.contains("<form"), "{html}");

        let answer = client
            .post(format!("{base}/api/v1/session"))
            .header("Origin", &base)
            .header("Content-Type", "application/json")
            .body(serde_json::json!({"user": "ann", "password": PASSWORD}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let cookie = answer
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .expect("a session cookie")
            .to_string();
        let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
        for attribute in ["Secure", "HttpOnly", "SameSite=Strict"] {
            assert!(attributes.contains(&attribute), "{cookie}");
        }
        let session = attributes[0];
        assert!(session.starts_with("cairn_session="), "{cookie}");

        let dashboard = client
            .get(format!("{base}/"))
            .header("Cookie", session)
            .send()
            .await
            .unwrap();
        assert_eq!(dashboard.status(), 200);
        let html = dashboard.text().await.unwrap();
        assert!(html.contains("app"), "the dashboard lists the job: {html}");

        let jobs = client
            .get(format!("{base}/api/v1/jobs"))
            .header("Cookie", session)
            .send()
            .await
            .unwrap();
        assert_eq!(jobs.status(), 200);
        let jobs: serde_json::Value = serde_json::from_str(&jobs.text().await.unwrap()).unwrap();
        assert_eq!(jobs[0]["job"], "app", "{jobs}");

        // Without the cookie the API still says 401 over TLS.
        let anonymous = client
            .get(format!("{base}/api/v1/jobs"))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401);
    });
}

#[test]
fn plain_http_to_the_tls_port_gets_no_http_answer() {
    let env = Env::new();
    let port = closed_port();
    let (_daemon, ca) = tls_daemon(&env, port);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(
            format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let mut answer = Vec::new();
    // The server closes (or resets) the connection after a failed handshake.
    let _ = stream.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP was answered: {}",
        String::from_utf8_lossy(&answer)
    );
    // The same port still serves HTTPS afterwards.
    let client = client(&ca);
    let status = runtime().block_on(async {
        client
            .get(format!("https://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
}
