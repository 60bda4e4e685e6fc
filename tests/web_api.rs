//! The REST API of a running `cairn daemon` (issue 13): every endpoint for
//! every kind of caller, CSRF, the login limit, runs started through the
//! daemon, downloads equal to `cairn cat`, the audit trail, and the
//! OpenAPI document checked against the live API by schemathesis.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use cairn::state::{ApiToken, Role, StateStore, User};
use common::receivers::closed_port;
use common::{Env, flip_byte, stderr};

/// A daemon process, killed when dropped.
struct Daemon {
    child: Child,
    port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_string()
    }
}

/// Who sends a request.
#[derive(Clone, Default)]
struct As {
    bearer: Option<String>,
    cookie: Option<String>,
    csrf: Option<String>,
    origin: Option<String>,
}

impl As {
    fn nobody() -> As {
        As::default()
    }
    fn token(secret: &str) -> As {
        As {
            bearer: Some(secret.to_string()),
            ..As::default()
        }
    }
}

/// (method, path, body, viewer's status, operator's, admin's)
type Expected<'a> = (&'a str, &'a str, Option<&'a str>, u16, u16, u16);

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..end]).unwrap_or("0");
        let n =
            usize::from_str_radix(size.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&body[start..start + n]);
        body = &body[start + n + 2..];
    }
    out
}

impl Daemon {
    /// One HTTP/1.1 request; `body_limit` stops reading early (event streams).
    fn send(&self, method: &str, path: &str, who: &As, body: Option<&str>) -> Response {
        self.request(method, path, who, body, &[], false)
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        who: &As,
        body: Option<&str>,
        extra: &[(&str, &str)],
        head_only: bool,
    ) -> Response {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        let host = format!("127.0.0.1:{}", self.port);
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
        if let Some(token) = &who.bearer {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if let Some(cookie) = &who.cookie {
            request.push_str(&format!("Cookie: cairn_session={cookie}\r\n"));
        }
        if let Some(csrf) = &who.csrf {
            request.push_str(&format!("X-CSRF-Token: {csrf}\r\n"));
        }
        if let Some(origin) = &who.origin {
            request.push_str(&format!("Origin: {origin}\r\n"));
        }
        for (k, v) in extra {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = body.unwrap_or("");
        let typed = extra
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if typed {
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        } else if !body.is_empty() || matches!(method, "POST" | "PUT") {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).unwrap();
        let mut raw = Vec::new();
        if head_only {
            let mut buf = [0u8; 4096];
            while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                raw.extend_from_slice(&buf[..n]);
            }
        } else {
            stream.read_to_end(&mut raw).unwrap();
        }
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP answer");
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        if headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
        }) && !head_only
        {
            body = dechunk(&body);
        }
        Response {
            status,
            headers,
            body,
        }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Signs in; the caller as a browser would be (cookie, CSRF token, Origin).
    fn login(&self, user: &str, password: &str) -> As {
        let r = self.send(
            "POST",
            "/api/v1/session",
            &As {
                origin: Some(self.origin()),
                ..As::default()
            },
            Some(&serde_json::json!({"user": user, "password": password}).to_string()),
        );
        assert_eq!(
            r.status,
            200,
            "login {user}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let cookie = r
            .header("set-cookie")
            .expect("a session cookie")
            .to_string();
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
        let value = cookie
            .split(';')
            .next()
            .and_then(|c| c.strip_prefix("cairn_session="))
            .expect("cairn_session=")
            .to_string();
        As {
            bearer: None,
            cookie: Some(value),
            csrf: Some(r.json()["csrf"].as_str().expect("csrf").to_string()),
            origin: Some(self.origin()),
        }
    }
}

fn start_daemon(env: &Env, port: u16) -> Daemon {
    let child = env
        .cairn_process()
        .arg("daemon")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon { child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return daemon;
        }
        assert!(Instant::now() < deadline, "the daemon does not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn store(env: &Env) -> Box<dyn StateStore> {
    cairn::state::open_path(&env.path("cairn-state.db")).unwrap()
}

fn add_user(env: &Env, name: &str, role: Role, password: &str) {
    let hash = cairn::auth::password::hash(password).unwrap();
    assert!(
        store(env)
            .add_user(&User {
                name: name.into(),
                role,
                password_hash: hash,
                created_at: jiff::Timestamp::now(),
            })
            .unwrap()
    );
}

/// A token as `cairn token create` makes it: only its SHA-256 is stored.
fn add_token(env: &Env, name: &str, role: Role, expired: bool, revoked: bool) -> String {
    let secret = format!("cairn_test_{name}_{}", std::process::id());
    let now = jiff::Timestamp::now();
    let hour = jiff::SignedDuration::from_secs(3600);
    let store = store(env);
    assert!(
        store
            .add_token(&ApiToken {
                name: name.into(),
                hash: cairn::auth::secret::sha256_hex(&secret),
                role,
                jobs: Vec::new(),
                created_at: now - hour,
                expires_at: Some(if expired { now - hour } else { now + hour }),
                last_used_at: None,
                revoked_at: None,
            })
            .unwrap()
    );
    if revoked {
        assert!(store.revoke_token(name, now).unwrap());
    }
    secret
}

const PASSWORD: &str = "correct horse battery staple";

fn config(port: u16, jobs: &str) -> String {
    config_with(port, "", jobs)
}

/// `daemon` goes into `[daemon]` after `listen`.
fn config_with(port: u16, daemon: &str, jobs: &str) -> String {
    format!(
        "[daemon]\nlisten = \"127.0.0.1:{port}\"\n{daemon}\n[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n{jobs}\n[checks.disk]\nkind = \"disk\"\npath = \".\"\nmin_free_percent = 0.001\ninterval = \"1h\"\n"
    )
}

const SQLITE_JOB: &str = "[jobs.app]\nsource = { kind = \"sqlite\", path = \"app.db\" }\ndestinations = [\"local\"]\nencryption = { kind = \"none\" }\n";

fn audit_actions(env: &Env) -> Vec<(String, String, String, String)> {
    store(env)
        .audit_after(0, 10_000)
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.entry.actor,
                e.entry.action,
                e.entry.target,
                e.entry.result,
            )
        })
        .collect()
}

