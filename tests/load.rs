//! Load on a real daemon (issue 17, item 5): 200 jobs due in the same second
//! run once each, never more than `max_concurrent_runs` at a time, with the
//! daemon's memory flat; 1,000 concurrent API requests are all answered, with
//! the daemon's descriptor limit at systemd's default soft limit of 1,024.
//! Timings are measured in `bench/`, not asserted here.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::receivers::closed_port;
use common::{Env, stderr};

const JOBS: usize = 200;
const MAX_CONCURRENT: usize = 8;

/// A daemon process, killed when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Daemon {
    /// `cairn daemon` with its soft descriptor limit at `nofile` (hard limit
    /// unchanged), as systemd starts services.
    fn start(env: &Env, nofile: u64) -> Daemon {
        let mut cmd = env.cairn_process();
        cmd.env("CAIRN_LOG", "info")
            .args(["--log-format", "json", "daemon"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(env.path("daemon.log")).expect("log file"));
        cairn::descriptor_limit::start_with_soft_limit(&mut cmd, nofile);
        Daemon(cmd.spawn().expect("start the daemon"))
    }

    fn log(env: &Env) -> String {
        std::fs::read_to_string(env.path("daemon.log")).unwrap_or_default()
    }

    fn wait_for_log(&mut self, env: &Env, what: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !Daemon::log(env).contains(what) {
            if let Ok(Some(status)) = self.0.try_wait() {
                panic!("the daemon exited ({status}): {}", Daemon::log(env));
            }
            assert!(
                Instant::now() < deadline,
                "no {what:?} in the daemon log within {limit:?}: {}",
                Daemon::log(env)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
    fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id()))
            .expect("the daemon's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {status}"))
    }
}

fn history(env: &Env) -> Vec<serde_json::Value> {
    let out = env
        .cairn()
        .args(["history", "--json", "-n", "100000"])
        .output()
        .expect("cairn history");
    assert!(out.status.success(), "history: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("history --json")
}

fn timestamp(value: &serde_json::Value) -> jiff::Timestamp {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a timestamp: {value}"))
}

/// The most runs that were going at the same instant.
fn most_at_once(runs: &[&serde_json::Value]) -> usize {
    let mut edges: Vec<(jiff::Timestamp, i32)> = Vec::new();
    for run in runs {
        edges.push((timestamp(&run["started_at"]), 1));
        edges.push((timestamp(&run["finished_at"]), -1));
    }
    // An end and a start at the same instant do not overlap.
    edges.sort();
    let (mut going, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        going += step;
        most = most.max(going);
    }
    most as usize
}

#[test]
fn two_hundred_jobs_due_in_the_same_second_run_once_each_eight_at_a_time() {
    let env = Env::new();
    // Far enough ahead for the daemon to start, and a fire that comes back
    // only next year: every run in the history belongs to this one fire.
    let due = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(8))
        .expect("a time")
        .round(jiff::Unit::Second)
        .expect("rounded");
    let at = due.to_zoned(jiff::tz::TimeZone::UTC);
    let cron = format!(
        "{} {} {} {} {} *",
        at.second(),
        at.minute(),
        at.hour(),
        at.day(),
        at.month()
    );
    let mut config = format!(
        "[daemon]\nmax_concurrent_runs = {MAX_CONCURRENT}\n\n[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n"
    );
    for n in 0..JOBS {
        config.push_str(&format!(
            "\n[jobs.job{n:03}]\nsource = {{ kind = \"command\", backup = [\"sh\", \"-c\", \"echo job {n}\"] }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\nschedules = [{{ cron = \"{cron}\" }}]\n"
        ));
    }
    env.write_config(&config);

    let mut daemon = Daemon::start(&env, 1024);
    daemon.wait_for_log(&env, "daemon started", Duration::from_secs(30));
    assert!(
        jiff::Timestamp::now() < due,
        "the daemon started after the fire it was meant to wait for"
    );
    let idle_kib = daemon.memory_kib("VmRSS");

    let deadline = Instant::now() + Duration::from_secs(600);
    let runs = loop {
        let runs = history(&env);
        let finished = runs
            .iter()
            .filter(|r| r["kind"] == "backup" && !r["finished_at"].is_null())
            .count();
        if finished >= JOBS {
            break runs;
        }
        if let Ok(Some(status)) = daemon.0.try_wait() {
            panic!("the daemon exited ({status}): {}", Daemon::log(&env));
        }
        assert!(
            Instant::now() < deadline,
            "{finished} of {JOBS} runs finished after 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let peak_kib = daemon.memory_kib("VmHWM");

    let backups: Vec<&serde_json::Value> = runs.iter().filter(|r| r["kind"] == "backup").collect();
    let mut per_job: BTreeMap<&str, usize> = BTreeMap::new();
    for run in &backups {
        assert_eq!(run["status"], "success", "{run}");
        assert_eq!(run["trigger"], "schedule", "{run}");
        assert_eq!(timestamp(&run["scheduled_for"]), due, "{run}");
        *per_job
            .entry(run["job"].as_str().expect("job"))
            .or_default() += 1;
    }
    assert_eq!(per_job.len(), JOBS, "jobs that ran: {per_job:?}");
    assert!(
        per_job.values().all(|&n| n == 1),
        "a job ran more than once: {per_job:?}"
    );
    let most = most_at_once(&backups);
    assert!(
        most <= MAX_CONCURRENT,
        "{most} runs at once with max_concurrent_runs = {MAX_CONCURRENT}"
    );
    let listed = env.list();
    assert_eq!(listed.len(), JOBS, "one artifact per job");

    // The daemon queues fires, it does not hold their work: its peak over
    // the burst stays within a small margin of its idle size.
    eprintln!("daemon RSS idle {idle_kib} KiB, peak {peak_kib} KiB, {most} runs at once");
    assert!(
        peak_kib < idle_kib + 32 * 1024,
        "the daemon grew from {idle_kib} KiB to {peak_kib} KiB over {JOBS} runs"
    );
}

/// One HTTP/1.1 request on its own connection; the status, or what failed.
fn get(port: u16, path: &str, token: &str) -> Result<u16, String> {
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("sending: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("reading: {e}"))?;
    let head = String::from_utf8_lossy(&answer[..answer.len().min(64)]).to_string();
    head.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {head:?}"))
}

#[test]
fn a_thousand_concurrent_api_requests_are_all_answered() {
    const CLIENTS: usize = 1000;
    let env = Env::new();
    common::create_sample_db(&env.path("app.db"), 20);
    let port = closed_port();
    env.write_config(&format!(
        "[daemon]\nlisten = \"127.0.0.1:{port}\"\n\n[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[jobs.app]\nsource = {{ kind = \"sqlite\", path = \"app.db\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\n"
    ));
    env.backup("app");
    let token = {
        let store = cairn::state::open_path(&env.path("cairn-state.db")).expect("state store");
        // The API answers 401 to everything until a first user exists.
        store
            .add_user(&cairn::state::User {
                name: "ann".into(),
                role: cairn::state::Role::Admin,
                password_hash: cairn::auth::password::hash("correct horse battery staple")
                    .expect("a hash"),
                created_at: jiff::Timestamp::now(),
            })
            .expect("a user");
        let (_, secret) = cairn::auth::token::create(
            store.as_ref(),
            "load",
            cairn::state::Role::Viewer,
            None,
            Vec::new(),
            jiff::Timestamp::now(),
        )
        .expect("a token");
        secret
    };
    env.register_secret(&token);
    let mut daemon = Daemon::start(&env, 1024);
    daemon.wait_for_log(&env, "serving /metrics", Duration::from_secs(30));

    // Every client connects, then all send at once.
    let paths = [
        "/api/v1/jobs",
        "/api/v1/jobs/app/artifacts",
        "/api/v1/runs",
        "/healthz",
    ];
    let start = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let start = start.clone();
            let token = token.clone();
            let path = paths[n % paths.len()];
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    start.wait();
                    (path, get(port, path, &token))
                })
                .expect("a client thread")
        })
        .collect();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for client in clients {
        let (path, result) = client.join().expect("client thread");
        match result {
            Ok(200) => {}
            Ok(status) => *failures.entry(format!("{path}: {status}")).or_default() += 1,
            Err(e) => *failures.entry(format!("{path}: {e}")).or_default() += 1,
        }
    }
    assert!(
        failures.is_empty(),
        "of {CLIENTS} requests these failed: {failures:?}\n{}",
        Daemon::log(&env)
    );
    // Still serving afterwards, and nothing in its log says it ran short.
    assert_eq!(get(port, "/healthz", &token), Ok(200));
    let log = Daemon::log(&env);
    assert!(
        !log.contains("accepting an HTTP connection failed"),
        "{log}"
    );
    assert!(
        daemon.0.try_wait().expect("wait").is_none(),
        "the daemon exited"
    );
}

