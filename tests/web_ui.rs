//! The web UI in a real headless Chromium (Debian `chromium` + `chromium-driver`,
//! driven over WebDriver with fantoccini) against a real `cairn daemon`: the
//! setup page with no users, signing in, the dashboard, a backup run from the
//! button and watched until it ends without reloading, the new artifact,
//! pause and resume, a schedule override, a drill, a download as admin, a
//! viewer without buttons who gets 403 from the API, signing out. Each page
//! is screenshotted and checked with axe-core (no serious or critical
//! violations).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::receivers::closed_port;
use common::{Env, stderr};
use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(60);

/// A lookup that may succeed when tried again: the element was replaced by a
/// live refresh, or is not in the page yet.
fn is_transient(e: &CmdError) -> bool {
    e.is_stale_element_reference() || e.is_no_such_element()
}

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 32];
    let n = stream.read(&mut head).ok()?;
    String::from_utf8_lossy(&head[..n])
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn wait_for_port(port: u16, path: &str, what: &str) {
    let start = Instant::now();
    while http_status(port, path).is_none() {
        assert!(start.elapsed() < DEADLINE, "{what} did not start on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// chromedriver on a free port, and a fresh Chromium profile for the session.
fn chromedriver() -> (Reaped, u16) {
    common::require_tool("chromedriver");
    common::require_tool("chromium");
    let port = closed_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver");
    let child = Reaped(child);
    wait_for_port(port, "/status", "chromedriver");
    (child, port)
}

async fn browser(driver_port: u16, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.display()),
                "--window-size=1280,1000",
            ],
        }),
    );
    ClientBuilder::rustls()
        .expect("rustls")
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("a WebDriver session")
}

/// axe-core from the tools folder (scripts/install-test-deps installs it).
fn axe_source() -> String {
    let tools = std::env::var_os("CAIRN_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/cairn-tools")
        });
    let path = tools.join("npm/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "axe-core is not installed at {} ({e}): run scripts/install-test-deps",
            path.display()
        )
    })
}

struct Walk {
    client: Client,
    base: String,
    shots: PathBuf,
    axe: String,
    checked: Vec<String>,
}