/// An env with a backed-up job `app`, a check, three users, tokens for each
/// role and an expired and a revoked one, and a daemon serving it.
struct Fixture {
    env: Env,
    daemon: Daemon,
    viewer: String,
    operator: String,
    admin: String,
    expired: String,
    revoked: String,
    artifact: String,
}

fn fixture(jobs: &str) -> Fixture {
    fixture_with("", jobs)
}

/// A fixture whose `[daemon]` also holds `daemon`.
fn fixture_with(daemon: &str, jobs: &str) -> Fixture {
    let env = Env::new();
    common::create_sample_db(&env.path("app.db"), 20);
    let port = closed_port();
    env.write_config(&config_with(port, daemon, jobs));
    let artifact = env.backup("app")["id"].as_str().unwrap().to_string();
    add_user(&env, "ann", Role::Admin, PASSWORD);
    add_user(&env, "otto", Role::Operator, PASSWORD);
    add_user(&env, "vera", Role::Viewer, PASSWORD);
    let viewer = add_token(&env, "ci-viewer", Role::Viewer, false, false);
    let operator = add_token(&env, "ci-operator", Role::Operator, false, false);
    let admin = add_token(&env, "ci-admin", Role::Admin, false, false);
    let expired = add_token(&env, "old", Role::Admin, true, false);
    let revoked = add_token(&env, "gone", Role::Admin, false, true);
    let daemon = start_daemon(&env, port);
    Fixture {
        env,
        daemon,
        viewer,
        operator,
        admin,
        expired,
        revoked,
        artifact,
    }
}