/// The soft descriptor limit in `/proc/<pid>/limits`.
fn soft_descriptor_limit(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a descriptor limit");
    line.split_whitespace()
        .nth(3)
        .expect("soft")
        .parse()
        .expect("a number")
}

#[test]
fn programs_the_daemon_starts_get_the_descriptor_limit_it_was_started_with() {
    let env = Env::new();
    let hook_file = env.path("hook-limit.txt");
    env.write_config(&format!(
        "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n\
         [jobs.probe]\nsource = {{ kind = \"command\", backup = [\"sh\", \"-c\", \"ulimit -n\"] }}\n\
         destinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\n\
         hooks = {{ before = [\"ulimit -n > '{}'\"] }}\n\
         schedules = [{{ cron = \"* * * * * *\" }}]\n",
        hook_file.display()
    ));
    let mut daemon = Daemon::start(&env, 1024);
    daemon.wait_for_log(&env, "daemon started", Duration::from_secs(30));
    let hard = rlimit_hard();
    assert_eq!(
        soft_descriptor_limit(daemon.0.id()),
        hard,
        "the daemon raises its own soft limit to the hard one"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while !history(&env)
        .iter()
        .any(|r| r["kind"] == "backup" && r["status"] == "success")
    {
        if let Ok(Some(status)) = daemon.0.try_wait() {
            panic!("the daemon exited ({status}): {}", Daemon::log(&env));
        }
        assert!(
            Instant::now() < deadline,
            "no successful run within 2 minutes: {}",
            Daemon::log(&env)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(daemon);
    let out = env.cairn().args(["cat", "probe"]).output().expect("cat");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1024",
        "the source command's limit"
    );
    let hook = std::fs::read_to_string(&hook_file).expect("the hook ran");
    assert_eq!(hook.trim(), "1024", "the hook's limit");
}

/// This process's hard descriptor limit, which the daemon inherits.
fn rlimit_hard() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes `limit`.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    limit.rlim_max
}