impl Walk {
    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("url")
            .path()
            .to_string()
    }

    async fn text(&self) -> String {
        self.client
            .find(Locator::Css("body"))
            .await
            .expect("body")
            .text()
            .await
            .expect("text")
    }

    /// Polls `js` (an expression) until it is true.
    async fn until(&self, js: &str, what: &str) {
        let start = Instant::now();
        loop {
            let value = self
                .client
                .execute(&format!("return !!({js});"), vec![])
                .await
                .unwrap_or(Value::Bool(false));
            if value == Value::Bool(true) {
                return;
            }
            if start.elapsed() > DEADLINE {
                let body = self.text().await;
                panic!("{what}: not within {DEADLINE:?}; the page shows:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs `op` on a fresh lookup of `locator` until it succeeds. The job
    /// page re-renders its tables while a run is live, so an element found a
    /// moment ago may be replaced before it is used ("stale element"); a person
    /// would simply click the new one.
    async fn on_element<T>(
        &self,
        locator: Locator<'_>,
        what: &str,
        op: impl AsyncFn(Element) -> Result<T, CmdError>,
    ) -> T {
        let start = Instant::now();
        loop {
            let result = match self.client.find(locator).await {
                Ok(element) => op(element).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(value) => return value,
                Err(e) if start.elapsed() > DEADLINE || !is_transient(&e) => {
                    panic!("{what}: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn click(&self, css: &str) {
        self.on_element(Locator::Css(css), &format!("click {css}"), async |e| {
            e.click().await.map(drop)
        })
        .await;
    }

    /// The attribute `name` of the first element matching `css`.
    async fn attr_of(&self, css: &str, name: &str) -> Option<String> {
        self.on_element(Locator::Css(css), &format!("{name} of {css}"), async |e| {
            e.attr(name).await
        })
        .await
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("write screenshot");
    }

    /// axe-core in the page: no serious or critical violations.
    async fn accessible(&mut self, name: &str) {
        self.client
            .execute(&self.axe, vec![])
            .await
            .expect("inject axe-core");
        let result = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] })
                   .then(r => done(r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .map(v => ({ id: v.id, impact: v.impact, help: v.help,
                                  nodes: v.nodes.map(n => n.target.join(' ')) }))))
                   .catch(e => done([{ id: 'axe-error', help: String(e) }]));",
                vec![],
            )
            .await
            .expect("axe.run");
        assert_eq!(
            result,
            json!([]),
            "{name}: serious or critical accessibility violations"
        );
        self.checked.push(name.to_string());
    }

    /// A page: screenshot and accessibility check.
    async fn record(&mut self, name: &str) {
        self.screenshot(name).await;
        self.accessible(name).await;
    }

    /// `fetch` from the page (with its cookie and CSRF token); returns the status.
    async fn fetch_status(&self, method: &str, path: &str, body: Option<Value>) -> u64 {
        let result = self
            .client
            .execute_async(
                "const [method, path, body, done] = arguments;
                 const meta = document.querySelector('meta[name=\"csrf-token\"]');
                 const headers = { 'Content-Type': 'application/json' };
                 if (meta) headers['X-CSRF-Token'] = meta.content;
                 fetch(path, { method, headers, credentials: 'same-origin',
                               body: body === null ? undefined : JSON.stringify(body) })
                   .then(r => done(r.status), e => done(String(e)));",
                vec![json!(method), json!(path), body.unwrap_or(Value::Null)],
            )
            .await
            .expect("fetch");
        result
            .as_u64()
            .unwrap_or_else(|| panic!("fetch {path}: {result}"))
    }

    /// Types `keys` into the element with id `id`.
    async fn type_into(&self, id: &str, keys: &str) {
        self.on_element(Locator::Id(id), &format!("typing into #{id}"), async |e| {
            e.send_keys(keys).await
        })
        .await;
    }

    /// The text of the element with id `id`.
    async fn text_of(&self, id: &str) -> String {
        self.on_element(Locator::Id(id), &format!("text of #{id}"), async |e| {
            e.text().await
        })
        .await
    }

    async fn sign_in(&self, user: &str, password: &str) {
        self.goto("/login").await;
        self.sign_in_here(user, password).await;
    }

    async fn sign_in_here(&self, user: &str, password: &str) {
        let form = self
            .client
            .find(Locator::Id("login"))
            .await
            .expect("login form");
        form.find(Locator::Id("user"))
            .await
            .unwrap()
            .send_keys(user)
            .await
            .unwrap();
        form.find(Locator::Id("password"))
            .await
            .unwrap()
            .send_keys(password)
            .await
            .unwrap();
        self.click("#login button[type=submit]").await;
        self.until("location.pathname !== '/login'", "signed in")
            .await;
    }

    async fn sign_out(&self) {
        self.click("[data-logout]").await;
        self.until("location.pathname === '/login'", "signed out")
            .await;
    }
}

fn add_user(env: &Env, name: &str, role: &str, password: &str) {
    let out = env
        .cairn()
        .args(["user", "add", name, "--role", role, "--password-stdin"])
        .write_stdin(format!("{password}\n"))
        .output()
        .unwrap();
    assert!(out.status.success(), "user add {name}: {}", stderr(&out));
}

fn add_rows(db: &Path) {
    let connection = rusqlite::Connection::open(db).unwrap();
    connection
        .execute_batch("CREATE TABLE later (x INTEGER); INSERT INTO later VALUES (1);")
        .unwrap();
}

fn sha256_hex(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(std::fs::read(path).expect("artifact data")))
}

/// Where the screenshots go: `$CAIRN_SCREENSHOTS`, else `target/screenshots/`.
fn screenshots_dir() -> PathBuf {
    std::env::var_os("CAIRN_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
            tmp.parent()
                .map_or(tmp.clone(), Path::to_path_buf)
                .join("screenshots")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_walks_the_ui_in_chromium_from_setup_to_sign_out() {
    let env = Env::new();
    common::create_sample_db(&env.path("app.db"), 50);
    let port = closed_port();
    let receiver = common::receivers::HttpReceiver::start();
    let hook = receiver.url("/hooks/ops");
    env.write_config(&format!(
        "[daemon]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n\
         [jobs.app]\nsource = {{ kind = \"sqlite\", path = \"app.db\" }}\ndestinations = [\"local\"]\n\
         encryption = {{ kind = \"none\" }}\nschedules = [{{ cron = \"0 2 * * *\" }}]\n\
         drill = {{ scratch_dir = \"scratch\" }}\n\n\
         [jobs.slow]\nsource = {{ kind = \"command\", backup = [\"sh\", \"-c\", \"sleep 8; echo data\"] }}\n\
         destinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\n\n\
         [notify.ops]\nkind = \"webhook\"\nurl = \"{hook}\"\n\n\
         [checks.disk]\nkind = \"disk\"\npath = \".\"\nmin_free_percent = 0.001\ninterval = \"1h\"\n"
    ));
    let daemon = Reaped(
        env.cairn_process()
            .arg("daemon")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cairn daemon"),
    );
    wait_for_port(port, "/healthz", "the daemon");
    let (_driver, driver_port) = chromedriver();
    let profile = tempfile::tempdir().expect("profile dir");
    let shots = screenshots_dir();
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let mut walk = Walk {
        client: browser(driver_port, profile.path()).await,
        base: format!("http://127.0.0.1:{port}"),
        shots,
        axe: axe_source(),
        checked: Vec::new(),
    };

    // No user yet: every page is the setup page.
    for path in ["/", "/jobs/app", "/login", "/audit"] {
        walk.goto(path).await;
        let text = walk.text().await;
        assert!(
            text.contains("cairn user add NAME --role admin"),
            "{path} before any user:\n{text}"
        );
        assert!(
            walk.client
                .find_all(Locator::Css("#login, nav"))
                .await
                .unwrap()
                .is_empty(),
            "{path}: the setup page shows no form and no navigation"
        );
    }
    walk.record("setup").await;

    add_user(&env, "alice", "admin", "correct horse battery");
    add_user(&env, "victor", "viewer", "viewer password 1");

    // Signed out, a page sends the browser to the sign-in form.
    walk.goto("/jobs/app").await;
    assert_eq!(walk.path().await, "/login");
    walk.record("login").await;
    // A wrong password: an error that does not say which field was wrong.
    walk.type_into("user", "alice").await;
    walk.type_into("password", "wrong").await;
    walk.click("#login button[type=submit]").await;
    walk.until(
        "!document.getElementById('login-error').hidden",
        "the sign-in error",
    )
    .await;
    let error = walk.text_of("login-error").await;
    assert_eq!(
        error,
        "Sign-in failed: the user name or the password is wrong."
    );

    walk.goto("/jobs/app").await;
    walk.sign_in_here("alice", "correct horse battery").await;
    assert_eq!(walk.path().await, "/jobs/app", "back to the page asked for");

    walk.goto("/").await;
    let text = walk.text().await;
    assert!(text.contains("Dashboard") && text.contains("app"), "{text}");
    assert!(text.contains("alice (admin)"), "{text}");
    walk.record("dashboard-empty").await;

    // Run a backup from the button and watch it end without reloading.
    walk.goto("/jobs/app").await;
    walk.client
        .execute("window.__sameDocument = true;", vec![])
        .await
        .unwrap();
    walk.click("button[data-run=backup]").await;
    walk.until(
        "document.querySelector('#runs tr[data-status=success] td:nth-child(2)') && \
         [...document.querySelectorAll('#runs tr[data-status=success]')].some(r => r.children[1].textContent === 'backup')",
        "the backup run shown as success",
    )
    .await;
    walk.until(
        "document.querySelector('table.artifacts tr[data-artifact]')",
        "the new artifact",
    )
    .await;
    let same: Value = walk
        .client
        .execute("return window.__sameDocument === true;", vec![])
        .await
        .unwrap();
    assert_eq!(
        same,
        json!(true),
        "the run was watched live, not by reloading"
    );
    let listed = env.list();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let id = listed[0]["id"].as_str().unwrap().to_string();
    let shown = walk
        .attr_of("table.artifacts tr[data-artifact]", "data-artifact")
        .await;
    assert_eq!(shown.as_deref(), Some(id.as_str()));

    // Pause and resume.
    walk.click("button[data-job-action=pause]").await;
    walk.until(
        "document.getElementById('job-state').textContent === 'paused'",
        "paused",
    )
    .await;
    let store = cairn::state::open_path(&env.path("cairn-state.db")).unwrap();
    assert!(store.paused_jobs().unwrap().contains("app"));
    walk.click("button[data-job-action=resume]").await;
    walk.until(
        "document.getElementById('job-state').textContent !== 'paused'",
        "resumed",
    )
    .await;
    assert!(!store.paused_jobs().unwrap().contains("app"));

    // Override the schedule.
    walk.click("#mode-cron").await;
    let cron = walk.client.find(Locator::Id("cron")).await.unwrap();
    cron.clear().await.unwrap();
    cron.send_keys("30 4 * * *").await.unwrap();
    walk.click("#schedule-form button[type=submit]").await;
    walk.until("document.getElementById('override')", "the override shown")
        .await;
    let note = walk.text_of("override").await;
    assert!(
        note.contains("Overridden in the UI")
            && note.contains("30 4 * * *")
            && note.contains("the config says")
            && note.contains("0 2 * * *"),
        "{note}"
    );
    assert_eq!(
        store.schedule_overrides().unwrap().get("app"),
        Some(&cairn::state::ScheduleOverride::Cron {
            cron: "30 4 * * *".into()
        })
    );

    // A drill from the button; the artifact is then marked drilled.
    walk.click("button[data-run=drill]").await;
    walk.until(
        "[...document.querySelectorAll('#runs tr[data-status=success]')].some(r => r.children[1].textContent === 'drill')",
        "the drill run shown as success",
    )
    .await;
    walk.until(
        "[...document.querySelectorAll('table.artifacts .badge')].some(b => b.textContent === 'drilled')",
        "the artifact marked drilled",
    )
    .await;
    walk.record("job").await;

    // Download as admin: the link's bytes are the stored object's.
    let href = walk
        .attr_of("a.download", "href")
        .await
        .expect("download href");
    let digest = walk
        .client
        .execute_async(
            "const [href, done] = arguments;
             fetch(href, { credentials: 'same-origin' })
               .then(r => r.ok ? r.arrayBuffer() : Promise.reject('HTTP ' + r.status))
               .then(b => crypto.subtle.digest('SHA-256', b))
               .then(h => done([...new Uint8Array(h)].map(x => x.toString(16).padStart(2, '0')).join('')),
                     e => done(String(e)));",
            vec![json!(href)],
        )
        .await
        .unwrap();
    assert_eq!(digest, json!(sha256_hex(&env.data_path(&listed[0]))));

    // Restore: the plan first, then the typed job name, then the run's log.
    add_rows(&env.path("app.db"));
    walk.click("a.restore").await;
    assert_eq!(walk.path().await, "/jobs/app/restore");
    walk.record("restore").await;
    walk.click("button[data-restore-plan]").await;
    walk.until(
        "!document.getElementById('restore-plan').hidden",
        "the restore plan",
    )
    .await;
    let plan = walk.text_of("restore-plan-text").await;
    assert!(
        plan.contains("would write") && plan.contains("cairn-safety-"),
        "{plan}"
    );
    walk.type_into("restore-confirm", "app").await;
    walk.click("button[data-restore-apply]").await;
    walk.until(
        "document.getElementById('restore-run-status').textContent === 'success'",
        "the restore run shown as success",
    )
    .await;
    let log = walk.text_of("restore-run-log").await;
    assert!(log.contains("restore of `app`"), "{log}");
    walk.client
        .execute(
            "document.getElementById('restore-run').scrollIntoView();",
            vec![],
        )
        .await
        .unwrap();
    walk.screenshot("restore-done").await;
    let restored = std::fs::read(env.path("app.db")).unwrap();
    let out = env.cairn().args(["cat", "app", &id]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        restored, out.stdout,
        "app.db holds the artifact's content again"
    );

    // A slow run's log shows up while it runs.
    walk.goto("/jobs/slow").await;
    walk.click("button[data-run=backup]").await;
    walk.until(
        "[...document.querySelectorAll('#runs tr[data-status=running] [data-live-log] pre')].some(p => p.textContent.includes('backup of `slow` started'))",
        "the running run's log",
    )
    .await;
    walk.client
        .execute(
            "document.getElementById('runs-h').scrollIntoView();",
            vec![],
        )
        .await
        .unwrap();
    walk.screenshot("job-running").await;
    walk.until(
        "[...document.querySelectorAll('#runs tr[data-status=success]')].some(r => r.children[1].textContent === 'backup')",
        "the slow backup shown as success",
    )
    .await;

    walk.goto("/").await;
    walk.record("dashboard").await;
    walk.goto("/checks").await;
    assert!(walk.text().await.contains("disk"));
    walk.record("checks").await;
    walk.goto("/notifications").await;
    walk.record("notifications").await;
    walk.click("button[data-notify-test=ops]").await;
    walk.until(
        "document.getElementById('live').textContent.includes('A test was sent to ops')",
        "the test sent",
    )
    .await;
    let got = receiver.wait_for(1, DEADLINE);
    assert!(
        got[0]
            .text()
            .contains("test of the notification channel `ops`"),
        "{}",
        got[0].text()
    );
    walk.goto("/audit").await;
    let audit = walk.text().await;
    assert!(
        audit.contains("user:alice") && audit.contains("run.backup"),
        "{audit}"
    );
    walk.record("audit").await;

    // Phone width.
    walk.client.set_window_size(390, 844).await.unwrap();
    walk.goto("/jobs/app").await;
    walk.screenshot("job-phone").await;
    let overflow: Value = walk
        .client
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(overflow, json!(true), "the job page fits a phone's width");
    walk.client.set_window_size(1280, 1000).await.unwrap();

    walk.sign_out().await;
    walk.goto("/").await;
    assert_eq!(
        walk.path().await,
        "/login",
        "signed out: the session is over"
    );

    // A viewer sees everything but no button, and the API refuses them.
    walk.sign_in("victor", "viewer password 1").await;
    walk.goto("/jobs/app").await;
    assert!(walk.text().await.contains(&id));
    let buttons = walk
        .client
        .find_all(Locator::Css("button[data-run], button[data-job-action], #schedule-form, a.download, a.restore, button[data-prune-plan]"))
        .await
        .unwrap();
    assert!(buttons.is_empty(), "a viewer sees no action buttons");
    walk.record("job-viewer").await;
    assert_eq!(
        walk.fetch_status(
            "POST",
            "/api/v1/jobs/app/runs",
            Some(json!({"kind": "backup", "dry_run": false}))
        )
        .await,
        403
    );
    walk.goto("/audit").await;
    assert!(walk.text().await.contains("Admins only"));
    walk.goto("/checks").await;
    assert!(
        walk.client
            .find_all(Locator::Css("button[data-check]"))
            .await
            .unwrap()
            .is_empty()
    );
    walk.sign_out().await;
    assert_eq!(walk.fetch_status("GET", "/api/v1/jobs", None).await, 401);

    let checked = walk.checked.clone();
    walk.client.close().await.unwrap();
    drop(daemon);
    assert_eq!(
        checked,
        [
            "setup",
            "login",
            "dashboard-empty",
            "job",
            "restore",
            "dashboard",
            "checks",
            "notifications",
            "audit",
            "job-viewer"
        ]
    );
}