#[test]
fn before_the_first_user_everything_but_healthz_is_401() {
    let env = Env::new();
    common::create_sample_db(&env.path("app.db"), 5);
    let port = closed_port();
    env.write_config(&config(port, SQLITE_JOB));
    let daemon = start_daemon(&env, port);
    let healthz = daemon.send("GET", "/healthz", &As::nobody(), None);
    assert_eq!(healthz.status, 200);
    for (method, path, body) in [
        ("GET", "/api/v1/jobs", None),
        ("GET", "/api/v1/runs", None),
        (
            "POST",
            "/api/v1/jobs/app/runs",
            Some(r#"{"kind":"backup","dry_run":false}"#),
        ),
        (
            "POST",
            "/api/v1/session",
            Some(r#"{"user":"admin","password":"admin"}"#),
        ),
    ] {
        let r = daemon.send(method, path, &As::nobody(), body);
        assert_eq!(r.status, 401, "{method} {path}");
        assert_eq!(r.code(), "unauthorized");
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .contains("cairn user add"),
            "{}",
            r.json()
        );
    }
    // With a token but no user, still nothing: the first user comes first.
    let token = add_token(&env, "early", Role::Admin, false, false);
    assert_eq!(
        daemon
            .send("GET", "/api/v1/jobs", &As::token(&token), None)
            .status,
        401
    );
}

#[test]
fn every_endpoint_answers_each_kind_of_caller_with_the_exact_status() {
    let f = fixture(SQLITE_JOB);
    let d = &f.daemon;
    let admin_session = d.login("ann", PASSWORD);
    let ended = d.login("ann", PASSWORD);
    assert_eq!(
        d.send("DELETE", "/api/v1/session", &ended, None).status,
        204
    );
    let run_id = store(&f.env).runs(&Default::default()).unwrap()[0].id;
    let data = format!("/api/v1/jobs/app/artifacts/{}/data", f.artifact);
    let run = format!("/api/v1/runs/{run_id}");
    let schedule = r#"{"mode":"cron","cron":"0 3 * * *"}"#;
    let prune_plan = r#"{"kind":"prune","dry_run":true}"#;
    let restore_plan_path = "/api/v1/jobs/app/restore".to_string();
    let restore_plan = serde_json::json!({"artifact": f.artifact, "dry_run": true}).to_string();
    // (method, path, body, viewer, operator, admin)
    let table: Vec<Expected> = vec![
        ("GET", "/api/v1/jobs", None, 200, 200, 200),
        ("GET", "/api/v1/jobs/app", None, 200, 200, 200),
        ("GET", "/api/v1/jobs/app/artifacts", None, 200, 200, 200),
        (
            "GET",
            "/api/v1/runs?job=app&kind=backup&limit=5",
            None,
            200,
            200,
            200,
        ),
        ("GET", &run, None, 200, 200, 200),
        ("GET", "/api/v1/checks", None, 200, 200, 200),
        ("GET", "/api/v1/audit", None, 403, 403, 200),
        ("GET", &data, None, 403, 403, 200),
        ("POST", "/api/v1/jobs/app/pause", None, 403, 200, 200),
        ("POST", "/api/v1/jobs/app/resume", None, 403, 200, 200),
        (
            "PUT",
            "/api/v1/jobs/app/schedule",
            Some(schedule),
            403,
            200,
            200,
        ),
        ("DELETE", "/api/v1/jobs/app/schedule", None, 403, 200, 200),
        (
            "POST",
            "/api/v1/jobs/app/runs",
            Some(prune_plan),
            403,
            200,
            200,
        ),
        (
            "POST",
            "/api/v1/jobs/app/runs",
            Some(r#"{"kind":"prune","dry_run":false}"#),
            403,
            403,
            0,
        ),
        (
            "POST",
            "/api/v1/jobs/app/runs",
            Some(r#"{"kind":"backup","dry_run":false}"#),
            403,
            0,
            0,
        ),
        ("POST", "/api/v1/checks/disk/runs", None, 403, 0, 0),
        (
            "POST",
            &restore_plan_path,
            Some(restore_plan.as_str()),
            403,
            403,
            200,
        ),
        (
            "POST",
            "/api/v1/notifications/nowhere/test",
            None,
            403,
            404,
            404,
        ),
    ];
    let denied = [
        ("no credentials", As::nobody()),
        ("expired token", As::token(&f.expired)),
        ("revoked token", As::token(&f.revoked)),
        ("logged-out session", ended.clone()),
        ("unknown token", As::token("cairn_not_a_token")),
    ];
    for (method, path, body, viewer, operator, admin) in &table {
        for (who, caller) in &denied {
            let r = d.send(method, path, caller, *body);
            assert_eq!(r.status, 401, "{method} {path} with {who}");
            assert_eq!(r.code(), "unauthorized", "{method} {path} with {who}");
        }
        for (who, caller, expected) in [
            ("viewer", As::token(&f.viewer), viewer),
            ("operator", As::token(&f.operator), operator),
            ("admin", As::token(&f.admin), admin),
            ("admin session", admin_session.clone(), admin),
        ] {
            if *expected == 0 {
                continue; // Starts a run: covered by the run tests.
            }
            let r = d.send(method, path, &caller, *body);
            assert_eq!(
                r.status,
                *expected,
                "{method} {path} as {who}: {}",
                String::from_utf8_lossy(&r.body)
            );
            if *expected == 403 {
                assert_eq!(r.code(), "forbidden");
            }
        }
    }
    // The event stream: the same rule, read up to its headers.
    for (caller, expected) in [
        (As::nobody(), 401),
        (As::token(&f.revoked), 401),
        (As::token(&f.viewer), 200),
    ] {
        let r = d.request("GET", "/api/v1/events", &caller, None, &[], true);
        assert_eq!(r.status, expected);
    }
    assert_eq!(
        d.send("GET", "/api/v1/jobs/nope", &As::token(&f.viewer), None)
            .status,
        404
    );
    assert_eq!(
        d.send("GET", "/api/v1/runs/999999", &As::token(&f.viewer), None)
            .status,
        404
    );
    assert_eq!(
        d.send("GET", "/api/v1/nothing", &As::token(&f.viewer), None)
            .code(),
        "not_found"
    );
    // What the table changed is in the audit log, by who did it.
    let audit = audit_actions(&f.env);
    for (actor, action) in [
        ("token:ci-operator", "job.pause"),
        ("token:ci-operator", "job.resume"),
        ("token:ci-operator", "schedule.set"),
        ("token:ci-admin", "schedule.clear"),
        ("token:ci-admin", "download"),
        ("user:ann", "login"),
        ("user:ann", "logout"),
        ("user:ann", "download"),
    ] {
        assert!(
            audit
                .iter()
                .any(|(a, act, _, r)| a == actor && act == action && r.starts_with("ok")),
            "no {actor} {action} in {audit:?}"
        );
    }
}

#[test]
fn cookie_changes_need_the_csrf_token_and_the_same_origin() {
    let f = fixture(SQLITE_JOB);
    let d = &f.daemon;
    let session = d.login("otto", PASSWORD);
    let no_token = As {
        csrf: None,
        ..session.clone()
    };
    let wrong_token = As {
        csrf: Some("forged".into()),
        ..session.clone()
    };
    let foreign = As {
        origin: Some("https://evil.example".into()),
        ..session.clone()
    };
    let no_origin = As {
        origin: None,
        ..session.clone()
    };
    for (who, caller) in [
        ("no CSRF token", no_token),
        ("a wrong CSRF token", wrong_token),
        ("a foreign Origin", foreign),
        ("no Origin", no_origin),
    ] {
        let r = d.send("POST", "/api/v1/jobs/app/pause", &caller, None);
        assert_eq!(r.status, 403, "{who}");
        assert_eq!(r.code(), "csrf", "{who}");
        assert!(
            !store(&f.env).paused_jobs().unwrap().contains("app"),
            "{who} paused the job"
        );
    }
    // Reading needs no token; a bearer request needs neither.
    assert_eq!(
        d.send(
            "GET",
            "/api/v1/jobs",
            &As {
                csrf: None,
                origin: None,
                ..session.clone()
            },
            None
        )
        .status,
        200
    );
    assert_eq!(
        d.send("POST", "/api/v1/jobs/app/pause", &session, None)
            .status,
        200
    );
    assert!(store(&f.env).paused_jobs().unwrap().contains("app"));
    assert_eq!(
        d.send(
            "POST",
            "/api/v1/jobs/app/resume",
            &As::token(&f.operator),
            None
        )
        .status,
        200
    );
    // A login from a foreign page is refused too.
    let r = d.send(
        "POST",
        "/api/v1/session",
        &As {
            origin: Some("https://evil.example".into()),
            ..As::default()
        },
        Some(&serde_json::json!({"user": "otto", "password": PASSWORD}).to_string()),
    );
    assert_eq!(r.status, 403);
}

#[test]
fn failed_logins_are_limited_and_audited() {
    let f = fixture(SQLITE_JOB);
    let d = &f.daemon;
    let wrong = serde_json::json!({"user": "vera", "password": "not the password"}).to_string();
    let mut limited = None;
    for attempt in 1..=12 {
        let r = d.send("POST", "/api/v1/session", &As::nobody(), Some(&wrong));
        if r.status == 429 {
            limited = Some((attempt, r));
            break;
        }
        assert_eq!(r.status, 401, "attempt {attempt}");
    }
    let (attempt, r) = limited.expect("no 429 after 12 failed logins");
    assert!(attempt > 3, "limited after {attempt}");
    assert_eq!(r.code(), "rate_limited");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(retry > 0);
    // Locked: even the right password waits.
    let right = serde_json::json!({"user": "vera", "password": PASSWORD}).to_string();
    assert_eq!(
        d.send("POST", "/api/v1/session", &As::nobody(), Some(&right))
            .status,
        429
    );
    // Another user from another … the same address is locked as well; a token still works.
    assert_eq!(
        d.send("GET", "/api/v1/jobs", &As::token(&f.viewer), None)
            .status,
        200
    );
    let audit = audit_actions(&f.env);
    let failed = audit
        .iter()
        .filter(|(a, act, _, r)| a == "user:vera" && act == "login" && r == "failed")
        .count();
    assert_eq!(failed, attempt - 1, "{audit:?}");
    assert!(
        !serde_json::to_string(&audit)
            .unwrap()
            .contains("not the password")
    );
}

#[test]
fn runs_started_through_the_api_are_the_daemons_children() {
    let job = format!(
        "{SQLITE_JOB}\n[jobs.slow]\nsource = {{ kind = \"command\", backup = [\"sh\", \"-c\", \"head -c 4096 /dev/urandom; sleep 3\"] }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\n"
    );
    let f = fixture(&job);
    let d = &f.daemon;
    let operator = As::token(&f.operator);
    let backup = r#"{"kind":"backup","dry_run":false}"#;
    // ?wait: answers when the run ends.
    let r = d.send(
        "POST",
        "/api/v1/jobs/app/runs?wait=60",
        &operator,
        Some(backup),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["status"], "success");
    let run_id = r.json()["run_id"].as_i64().unwrap();
    let run = d
        .send("GET", &format!("/api/v1/runs/{run_id}"), &operator, None)
        .json();
    assert_eq!(run["status"], "success");
    assert_eq!(run["trigger"], "manual");
    assert_eq!(run["kind"], "backup");
    assert!(run["log"].is_string(), "{run}");
    assert_ne!(
        run["pid"].as_u64().unwrap(),
        u64::from(d.child.id()),
        "a child, not the daemon"
    );
    assert_eq!(f.env.list().iter().filter(|e| e["job"] == "app").count(), 2);

    // 202 at once, then 409 while it runs.
    let r = d.send("POST", "/api/v1/jobs/slow/runs", &operator, Some(backup));
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let slow = r.json()["run_id"].as_i64().unwrap();
    let again = d.send(
        "POST",
        "/api/v1/jobs/slow/runs",
        &As::token(&f.admin),
        Some(backup),
    );
    assert_eq!(again.status, 409);
    assert_eq!(again.code(), "conflict");
    // A viewer cannot start runs.
    assert_eq!(
        d.send(
            "POST",
            "/api/v1/jobs/app/runs",
            &As::token(&f.viewer),
            Some(backup)
        )
        .status,
        403
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = d
            .send("GET", &format!("/api/v1/runs/{slow}"), &operator, None)
            .json()["status"]
            .clone();
        if status == "success" {
            break;
        }
        assert_eq!(status, "running");
        assert!(Instant::now() < deadline, "the slow run did not end");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A check, and a verify, the same way.
    let r = d.send("POST", "/api/v1/checks/disk/runs?wait=60", &operator, None);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = d.send(
        "POST",
        "/api/v1/jobs/app/runs?wait=60",
        &operator,
        Some(r#"{"kind":"verify","dry_run":false}"#),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["status"], "success");
    // Bad requests are JSON errors.
    for body in [
        r#"{"kind":"backup","dry_run":true}"#,
        r#"{"kind":"rm -rf /"}"#,
        "not json",
    ] {
        let r = d.send("POST", "/api/v1/jobs/app/runs", &operator, Some(body));
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(r.code(), "bad_request");
    }
    let audit = audit_actions(&f.env);
    for action in ["run.backup", "check.run", "run.verify"] {
        assert!(
            audit
                .iter()
                .any(|(a, act, _, r)| a == "token:ci-operator" && act == action && r == "ok"),
            "{action}: {audit:?}"
        );
    }
    assert!(audit.iter().any(|(a, act, t, r)| a == "token:ci-admin"
        && act == "run.backup"
        && t == "slow"
        && r.starts_with("refused")));
}

#[test]
fn downloads_stream_the_stored_bytes_and_the_plaintext_of_cairn_cat() {
    let env = Env::new();
    env.sqlite_age_setup(200);
    let port = closed_port();
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    env.write_config(&format!(
        "[daemon]\nlisten = \"127.0.0.1:{port}\"\n\n{text}"
    ));
    let entry = env.backup("app");
    let id = entry["id"].as_str().unwrap();
    add_user(&env, "ann", Role::Admin, PASSWORD);
    let admin = add_token(&env, "dl", Role::Admin, false, false);
    let operator = add_token(&env, "op", Role::Operator, false, false);
    let d = start_daemon(&env, port);
    let path = format!("/api/v1/jobs/app/artifacts/{id}/data");

    let stored = d.send("GET", &path, &As::token(&admin), None);
    assert_eq!(stored.status, 200);
    assert_eq!(
        stored.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(stored.body, std::fs::read(env.data_path(&entry)).unwrap());

    let cat = env.cairn().args(["cat", "app", id]).output().unwrap();
    assert!(cat.status.success(), "{}", stderr(&cat));
    let plain = d.send(
        "GET",
        &format!("{path}?plaintext=true&destination=local"),
        &As::token(&admin),
        None,
    );
    assert_eq!(plain.status, 200);
    assert_eq!(plain.body.len(), cat.stdout.len());
    assert!(
        plain.body == cat.stdout,
        "the plaintext differs from cairn cat"
    );

    assert_eq!(
        d.send("GET", &path, &As::token(&operator), None).status,
        403
    );
    assert_eq!(
        d.send(
            "GET",
            &format!("{path}?destination=elsewhere"),
            &As::token(&admin),
            None
        )
        .status,
        404
    );
    assert_eq!(
        d.send(
            "GET",
            "/api/v1/jobs/app/artifacts/00000000T000000Z-none/data",
            &As::token(&admin),
            None
        )
        .status,
        404
    );
    let audit = audit_actions(&env);
    let downloads: Vec<_> = audit
        .iter()
        .filter(|(a, act, _, _)| a == "token:dl" && act == "download")
        .collect();
    assert!(
        downloads
            .iter()
            .any(|(_, _, t, r)| t == &format!("app/{id}") && r == "ok (stored)"),
        "{audit:?}"
    );
    assert!(
        downloads.iter().any(|(_, _, _, r)| r == "ok (plaintext)"),
        "{audit:?}"
    );
}

#[test]
fn a_damaged_artifact_downloads_cut_short_never_whole() {
    let env = Env::new();
    let port = closed_port();
    // Incompressible and several chunks long, so that damage in the middle
    // is found only after earlier chunks went out.
    let job = env.single_job_config(
        r#"{ kind = "command", backup = ["head", "-c", "2000000", "/dev/urandom"] }"#,
        r#"{ kind = "none" }"#,
    );
    env.write_config(&format!("[daemon]\nlisten = \"127.0.0.1:{port}\"\n\n{job}"));
    let entry = env.backup("app");
    let id = entry["id"].as_str().unwrap();
    add_user(&env, "ann", Role::Admin, PASSWORD);
    let admin = add_token(&env, "dl", Role::Admin, false, false);
    let stored = env.data_path(&entry);
    let stored_len = std::fs::metadata(&stored).unwrap().len() as usize;
    flip_byte(&stored);
    let d = start_daemon(&env, port);
    let path = format!("/api/v1/jobs/app/artifacts/{id}/data");

    for query in ["", "?plaintext=true"] {
        let got = d.send("GET", &format!("{path}{query}"), &As::token(&admin), None);
        assert_eq!(got.status, 200, "{query}");
        let whole = if query.is_empty() {
            stored_len
        } else {
            2_000_000
        };
        assert!(
            got.body.len() < whole,
            "{query}: a damaged artifact arrived whole ({} bytes)",
            got.body.len()
        );
    }
}

#[test]
fn events_carry_ids_and_resume_after_last_event_id() {
    let f = fixture(SQLITE_JOB);
    let d = &f.daemon;
    let first = store(&f.env).runs(&Default::default()).unwrap()[0].id;
    // A new run, then a stream resumed after the first one shows it.
    let r = d.send(
        "POST",
        "/api/v1/jobs/app/runs?wait=60",
        &As::token(&f.operator),
        Some(r#"{"kind":"backup","dry_run":false}"#),
    );
    assert_eq!(r.status, 200);
    let newer = r.json()["run_id"].as_i64().unwrap();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nLast-Event-ID: {first}\r\n\r\n",
        f.viewer
    )
    .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.contains(&format!("id: {newer}")) {
        assert!(
            Instant::now() < deadline,
            "no event of run {newer} in {seen}"
        );
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("text/event-stream"), "{seen}");
    assert!(seen.contains("event: run"), "{seen}");
    assert!(
        !seen.contains(&format!("id: {first}\n")),
        "resumed before Last-Event-ID: {seen}"
    );
}

#[test]
fn a_public_listener_without_tls_is_refused_by_check_and_the_daemon() {
    let env = Env::new();
    common::create_sample_db(&env.path("app.db"), 5);
    let port = closed_port();
    env.write_config(&format!(
        "[daemon]\nlisten = \"0.0.0.0:{port}\"\n\n[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n{SQLITE_JOB}"
    ));
    let check = env.cairn().arg("check").output().unwrap();
    assert_eq!(check.status.code(), Some(1));
    let out = String::from_utf8_lossy(&check.stdout);
    for key in ["tls_cert", "tls_key", "trusted_proxy"] {
        assert!(out.contains(key), "{out}");
    }
    let daemon = env
        .cairn()
        .arg("daemon")
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    assert_eq!(daemon.status.code(), Some(2), "{}", stderr(&daemon));
    assert!(
        stderr(&daemon).contains("trusted_proxy"),
        "{}",
        stderr(&daemon)
    );
    // Behind a trusted proxy it is accepted.
    env.write_config(&format!(
        "[daemon]\nlisten = \"0.0.0.0:{port}\"\ntrusted_proxy = \"127.0.0.1\"\n\n[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n{SQLITE_JOB}"
    ));
    let check = env.cairn().arg("check").output().unwrap();
    assert!(!String::from_utf8_lossy(&check.stdout).contains("daemon.listen"));
}

#[test]
fn metrics_need_the_bearer_token_of_metrics_token_file() {
    let env = Env::new();
    common::create_sample_db(&env.path("app.db"), 5);
    let port = closed_port();
    std::fs::write(env.path("metrics.token"), "scrape-secret\n").unwrap();
    env.write_config(&format!(
        "[daemon]\nlisten = \"127.0.0.1:{port}\"\nmetrics_token_file = \"metrics.token\"\n\n[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n{SQLITE_JOB}"
    ));
    let d = start_daemon(&env, port);
    assert_eq!(d.send("GET", "/metrics", &As::nobody(), None).status, 401);
    assert_eq!(
        d.send("GET", "/metrics", &As::token("wrong"), None).status,
        401
    );
    let r = d.send("GET", "/metrics", &As::token("scrape-secret"), None);
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("cairn_"));
}

#[test]
fn the_openapi_document_is_3_1_and_lists_every_endpoint() {
    let env = Env::new();
    let port = closed_port();
    common::create_sample_db(&env.path("app.db"), 5);
    env.write_config(&config(port, SQLITE_JOB));
    add_user(&env, "ann", Role::Admin, PASSWORD);
    let d = start_daemon(&env, port);
    let doc = d.send("GET", "/api/v1/openapi.json", &As::nobody(), None);
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/api/v1/jobs",
        "/api/v1/jobs/{job}",
        "/api/v1/jobs/{job}/artifacts",
        "/api/v1/jobs/{job}/runs",
        "/api/v1/runs",
        "/api/v1/runs/{run_id}",
        "/api/v1/jobs/{job}/artifacts/{id}/data",
        "/api/v1/jobs/{job}/pause",
        "/api/v1/jobs/{job}/resume",
        "/api/v1/jobs/{job}/schedule",
        "/api/v1/checks",
        "/api/v1/checks/{check}/runs",
        "/api/v1/events",
        "/api/v1/audit",
        "/api/v1/session",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
}

/// What `cairn cat JOB ID` writes: the artifact's content.
fn cat(env: &Env, job: &str, id: &str) -> Vec<u8> {
    let out = env.cairn().args(["cat", job, id]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    out.stdout
}

/// Every file below `dir`, recursively.
fn files_below(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                found.extend(files_below(&path));
            } else {
                found.push(path);
            }
        }
    }
    found
}

fn safety_copies(env: &Env) -> Vec<std::path::PathBuf> {
    files_below(&env.path("."))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".cairn-safety-"))
        .collect()
}

fn add_rows(db: &std::path::Path) {
    let connection = rusqlite::Connection::open(db).unwrap();
    connection
        .execute_batch("CREATE TABLE later (x INTEGER); INSERT INTO later VALUES (1), (2), (3);")
        .unwrap();
}

#[test]
fn restore_from_the_api_plans_first_needs_the_job_name_and_restores_the_artifact() {
    let f = fixture_with("restore_root = \"restored\"\n", SQLITE_JOB);
    let d = &f.daemon;
    let env = &f.env;
    std::fs::create_dir(env.path("restored")).unwrap();
    let content = cat(env, "app", &f.artifact);
    let path = "/api/v1/jobs/app/restore";
    let plan = serde_json::json!({"artifact": f.artifact, "dry_run": true}).to_string();
    let real =
        serde_json::json!({"artifact": f.artifact, "dry_run": false, "confirm": "app"}).to_string();

    // Only admins restore, and only admins see the plan.
    for who in [&f.viewer, &f.operator] {
        for body in [&plan, &real] {
            let r = d.send("POST", path, &As::token(who), Some(body));
            assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
            assert_eq!(r.code(), "forbidden");
        }
    }

    // The application wrote more since the backup.
    add_rows(&env.path("app.db"));
    let current = std::fs::read(env.path("app.db")).unwrap();
    let admin = As::token(&f.admin);

    // The dry run answers the plan and writes nothing.
    let r = d.send("POST", path, &admin, Some(&plan));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let answer = r.json();
    assert_eq!(answer["artifact"], f.artifact.as_str());
    assert_eq!(answer["destination"], "local");
    assert!(
        answer["target"].as_str().unwrap().ends_with("/app.db"),
        "{answer}"
    );
    let safety = answer["safety_copy"]
        .as_str()
        .expect("the planned safety copy");
    assert!(safety.contains("app.db.cairn-safety-"), "{answer}");
    let actions = answer["actions"].to_string();
    assert!(actions.contains("would write"), "{answer}");
    assert_eq!(std::fs::read(env.path("app.db")).unwrap(), current);
    assert!(safety_copies(env).is_empty());

    // Without the typed job name (or with another) nothing happens.
    for confirm in [None, Some("App"), Some("ap"), Some("")] {
        let mut body = serde_json::json!({"artifact": f.artifact, "dry_run": false});
        if let Some(c) = confirm {
            body["confirm"] = c.into();
        }
        let r = d.send("POST", path, &admin, Some(&body.to_string()));
        assert_eq!(r.status, 400, "confirm {confirm:?}");
        assert_eq!(r.code(), "bad_request");
        assert!(r.json()["message"].as_str().unwrap().contains("confirm"));
    }
    assert_eq!(std::fs::read(env.path("app.db")).unwrap(), current);
    assert!(safety_copies(env).is_empty());
    let restores = |env: &Env| {
        store(env)
            .runs(&cairn::state::RunFilter {
                job: Some("app".into()),
                kind: Some(cairn::state::RunKind::Restore),
                ..Default::default()
            })
            .unwrap()
    };
    assert!(restores(env).is_empty(), "a refused restore was recorded");

    // Confirmed: a run, into the job's own source, the old content kept.
    let r = d.send("POST", &format!("{path}?wait=120"), &admin, Some(&real));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["status"], "success", "{}", r.json());
    let run_id = r.json()["run_id"].as_i64().unwrap();
    assert_eq!(std::fs::read(env.path("app.db")).unwrap(), content);
    let kept = safety_copies(env);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), current);
    let run = d
        .send("GET", &format!("/api/v1/runs/{run_id}"), &admin, None)
        .json();
    assert_eq!(run["kind"], "restore");
    assert_eq!(run["status"], "success");
    assert!(
        run["log"].as_str().unwrap().contains("restore of `app`"),
        "{run}"
    );

    // Under restore_root, by a path relative to it, with the full check.
    let r = d.send(
        "POST",
        &format!("{path}?wait=120"),
        &admin,
        Some(
            &serde_json::json!({"artifact": f.artifact, "dry_run": false, "confirm": "app",
                "target": "copy.db", "destination": "local", "check": "full"})
            .to_string(),
        ),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["status"], "success");
    let run_id = r.json()["run_id"].as_i64().unwrap();
    let run = d
        .send("GET", &format!("/api/v1/runs/{run_id}"), &admin, None)
        .json();
    assert!(
        run.to_string().contains("PRAGMA foreign_key_check"),
        "{run}"
    );
    assert_eq!(
        std::fs::read(env.path("restored/copy.db")).unwrap(),
        content
    );
    assert_eq!(restores(env).len(), 2);

    let audit = audit_actions(env);
    assert_eq!(
        audit
            .iter()
            .filter(|(a, act, t, r)| a == "token:ci-admin"
                && act == "restore"
                && t == "app"
                && r == "ok")
            .count(),
        2,
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|(_, act, _, r)| act == "restore" && r.starts_with("refused")),
        "{audit:?}"
    );
}

