//! The OpenAPI document checked against the live API (issue 13): schemathesis
//! (PyPI, installed by scripts/install-test-deps into the project's tool
//! folder) generates requests from `/api/v1/openapi.json` of a running daemon
//! and checks that no answer is a 5xx and that every status, content type and
//! body is the one the document describes. It works as an admin token on a
//! throwaway env, so the runs, pauses, schedules and prunes it starts touch
//! nothing of anyone's.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn::state::{Role, User};
use common::receivers::closed_port;
use common::{Env, stderr, stdout};

/// The most test cases per operation.
const MAX_EXAMPLES: &str = "25";
/// The time budget of the whole run, in seconds: fuzzing repeats until it is
/// spent (some 5,000 requests on a busy two-core machine).
const MAX_TIME: &str = "120";

/// A daemon process, killed when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `st` from the project's tool folder (never a system-wide one).
fn schemathesis() -> PathBuf {
    let root = std::env::var_os("CAIRN_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/cairn-tools")))
        .expect("CAIRN_TOOLS_DIR or HOME");
    let st = root.join("venv/bin/st");
    assert!(
        st.is_file(),
        "schemathesis is not installed at {}: run scripts/install-test-deps",
        st.display()
    );
    st
}

const JOBS: &str = "\
[jobs.app]
source = { kind = \"sqlite\", path = \"app.db\" }
destinations = [\"local\"]
encryption = { kind = \"none\" }
retention = { keep_last = 3 }

[jobs.notes]
source = { kind = \"sqlite\", path = \"notes.db\" }
destinations = [\"local\"]
encryption = { kind = \"none\" }
";

fn start_daemon(env: &Env, port: u16) -> Daemon {
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
    daemon
}

fn healthz(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let request =
        format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

#[test]
fn schemathesis_finds_no_5xx_and_no_answer_outside_the_document() {
    let st = schemathesis();
    let env = Env::new();
    common::create_sample_db(&env.path("app.db"), 20);
    common::create_sample_db(&env.path("notes.db"), 5);
    let port = closed_port();
    env.write_config(&format!(
        "[daemon]\nlisten = \"127.0.0.1:{port}\"\n\n[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n{JOBS}\n\
         [checks.disk]\nkind = \"disk\"\npath = \".\"\nmin_free_percent = 0.001\ninterval = \"1h\"\n"
    ));
    env.backup("app");
    env.backup("notes");
    // Users exist, so the API is open to valid credentials.
    let store = cairn::state::open_path(&env.path("cairn-state.db")).unwrap();
    assert!(
        store
            .add_user(&User {
                name: "ann".into(),
                role: Role::Admin,
                password_hash: cairn::auth::password::hash("a long enough password").unwrap(),
                created_at: jiff::Timestamp::now(),
            })
            .unwrap()
    );
    drop(store);
    let created = env
        .cairn()
        .args([
            "token",
            "create",
            "schemathesis",
            "--role",
            "admin",
            "--expires",
            "1d",
        ])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", stderr(&created));
    let token = stdout(&created).trim().to_string();
    assert!(!token.is_empty());
    let _daemon = start_daemon(&env, port);

    let base = format!("http://127.0.0.1:{port}");
    let report = env.path("schemathesis-report");
    let out = Command::new(&st)
        .current_dir(env.dir.path())
        .env("NO_COLOR", "1")
        .arg("--no-color")
        .arg("run")
        .arg(format!("{base}/api/v1/openapi.json"))
        .args(["--url", &base])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        // An event stream never ends: no generated request can finish on it.
        .args(["--exclude-path", "/api/v1/events"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", MAX_EXAMPLES, "--max-time", MAX_TIME])
        // One worker: hypothesis describes its filters by parsing source,
        // which CPython 3.11 does not do safely from several threads.
        .args(["--workers", "1"])
        .args(["--request-timeout", "60", "--generation-database", "none"])
        .args(["--report", "junit", "--report-dir"])
        .arg(&report)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    println!("{text}");
    assert!(
        out.status.success(),
        "schemathesis found failures (exit {:?}):\n{text}",
        out.status.code()
    );
    // It really tested every operation but the event stream, with requests.
    let operations = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Tested:"))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .unwrap_or(0);
    assert!(operations >= 16, "tested {operations} operations:\n{text}");
    assert!(text.contains("passed"), "{text}");
    assert!(healthz(port), "the daemon did not survive:\n{text}");
}
