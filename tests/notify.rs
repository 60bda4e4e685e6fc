//! Notifications end to end: `cairn backup` and `cairn notify test` deliver
//! to a real HTTP server and a real SMTP server on 127.0.0.1, with retries,
//! de-duplication and recovery; unreachable channels never fail a backup.

mod common;

use std::time::{Duration, Instant};

use common::receivers::{HttpReceiver, SmtpReceiver, closed_port};
use common::{Env, stderr};

const WAIT: Duration = Duration::from_secs(10);

/// A sqlite job `app` on ./app.db (created only by `make_db`), unencrypted,
/// with `extra` appended (channels) and `notify` as its routes.
fn setup(env: &Env, notify: &str, extra: &str) {
    env.write_config(&format!(
        "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[jobs.app]\nsource = {{ kind = \"sqlite\", path = \"app.db\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\nnotify = {notify}\n\n{extra}"
    ));
}

fn make_db(env: &Env) {
    common::create_sample_db(&env.path("app.db"), 10);
}

fn backup(env: &Env) -> std::process::Output {
    env.cairn()
        .args(["backup", "app"])
        .output()
        .expect("backup")
}

#[test]
fn webhooks_in_every_format_reach_a_real_http_server_then_recover_once() {
    let env = Env::new();
    let hook = HttpReceiver::start();
    let mut channels = String::new();
    for format in ["json", "slack", "discord", "teams", "ntfy"] {
        channels.push_str(&format!(
            "[notify.{format}]\nkind = \"webhook\"\nurl = \"{}\"\nformat = \"{format}\"\n",
            hook.url(&format!("/{format}"))
        ));
    }
    channels.push_str("headers = { X-Token = \"${HOOK_TOKEN}\" }\n");
    setup(
        &env,
        r#"["json", "slack", "discord", "teams", "ntfy"]"#,
        &channels,
    );

    // No database yet: the backup fails and every channel hears of it.
    let out = env
        .cairn()
        .env("HOOK_TOKEN", "tok-123")
        .args(["backup", "app"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let requests = hook.wait_for(5, WAIT);
    let by_path = |path: &str| {
        requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(requests.len(), 5, "{requests:#?}");

    let json = &by_path("/json")[0];
    assert_eq!(json.method, "POST");
    assert_eq!(json.header("content-type"), Some("application/json"));
    let event = json.json();
    assert_eq!(event["schema"], "cairn.event/1");
    assert_eq!(event["kind"], "backup_failed");
    assert_eq!(event["severity"], "failure");
    assert_eq!(event["job"], "app");
    assert_eq!(event["recovery"], false);
    assert!(
        event["error"].as_str().unwrap().contains("app.db"),
        "{event}"
    );
    assert!(
        event["next_step"]
            .as_str()
            .unwrap()
            .contains("cairn history app")
    );
    assert!(event["time"].as_str().is_some() && event["host"].as_str().is_some());

    let slack = by_path("/slack")[0].json();
    assert!(
        slack["text"]
            .as_str()
            .unwrap()
            .contains("backup of `app` FAILED"),
        "{slack}"
    );
    assert_eq!(slack["blocks"][0]["type"], "header");
    let discord = by_path("/discord")[0].json();
    let content = discord["content"].as_str().unwrap();
    assert!(
        content.contains("backup of `app` FAILED") && content.contains("Job: app"),
        "{discord}"
    );
    assert!(content.chars().count() <= 2000);
    let teams = by_path("/teams")[0].json();
    assert_eq!(
        teams["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let ntfy = &by_path("/ntfy")[0];
    assert!(ntfy.header("title").unwrap().contains("FAILED"));
    assert_eq!(ntfy.header("priority"), Some("high"));
    assert_eq!(ntfy.header("x-token"), Some("tok-123"), "custom header");
    assert!(ntfy.text().contains("What happened:"));

    // A second failure is not repeated (repeat defaults to 4h).
    let out = env
        .cairn()
        .env("HOOK_TOKEN", "tok-123")
        .args(["backup", "app"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(hook.requests().len(), 5, "no second alert");

    // The database appears: one recovery message per channel, then silence.
    make_db(&env);
    let out = env
        .cairn()
        .env("HOOK_TOKEN", "tok-123")
        .args(["backup", "app"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let requests = hook.wait_for(10, WAIT);
    assert_eq!(requests.len(), 10);
    let recovery = requests[5..]
        .iter()
        .find(|r| r.path == "/json")
        .unwrap()
        .json();
    assert_eq!(recovery["kind"], "backup_succeeded");
    assert_eq!(recovery["recovery"], true);
    assert!(recovery["artifact_id"].as_str().is_some());
    let slack = requests[5..]
        .iter()
        .find(|r| r.path == "/slack")
        .unwrap()
        .json();
    assert!(
        slack["text"].as_str().unwrap().contains("recovered"),
        "{slack}"
    );

    let out = env
        .cairn()
        .env("HOOK_TOKEN", "tok-123")
        .args(["backup", "app"])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        hook.requests().len(),
        10,
        "routine successes are not sent by default"
    );
}

#[test]
fn email_reaches_a_real_smtp_server_with_recipients_subject_and_body() {
    let env = Env::new();
    let smtp = SmtpReceiver::start();
    setup(
        &env,
        r#"["mail"]"#,
        &format!(
            "[notify.mail]\nkind = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"none\"\nusername = \"cairn\"\npassword_env = \"SMTP_PASSWORD\"\nfrom = \"cairn <cairn@example.com>\"\nto = [\"ops@example.com\", \"dba@example.com\"]\n",
            smtp.port
        ),
    );
    let out = env
        .cairn()
        .env("SMTP_PASSWORD", "smtp-pw-9")
        .args(["backup", "app"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let mails = smtp.wait_for(1, WAIT);
    assert_eq!(mails.len(), 1, "{}", stderr(&out));
    let mail = &mails[0];
    assert_eq!(mail.from, "cairn@example.com");
    assert_eq!(mail.recipients, vec!["ops@example.com", "dba@example.com"]);
    assert_eq!(mail.auth.as_deref(), Some("cairn\0smtp-pw-9"));
    let subject = mail.header("subject").unwrap();
    assert!(subject.contains("backup of `app` FAILED"), "{subject}");
    let to = mail.header("to").unwrap();
    assert!(
        to.contains("ops@example.com") && to.contains("dba@example.com"),
        "{to}"
    );
    let body = mail.body();
    for needle in [
        "What happened: the backup of `app` failed",
        "Job: app",
        "When: ",
        "Error: ",
        "app.db",
        "Next step: ",
    ] {
        assert!(body.contains(needle), "missing {needle:?} in:\n{body}");
    }
    assert!(!stderr(&out).contains("smtp-pw-9"));
}

#[test]
fn a_webhook_answering_503_is_retried_until_it_accepts() {
    let env = Env::new();
    let hook = HttpReceiver::start();
    hook.respond_with(&[503, 503]);
    setup(
        &env,
        r#"["ops"]"#,
        &format!(
            "[notify.ops]\nkind = \"webhook\"\nurl = \"{}\"\nretries = 3\n",
            hook.url("/hook")
        ),
    );
    let out = backup(&env);
    assert_eq!(out.status.code(), Some(1));
    let requests = hook.wait_for(3, WAIT);
    assert_eq!(requests.len(), 3, "two 503s, then accepted");
    assert!(requests.iter().all(|r| r.json()["kind"] == "backup_failed"));
    assert!(!stderr(&out).contains("not delivered"), "{}", stderr(&out));
}

#[test]
fn unreachable_or_hanging_channels_never_block_or_fail_a_backup() {
    let env = Env::new();
    make_db(&env);
    let hanging = HttpReceiver::start();
    hanging.set_delay(Duration::from_secs(30));
    let dead = closed_port();
    setup(
        &env,
        r#"[{ channel = "down", events = ["backup_succeeded"] }, { channel = "slow", events = ["backup_succeeded"] }, { channel = "mail", events = ["backup_succeeded"] }]"#,
        &format!(
            "[notify.down]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{dead}/hooks/SECRET-TOKEN-42\"\nretries = 2\nmax_time = \"3s\"\n\n[notify.slow]\nkind = \"webhook\"\nurl = \"{}\"\ntimeout = \"1s\"\nmax_time = \"2s\"\n\n[notify.mail]\nkind = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {dead}\ntls = \"none\"\nfrom = \"cairn@example.com\"\nto = [\"ops@example.com\"]\nretries = 2\nmax_time = \"3s\"\n",
            hanging.url("/slow")
        ),
    );
    let start = Instant::now();
    let out = env
        .cairn()
        .args(["backup", "app", "--json"])
        .output()
        .unwrap();
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "the backup itself succeeded: {}",
        stderr(&out)
    );
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(reports[0]["id"].as_str().is_some(), "{reports}");
    assert_eq!(env.list().len(), 1, "the artifact is committed");
    // Channels are tried in parallel, each within its max_time.
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
    let log = stderr(&out);
    for channel in ["channel=down", "channel=slow", "channel=mail"] {
        assert!(log.contains(channel), "{channel} not logged:\n{log}");
    }
    assert!(log.contains("notification not delivered"), "{log}");
    assert!(log.contains("3 attempts"), "retried: {log}");
    assert!(
        !log.contains("SECRET-TOKEN-42"),
        "the URL's token leaked:\n{log}"
    );
    assert!(
        !hanging.requests().is_empty(),
        "the hanging server was tried"
    );
}

#[test]
fn notify_test_sends_a_test_event_and_reports_failures() {
    let env = Env::new();
    let hook = HttpReceiver::start();
    setup(
        &env,
        "[]",
        &format!(
            "[notify.ops]\nkind = \"webhook\"\nurl = \"{}\"\n\n[notify.gone]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/x\"\nretries = 1\nmax_time = \"2s\"\n",
            hook.url("/t"),
            closed_port()
        ),
    );
    let out = env
        .cairn()
        .args(["notify", "test", "ops"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(common::stdout(&out).contains("delivered"));
    let requests = hook.wait_for(1, WAIT);
    assert_eq!(requests[0].json()["kind"], "test");

    let out = env
        .cairn()
        .args(["notify", "test", "gone", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["delivered"], false);
    assert_eq!(report["attempts"], 2);

    let out = env
        .cairn()
        .args(["notify", "test", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown channel `nope`"));
}

#[test]
fn ping_urls_get_start_success_and_fail_with_the_log_tail() {
    let env = Env::new();
    let hc = HttpReceiver::start();
    setup(
        &env,
        r#"["hc"]"#,
        &format!(
            "[notify.hc]\nkind = \"ping\"\nurl = \"{}\"\n",
            hc.url("/ping/abc-123")
        ),
    );
    let out = backup(&env);
    assert_eq!(out.status.code(), Some(1));
    let requests = hc.wait_for(2, WAIT);
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, vec!["/ping/abc-123/start", "/ping/abc-123/fail"]);
    let body = requests[1].text();
    assert!(body.contains("app.db") && body.contains("Log:"), "{body}");

    make_db(&env);
    let out = backup(&env);
    assert!(out.status.success());
    let requests = hc.wait_for(4, WAIT);
    let paths: Vec<&str> = requests[2..].iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, vec!["/ping/abc-123/start", "/ping/abc-123"]);
}

#[test]
fn routes_to_unknown_channels_and_bad_events_are_config_errors() {
    let env = Env::new();
    setup(&env, r#"["nope"]"#, "");
    let out = env.cairn().args(["backup", "app"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("cairn.toml:9:") && err.contains("unknown notification channel `nope`"),
        "{err}"
    );

    setup(
        &env,
        r#"[{ channel = "ops", events = ["backup_done"] }]"#,
        "[notify.ops]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:1/\"\n",
    );
    let out = env.cairn().args(["backup", "app"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown event `backup_done`"),
        "{}",
        stderr(&out)
    );

    setup(
        &env,
        "[]",
        "[notify.ops]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:1/\"\nformat = \"json\"\nretires = 3\n",
    );
    let out = env.cairn().args(["backup", "app"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("unknown field `retires`") && err.contains("cairn.toml:15:1"),
        "{err}"
    );
}

#[test]
fn starttls_is_required_unless_tls_is_none() {
    // The receiver offers no STARTTLS: a `starttls` channel must refuse to send
    // the message (and the password) in clear text.
    let env = Env::new();
    let smtp = SmtpReceiver::start();
    setup(
        &env,
        r#"["mail"]"#,
        &format!(
            "[notify.mail]\nkind = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"starttls\"\nusername = \"cairn\"\npassword_env = \"SMTP_PASSWORD\"\nfrom = \"cairn@example.com\"\nto = [\"ops@example.com\"]\nmax_time = \"3s\"\n",
            smtp.port
        ),
    );
    let out = env
        .cairn()
        .env("SMTP_PASSWORD", "smtp-pw-9")
        .args(["backup", "app"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let log = stderr(&out);
    assert!(
        log.contains("notification not delivered") && log.contains("channel=mail"),
        "{log}"
    );
    assert!(
        smtp.wait_for(1, Duration::from_millis(500)).is_empty(),
        "nothing sent in clear"
    );
    assert!(!log.contains("smtp-pw-9"));
}

#[test]
fn every_log_line_of_a_run_carries_the_job_and_run_id() {
    let env = Env::new();
    let hook = HttpReceiver::start();
    hook.respond_with(&[400]);
    setup(
        &env,
        r#"["ops"]"#,
        &format!(
            "[notify.ops]\nkind = \"webhook\"\nurl = \"{}\"\n",
            hook.url("/h")
        ),
    );
    let out = env
        .cairn()
        .args(["--log-format", "json", "-v", "backup", "app"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = stderr(&out)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let delivery = lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("not delivered"))
        })
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(delivery["span"]["job"], "app");
    assert!(
        delivery["span"]["run_id"].as_i64().unwrap() > 0,
        "{delivery}"
    );
    assert!(
        delivery["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("HTTP 400")
    );
    assert_eq!(hook.requests().len(), 1, "a 400 is not retried");
}

#[test]
fn email_over_starttls_and_implicit_tls_verifies_the_server_certificate() {
    use common::receivers::TlsSmtpReceiver;
    for (mode, implicit) in [("starttls", false), ("implicit", true)] {
        let env = Env::new();
        let smtp = TlsSmtpReceiver::start(env.dir.path(), implicit);
        let channel = |ca: &str| {
            format!(
                "[notify.mail]\nkind = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"{mode}\"\n{ca}username = \"cairn\"\npassword_env = \"SMTP_PASSWORD\"\nfrom = \"cairn@example.com\"\nto = [\"ops@example.com\", \"dba@example.com\"]\nretries = 1\nmax_time = \"4s\"\n",
                smtp.port
            )
        };
        // The self-signed certificate is not trusted by default: nothing is sent.
        setup(&env, r#"["mail"]"#, &channel(""));
        let out = env
            .cairn()
            .env("SMTP_PASSWORD", "tls-pw-7")
            .args(["backup", "app"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let log = stderr(&out);
        assert!(
            log.contains("notification not delivered") && log.contains("channel=mail"),
            "{mode}: {log}"
        );
        assert!(
            smtp.wait_for(1, Duration::from_millis(300)).is_empty(),
            "{mode}: sent to an untrusted server"
        );

        // With the CA in ca_file the message goes through TLS, with auth.
        setup(
            &env,
            r#"["mail"]"#,
            &channel(&format!("ca_file = \"{}\"\n", smtp.ca_file.display())),
        );
        let out = env
            .cairn()
            .env("SMTP_PASSWORD", "tls-pw-7")
            .args(["backup", "app"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let mails = smtp.wait_for(1, WAIT);
        assert_eq!(mails.len(), 1, "{mode}: {}", stderr(&out));
        let mail = &mails[0];
        assert_eq!(mail["tls"], true);
        assert_eq!(mail["auth"], "cairn\u{0}tls-pw-7");
        assert_eq!(
            mail["recipients"],
            serde_json::json!(["ops@example.com", "dba@example.com"])
        );
        let data = mail["data"].as_str().unwrap();
        assert!(
            data.contains("Subject: cairn: backup of `app` FAILED"),
            "{data}"
        );
        assert!(data.contains("Next step:"), "{data}");
        assert!(!stderr(&out).contains("tls-pw-7"));
    }
}

#[test]
fn each_route_picks_its_events() {
    let env = Env::new();
    let hook = HttpReceiver::start();
    setup(
        &env,
        r#"[{ channel = "fails", events = ["backup_failed"] }, { channel = "wins", events = ["backup_succeeded"] }]"#,
        &format!(
            "[notify.fails]\nkind = \"webhook\"\nurl = \"{}\"\n\n[notify.wins]\nkind = \"webhook\"\nurl = \"{}\"\n",
            hook.url("/fails"),
            hook.url("/wins")
        ),
    );
    assert_eq!(backup(&env).status.code(), Some(1));
    make_db(&env);
    assert!(backup(&env).status.success());
    assert!(backup(&env).status.success());
    let requests = hook.wait_for(3, WAIT);
    std::thread::sleep(Duration::from_millis(300));
    let requests = if requests.len() < hook.requests().len() {
        hook.requests()
    } else {
        requests
    };
    let fails: Vec<_> = requests
        .iter()
        .filter(|r| r.path == "/fails")
        .map(|r| r.json())
        .collect();
    let wins: Vec<_> = requests
        .iter()
        .filter(|r| r.path == "/wins")
        .map(|r| r.json())
        .collect();
    assert_eq!(fails.len(), 1, "{requests:#?}");
    assert_eq!(fails[0]["kind"], "backup_failed");
    assert_eq!(wins.len(), 2, "{requests:#?}");
    assert!(wins.iter().all(|w| w["kind"] == "backup_succeeded"));
    // The first success after the failure is marked as the recovery, the next not.
    assert_eq!(wins[0]["recovery"], true);
    assert_eq!(wins[1]["recovery"], false);
}

#[test]
fn check_reports_channels_that_cannot_work_on_this_host() {
    let env = Env::new();
    make_db(&env);
    setup(
        &env,
        r#"["mail"]"#,
        "[notify.mail]\nkind = \"email\"\nsmtp_host = \"127.0.0.1\"\nusername = \"u\"\npassword_env = \"CAIRN_TEST_UNSET_PW\"\nca_file = \"no-such-ca.pem\"\nfrom = \"cairn@example.com\"\nto = [\"ops@example.com\"]\n",
    );
    let out = env.cairn().arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = common::stdout(&out);
    assert!(
        text.contains("FAIL notify `mail`: the password variable `CAIRN_TEST_UNSET_PW`"),
        "{text}"
    );
    assert!(text.contains("no-such-ca.pem"), "{text}");
    let out = env
        .cairn()
        .env("CAIRN_TEST_UNSET_PW", "x")
        .arg("check")
        .output()
        .unwrap();
    assert!(!common::stdout(&out).contains("password variable"));
}

/// What a drill verb's run delivers: `runs::recorded`, then (as the CLI's
/// event sink does) `notify::run_finished` with `RunKind::Drill` (drills are built elsewhere;
/// this drives the same two library calls with a stand-in result type).
#[test]
fn drill_runs_emit_drill_failed_then_one_recovery() {
    use cairn::engine::runs::{self, Summary};
    use cairn::state::{RunEnd, RunKind, Trigger};
    struct DrillResult(bool);
    impl Summary for DrillResult {
        fn run_end(&self) -> RunEnd {
            RunEnd {
                success: self.0,
                error: (!self.0).then(|| "restored copy: PRAGMA integrity_check failed".into()),
                ..RunEnd::default()
            }
        }
    }
    let env = Env::new();
    let hook = HttpReceiver::start();
    setup(
        &env,
        r#"["ops"]"#,
        &format!(
            "[notify.ops]\nkind = \"webhook\"\nurl = \"{}\"\n",
            hook.url("/ops")
        ),
    );
    let config = cairn::config::Config::load(&env.config_path()).unwrap();
    let store = cairn::state::open(&config).unwrap();
    let drill = |ok: bool| {
        let result = runs::recorded(
            Some(store.as_ref()),
            "app",
            RunKind::Drill,
            Trigger::Schedule,
            || Ok(DrillResult(ok)),
        );
        cairn::notify::run_finished(
            &config,
            Some(store.as_ref()),
            "app",
            RunKind::Drill,
            &runs::end_of(&result),
        )
    };
    let reports = drill(false);
    assert_eq!(reports.len(), 1);
    assert!(reports[0].delivered);
    drill(false);
    drill(true);
    drill(true);
    let requests = hook.wait_for(2, WAIT);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(hook.requests().len(), 2, "{requests:#?}");
    let failed = requests[0].json();
    assert_eq!(failed["kind"], "drill_failed");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("integrity_check")
    );
    assert!(failed["duration_seconds"].as_f64().is_some());
    let recovered = requests[1].json();
    assert_eq!(recovered["kind"], "drill_succeeded");
    assert_eq!(recovered["recovery"], true);
}