#[test]
fn restore_targets_never_leave_restore_root() {
    let f = fixture_with("restore_root = \"restored\"\n", SQLITE_JOB);
    let d = &f.daemon;
    let env = &f.env;
    std::fs::create_dir(env.path("restored")).unwrap();
    std::fs::create_dir(env.path("outside")).unwrap();
    std::os::unix::fs::symlink(env.path("outside"), env.path("restored/out")).unwrap();
    std::os::unix::fs::symlink(env.path("outside/x.db"), env.path("restored/link.db")).unwrap();
    let absolute = env.path("absolute.db");
    let admin = As::token(&f.admin);
    for target in [
        "../x.db",
        "sub/../../x.db",
        absolute.to_str().unwrap(),
        "out/x.db",
        "link.db",
        "",
    ] {
        for dry_run in [true, false] {
            let body = serde_json::json!({"artifact": f.artifact, "dry_run": dry_run,
                "confirm": "app", "target": target});
            let r = d.send(
                "POST",
                "/api/v1/jobs/app/restore?wait=60",
                &admin,
                Some(&body.to_string()),
            );
            assert_eq!(
                r.status,
                400,
                "{target:?}: {}",
                String::from_utf8_lossy(&r.body)
            );
        }
    }
    assert!(files_below(&env.path("outside")).is_empty());
    assert!(!env.path("x.db").exists());
    assert!(!absolute.exists());
    assert!(
        files_below(&env.path("restored")).len() == 2,
        "only the two links"
    );
    // An unknown artifact or destination is refused as well.
    for body in [
        serde_json::json!({"artifact": "no-such-artifact", "dry_run": true}),
        serde_json::json!({"artifact": "../../etc", "dry_run": true}),
        serde_json::json!({"artifact": f.artifact, "dry_run": true, "destination": "elsewhere"}),
    ] {
        let r = d.send(
            "POST",
            "/api/v1/jobs/app/restore",
            &admin,
            Some(&body.to_string()),
        );
        assert!(matches!(r.status, 400 | 404), "{body}: {}", r.status);
    }
}

#[test]
fn without_restore_root_only_the_own_source_is_a_target() {
    let f = fixture(SQLITE_JOB);
    let body = serde_json::json!({"artifact": f.artifact, "dry_run": true, "target": "copy.db"});
    let r = f.daemon.send(
        "POST",
        "/api/v1/jobs/app/restore",
        &As::token(&f.admin),
        Some(&body.to_string()),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("restore_root")
    );
}

#[test]
fn send_test_delivers_through_the_real_channel() {
    let receiver = common::receivers::HttpReceiver::start();
    let job = format!(
        "{SQLITE_JOB}\n[notify.ops]\nkind = \"webhook\"\nurl = \"{}\"\n",
        receiver.url("/hooks/ops")
    );
    let f = fixture(&job);
    let d = &f.daemon;
    let r = d.send(
        "POST",
        "/api/v1/notifications/ops/test",
        &As::token(&f.viewer),
        None,
    );
    assert_eq!(r.status, 403);
    assert!(receiver.requests().is_empty());
    let session = d.login("otto", PASSWORD);
    let r = d.send("POST", "/api/v1/notifications/ops/test", &session, None);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["delivered"], true, "{}", r.json());
    assert_eq!(r.json()["kind"], "webhook");
    assert!(
        !String::from_utf8_lossy(&r.body).contains("/hooks/ops"),
        "the URL leaked"
    );
    let got = receiver.wait_for(1, Duration::from_secs(20));
    assert!(
        got[0]
            .text()
            .contains("test of the notification channel `ops`"),
        "{}",
        got[0].text()
    );
    assert!(
        audit_actions(&f.env)
            .iter()
            .any(|(a, act, t, r)| a == "user:otto"
                && act == "notify.test"
                && t == "ops"
                && r == "ok")
    );
}

#[test]
fn html_forms_carry_the_csrf_token_as_a_field() {
    let f = fixture(SQLITE_JOB);
    let d = &f.daemon;
    let session = d.login("otto", PASSWORD);
    let csrf = session.csrf.clone().unwrap();
    let browser = As {
        csrf: None,
        ..session.clone()
    };
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let paused = |env: &Env| store(env).paused_jobs().unwrap().contains("app");
    for (who, caller, body) in [
        ("no field", browser.clone(), "other=1".to_string()),
        ("a wrong field", browser.clone(), "csrf=forged".to_string()),
        (
            "a foreign Origin",
            As {
                origin: Some("https://evil.example".into()),
                ..browser.clone()
            },
            format!("csrf={csrf}"),
        ),
    ] {
        let r = d.request(
            "POST",
            "/api/v1/jobs/app/pause",
            &caller,
            Some(&body),
            &form,
            false,
        );
        assert_eq!(r.status, 403, "{who}");
        assert_eq!(r.code(), "csrf", "{who}");
        assert!(!paused(&f.env), "{who} paused the job");
    }
    let r = d.request(
        "POST",
        "/api/v1/jobs/app/pause",
        &browser,
        Some(&format!("csrf={csrf}")),
        &form,
        false,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(paused(&f.env));
    // A form with fields: the token is taken out, the rest is the request's body.
    let r = d.request(
        "PUT",
        "/api/v1/jobs/app/schedule",
        &browser,
        Some(&format!("csrf={csrf}&mode=cron&cron=0+4+*+*+*")),
        &form,
        false,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let overrides = store(&f.env).schedule_overrides().unwrap();
    assert!(
        format!("{:?}", overrides.get("app")).contains("0 4 * * *"),
        "{overrides:?}"
    );
    // A schedule that never fires, or with a field that matches nothing, is
    // refused as the CLI and the config refuse it; the override stays.
    for (cron, says) in [
        ("0+0+31+2+*", "never fires"),
        ("030+,+*+*+*", "empty list item"),
    ] {
        let r = d.request(
            "PUT",
            "/api/v1/jobs/app/schedule",
            &browser,
            Some(&format!("csrf={csrf}&mode=cron&cron={cron}")),
            &form,
            false,
        );
        assert_eq!(
            r.status,
            400,
            "{cron}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            String::from_utf8_lossy(&r.body).contains(says),
            "{cron}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let overrides = store(&f.env).schedule_overrides().unwrap();
    assert!(
        format!("{:?}", overrides.get("app")).contains("0 4 * * *"),
        "{overrides:?}"
    );
}

#[test]
fn a_running_runs_log_grows_before_it_ends() {
    let job = format!(
        "{SQLITE_JOB}\n[jobs.slow]\nsource = {{ kind = \"command\", backup = [\"sh\", \"-c\", \"sleep 8; echo data\"] }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\n"
    );
    let f = fixture(&job);
    let d = &f.daemon;
    let operator = As::token(&f.operator);
    let r = d.send(
        "POST",
        "/api/v1/jobs/slow/runs",
        &operator,
        Some(r#"{"kind":"backup","dry_run":false}"#),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let run_id = r.json()["run_id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen_running = loop {
        let run = d
            .send("GET", &format!("/api/v1/runs/{run_id}"), &operator, None)
            .json();
        let log = run["log"].as_str().unwrap_or_default().to_string();
        if run["status"] != "running" {
            break None;
        }
        if log.contains("backup of `slow` started") {
            break Some(log);
        }
        assert!(Instant::now() < deadline, "no log while running: {run}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        seen_running.is_some(),
        "the run ended before its log was shown"
    );
}
