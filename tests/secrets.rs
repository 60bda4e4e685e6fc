//! No secret leaves cairn: not at -vv or CAIRN_LOG=trace (a dependency's debug
//! lines included), not from a server that echoes its URL, not from an endpoint
//! or database URL that carries a password, not into child processes' view of
//! the environment, not through hooks. Every test registers the secrets it
//! plants with `SecretScan` and scans everything cairn printed and stored.

mod common;

use std::time::{Duration, Instant};

use common::objstores::{self, unique_name};
use common::receivers::HttpReceiver;
use common::secrets::SecretScan;
use common::servers::{self, PASSWORD, rand_name};
use common::{Env, stderr, stdout};

fn encoded(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// An age-passphrase sqlite job `app` writing to the S3 destination `remote`.
fn s3_setup(env: &Env, endpoint: &str) -> String {
    let s3 = objstores::s3();
    let bucket = unique_name("sec");
    s3.create_bucket(&bucket);
    common::create_sample_db(&env.path("app.db"), 50);
    env.write_config(&format!(
        "[destinations.remote]\nkind = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{endpoint}\"\nregion = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"${{TEST_S3_SECRET}}\"\n\n[jobs.app]\nsource = {{ kind = \"sqlite\", path = \"app.db\" }}\ndestinations = [\"remote\"]\nencryption = {{ kind = \"age-passphrase\", passphrase_env = \"TEST_PASSPHRASE\" }}\n",
        s3.region, s3.access_key
    ));
    bucket
}

const PASSPHRASE: &str = "planted-passphrase-7Qx";

#[test]
fn the_s3_secret_key_stays_out_of_debug_and_trace_logs() {
    let env = Env::new();
    s3_setup(&env, &objstores::s3().endpoint());
    let mut scan = SecretScan::new();
    scan.register(&objstores::s3().secret_key)
        .register(PASSPHRASE);
    let vars = [
        ("TEST_S3_SECRET", objstores::s3().secret_key.as_str()),
        ("TEST_PASSPHRASE", PASSPHRASE),
    ];
    let run = |args: &[&str], log: Option<&str>| {
        let mut cmd = env.cairn();
        cmd.envs(vars);
        if let Some(filter) = log {
            cmd.env("CAIRN_LOG", filter);
        }
        let out = cmd.args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        out
    };
    let debug = run(&["-vv", "backup", "app"], None);
    scan.assert_output("backup -vv", &debug);
    // Trace lets every dependency speak, request signing included.
    let trace = run(&["--log-format", "json", "backup", "app"], Some("trace"));
    scan.assert_output("backup with CAIRN_LOG=trace", &trace);
    let lines = stderr(&trace);
    assert!(
        lines.contains("\"level\":\"TRACE\"") || lines.contains("\"level\":\"DEBUG\""),
        "{lines}"
    );
    assert!(
        lines
            .lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "redaction must keep JSON lines valid: {lines}"
    );
    // The request signer prints its credentials at debug: masked.
    assert!(lines.contains("***"), "{lines}");
    let verify = run(&["verify", "app"], Some("debug"));
    scan.assert_output("verify at debug", &verify);
    assert!(stderr(&verify).contains("DEBUG"), "{}", stderr(&verify));
    scan.assert_stored(&env, &vars);
}

#[test]
fn credentials_in_an_endpoint_url_are_never_shown() {
    let env = Env::new();
    let planted = "endpoint-Pw-5s9";
    let endpoint = format!(
        "http://planted-user:{planted}@127.0.0.1:{}",
        objstores::s3().port
    );
    s3_setup(&env, &endpoint);
    let mut scan = SecretScan::new();
    scan.register(planted).register(&objstores::s3().secret_key);
    let vars = [
        ("TEST_S3_SECRET", objstores::s3().secret_key.as_str()),
        ("TEST_PASSPHRASE", PASSPHRASE),
    ];
    // Whether the store accepts the userinfo or not, nothing may show it.
    for args in [
        &["backup", "app"][..],
        &["-vv", "check"],
        &["list", "--json"],
        &["status", "--json"],
    ] {
        let out = env.cairn().envs(vars).args(args).output().unwrap();
        scan.assert_output(&args.join(" "), &out);
    }
    scan.assert_stored(&env, &vars);
}

#[test]
fn a_webhook_server_that_echoes_its_url_leaks_no_token() {
    let env = Env::new();
    let hook = HttpReceiver::start();
    let token = "T0KEN-planted-8f3k2";
    let path = format!("/hooks/{token}");
    // The server names the path it did not like, as many do.
    hook.set_body(&format!("unknown webhook {path}: check your URL"));
    hook.respond_with(&[404, 404, 404, 404, 404, 404]);
    common::create_sample_db(&env.path("app.db"), 5);
    env.write_config(&format!(
        "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[jobs.app]\nsource = {{ kind = \"sqlite\", path = \"missing.db\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\nnotify = [\"ops\"]\n\n[notify.ops]\nkind = \"webhook\"\nurl = \"{}\"\nretries = 0\n",
        hook.url(&path)
    ));
    let mut scan = SecretScan::new();
    scan.register(token);
    let test = env
        .cairn()
        .args(["notify", "test", "ops"])
        .output()
        .unwrap();
    assert!(!test.status.success());
    assert!(
        stderr(&test).contains("404") || stdout(&test).contains("404"),
        "{test:?}"
    );
    scan.assert_output("notify test", &test);
    let backup = env.cairn().args(["-v", "backup", "app"]).output().unwrap();
    assert_eq!(backup.status.code(), Some(1), "{}", stderr(&backup));
    assert!(hook.wait_for(2, Duration::from_secs(10)).len() >= 2);
    scan.assert_output("backup", &backup);
    scan.assert_stored(&env, &[]);
}

#[test]
fn a_password_in_a_postgres_url_query_is_moved_out_of_everything_shown() {
    let pg = servers::postgres();
    let db = rand_name();
    pg.create_db(&db);
    pg.sql(
        &db,
        "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2)",
    );
    let env = Env::new();
    let url = |db: &str| {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable&password={}",
            pg.port,
            encoded(PASSWORD)
        )
    };
    env.write_config(&format!(
        "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[jobs.good]\nsource = {{ kind = \"postgres\", url = \"{}\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\n\n[jobs.bad]\nsource = {{ kind = \"postgres\", url = \"{}\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\n",
        url(&db),
        url("no_such_database_here")
    ));
    let mut scan = SecretScan::new();
    scan.register(PASSWORD);
    // The password works from the query, as libpq would take it.
    let good = env.cairn().args(["backup", "good"]).output().unwrap();
    assert!(good.status.success(), "{}", stderr(&good));
    scan.assert_output("backup good", &good);
    let bad = env
        .cairn()
        .args(["backup", "bad", "--json"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("no_such_database_here"),
        "{}",
        stderr(&bad)
    );
    scan.assert_output("backup bad", &bad);
    let restore = env
        .cairn()
        .args(["restore", "good", "--dry-run", "--to", &url(&db)])
        .output()
        .unwrap();
    scan.assert_output("restore --dry-run", &restore);
    scan.assert_stored(&env, &[]);
}

#[test]
fn children_see_a_minimal_environment_and_hook_values_are_not_shell_code() {
    let env = Env::new();
    let other = "other-secret-9Zk1p";
    // Pasted into `sh -c`, this value would run `touch injected`.
    let value = "a\"; touch injected; echo \"";
    env.write_config(
        "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[jobs.app]\nsource = { kind = \"command\", backup = [\"sh\", \"-c\", \"env > source-env.txt; echo data\"], restore = [\"sh\", \"-c\", \"env > restore-env.txt; cat > /dev/null\"], env = [\"AWS_PROFILE\"] }\ndestinations = [\"local\"]\nencryption = { kind = \"none\" }\nhooks = { before = [\"env > hook-env.txt; printf '%s' \\\"${HOOK_VALUE}\\\" > hook-value.txt; printf '%s' $${HOME:+home-set} > dollar.txt\"], env = [\"EXTRA_FOR_HOOKS\"] }\n",
    );
    let run = |args: &[&str]| {
        let out = env
            .cairn()
            .env("OTHER_SECRET", other)
            .env("AWS_PROFILE", "backup-profile")
            .env("EXTRA_FOR_HOOKS", "extra-value")
            .env("HOOK_VALUE", value)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    };
    run(&["backup", "app"]);
    run(&["restore", "app"]);
    let read = |name: &str| std::fs::read_to_string(env.path(name)).unwrap();
    let mut scan = SecretScan::new();
    scan.register(other);
    for file in ["source-env.txt", "restore-env.txt", "hook-env.txt"] {
        let text = read(file);
        scan.assert_clean(file, text.as_bytes());
        assert!(
            text.lines().any(|l| l.starts_with("PATH=")),
            "{file}: {text}"
        );
        assert!(
            !text.contains("HOOK_VALUE=") || file == "hook-env.txt",
            "{file}: {text}"
        );
    }
    assert!(read("source-env.txt").contains("AWS_PROFILE=backup-profile"));
    assert!(!read("source-env.txt").contains("EXTRA_FOR_HOOKS"));
    let hook = read("hook-env.txt");
    assert!(
        hook.contains("CAIRN_JOB=app") && hook.contains("CAIRN_STATUS=running"),
        "{hook}"
    );
    assert!(hook.contains("EXTRA_FOR_HOOKS=extra-value"), "{hook}");
    assert!(!hook.contains("AWS_PROFILE"), "{hook}");
    assert_eq!(read("hook-value.txt"), value);
    assert!(
        !env.path("injected").exists(),
        "a ${{VAR}} value ran as shell code"
    );
    // `$$` still means a literal `$`, so the shell expanded ${HOME:+…}.
    assert_eq!(read("dollar.txt"), "home-set");
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for the process.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn a_hook_that_runs_too_long_is_killed_with_its_children() {
    let env = Env::new();
    common::create_sample_db(&env.path("app.db"), 5);
    env.write_config(&format!(
        "{}hooks = {{ before = [\"sleep 60 & echo $! > child.pid; echo started; sleep 60\"], timeout = \"1s\" }}\n",
        env.single_job_config(r#"{ kind = "sqlite", path = "app.db" }"#, r#"{ kind = "none" }"#)
    ));
    let started = Instant::now();
    let out = env.cairn().args(["backup", "app"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let err = stderr(&out);
    assert!(
        err.contains("before hook `sleep` timed out after 1s"),
        "{err}"
    );
    let pid: i32 = std::fs::read_to_string(env.path("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !pid_alive(pid),
        "the hook's background child {pid} survived"
    );
}

#[test]
fn hook_output_is_streamed_into_the_log_with_secrets_masked() {
    let env = Env::new();
    common::create_sample_db(&env.path("app.db"), 5);
    env.write_config(&format!(
        "{}hooks = {{ before = [\"echo \\\"before sees ${{TEST_PASSPHRASE}}\\\"; echo \\\"warning ${{TEST_PASSPHRASE}}\\\" >&2\"], after = [\"echo \\\"failing with ${{TEST_PASSPHRASE}}\\\" >&2; exit 4\"] }}\n",
        env.single_job_config(
            r#"{ kind = "sqlite", path = "app.db" }"#,
            r#"{ kind = "age-passphrase", passphrase_env = "TEST_PASSPHRASE" }"#
        )
    ));
    let out = env
        .cairn()
        .env("TEST_PASSPHRASE", PASSPHRASE)
        .args(["-v", "backup", "app"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the after hook fails: {}",
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(err.contains("before sees ***"), "{err}");
    assert!(err.contains("warning ***"), "{err}");
    assert!(
        err.contains("after hook `echo` failed") && err.contains("failing with ***"),
        "{err}"
    );
    let mut scan = SecretScan::new();
    scan.register(PASSPHRASE);
    scan.assert_output("backup", &out);
    scan.assert_stored(&env, &[("TEST_PASSPHRASE", PASSPHRASE)]);
    let history = env
        .cairn()
        .env("TEST_PASSPHRASE", PASSPHRASE)
        .args(["history", "--json"])
        .output()
        .unwrap();
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&history.stdout).unwrap();
    let backup = runs.iter().find(|r| r["kind"] == "backup").unwrap();
    let id = backup["id"].as_i64().unwrap().to_string();
    let one = env
        .cairn()
        .env("TEST_PASSPHRASE", PASSPHRASE)
        .args(["history", "--run", &id, "--json"])
        .output()
        .unwrap();
    let run: serde_json::Value = serde_json::from_slice(&one.stdout).unwrap();
    let log = run["log"].as_str().unwrap();
    assert!(
        log.contains("before sees ***") && log.contains("warning ***"),
        "{log}"
    );
}

/// Writes hidden in a check or a validation rule: a second statement after a
/// closing parenthesis, and (on servers) a function that deletes.
const BREAKOUT: &str = "SELECT 1 AS x) q; DELETE FROM items; SELECT * FROM (SELECT 1";

fn health_and_validate(env: &Env, db_password: bool) -> (serde_json::Value, serde_json::Value) {
    let run = |args: &[&str]| {
        let mut cmd = env.cairn();
        if db_password {
            cmd.env("DB_PASSWORD", PASSWORD);
        }
        let out = cmd.args(args).arg("--json").output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)))
    };
    (run(&["health"]), run(&["validate", "app"]))
}

fn checks_and_rules(extra_check: &str) -> String {
    format!(
        "validate = {{ rules = [{{ name = \"breakout\", sql = \"{BREAKOUT}\" }}] }}\n\n[checks.breakout]\nkind = \"sql\"\njob = \"app\"\nquery = \"{BREAKOUT}\"\n{extra_check}"
    )
}

fn outcome<'a>(outcomes: &'a serde_json::Value, check: &str) -> &'a serde_json::Value {
    outcomes
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["check"] == check)
        .unwrap_or_else(|| panic!("no check {check}: {outcomes}"))
}

fn assert_refused(health: &serde_json::Value, validate: &serde_json::Value) {
    let check = outcome(health, "breakout");
    assert_eq!(check["ok"], false, "{check}");
    assert!(
        check["reason"]
            .as_str()
            .unwrap()
            .contains("more than one statement"),
        "{check}"
    );
    let rule = &validate[0]["rules"][0];
    assert_eq!(rule["ok"], false, "{rule}");
    assert!(
        rule["error"]
            .as_str()
            .unwrap()
            .contains("more than one statement"),
        "{rule}"
    );
}

#[test]
fn sqlite_checks_and_rules_cannot_write() {
    let env = Env::new();
    let conn = rusqlite::Connection::open(env.path("app.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE items (id INTEGER PRIMARY KEY); INSERT INTO items VALUES (1), (2);",
    )
    .unwrap();
    drop(conn);
    env.write_config(&format!(
        "{}{}",
        env.single_job_config(
            r#"{ kind = "sqlite", path = "app.db" }"#,
            r#"{ kind = "none" }"#
        ),
        checks_and_rules("")
    ));
    let (health, validate) = health_and_validate(&env, false);
    assert_refused(&health, &validate);
    assert_eq!(common::count_rows(&env.path("app.db"), "items"), 2);
}

#[test]
fn postgres_checks_and_rules_run_read_only() {
    let pg = servers::postgres();
    let db = rand_name();
    pg.create_db(&db);
    pg.sql(
        &db,
        "CREATE TABLE items (id int); INSERT INTO items VALUES (1), (2);
         CREATE FUNCTION wipe() RETURNS int LANGUAGE sql AS 'DELETE FROM items; SELECT 0';",
    );
    let env = Env::new();
    env.write_config(&format!(
        "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[jobs.app]\nsource = {{ kind = \"postgres\", url = \"{}\", password_env = \"DB_PASSWORD\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\n{}",
        pg.url_without_password(&db),
        checks_and_rules(
            "\n[checks.function]\nkind = \"sql\"\njob = \"app\"\nquery = \"SELECT 1 AS n WHERE wipe() = 1\"\n"
        )
    ));
    let (health, validate) = health_and_validate(&env, true);
    assert_refused(&health, &validate);
    let function = outcome(&health, "function");
    assert_eq!(function["ok"], false, "{function}");
    assert!(
        function["reason"]
            .as_str()
            .unwrap()
            .contains("read-only transaction"),
        "{function}"
    );
    assert_eq!(pg.sql(&db, "SELECT count(*) FROM items"), "2");
}

#[test]
fn mysql_checks_and_rules_run_read_only() {
    let my = servers::mariadb();
    let db = rand_name();
    my.sql("", &format!("CREATE DATABASE {db}"));
    my.sql(
        &db,
        "CREATE TABLE items (id int) ENGINE=InnoDB; INSERT INTO items VALUES (1), (2);
         DELIMITER //
         CREATE FUNCTION wipe() RETURNS int MODIFIES SQL DATA BEGIN DELETE FROM items; RETURN 0; END//
         DELIMITER ;",
    );
    let env = Env::new();
    env.write_config(&format!(
        "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[jobs.app]\nsource = {{ kind = \"mysql\", url = \"{}\", password_env = \"DB_PASSWORD\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\n{}",
        my.url_without_password(&db),
        checks_and_rules(
            "\n[checks.function]\nkind = \"sql\"\njob = \"app\"\nquery = \"SELECT 1 AS n FROM DUAL WHERE wipe() = 1\"\n"
        )
    ));
    let (health, validate) = health_and_validate(&env, true);
    assert_refused(&health, &validate);
    let function = outcome(&health, "function");
    assert_eq!(function["ok"], false, "{function}");
    assert!(
        function["reason"].as_str().unwrap().contains("READ ONLY"),
        "{function}"
    );
    assert_eq!(my.sql(&db, "SELECT count(*) FROM items"), "2");
}

#[test]
fn a_damaged_artifact_never_reaches_a_restore_command() {
    let env = Env::new();
    env.write_config(
        "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[jobs.app]\nsource = { kind = \"command\", backup = [\"sh\", \"-c\", \"seq 1 200000\"], restore = [\"sh\", \"-c\", \"cat > restored.txt\"] }\ndestinations = [\"local\"]\nencryption = { kind = \"none\" }\ncompression = \"none\"\nverify = \"off\"\n",
    );
    let entry = env.backup("app");
    let data = env.data_path(&entry);
    let mut bytes = std::fs::read(&data).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0x55;
    std::fs::write(&data, bytes).unwrap();
    let out = env.cairn().args(["restore", "app"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("damaged"), "{}", stderr(&out));
    assert!(
        !env.path("restored.txt").exists(),
        "the restore program was started before the artifact was checked"
    );
    // For artifacts too large to read twice, the check can be skipped: the
    // program then runs, and still never gets the held-back end.
    let out = env
        .cairn()
        .args(["restore", "app", "--no-verify-first"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(env.path("restored.txt").exists());
}

// The harness-wide scan itself: every test's cairn output and stored files
// are checked, so it must catch a leak wherever a test looks elsewhere.

#[test]
#[should_panic(expected = "leaks the secret")]
fn the_harness_fails_a_test_whose_cairn_output_holds_a_registered_secret() {
    let env = Env::new();
    env.register_secret("planted-Secret-4711");
    // clap repeats an unknown argument in its error: cairn "printed" it.
    let _ = env.cairn().arg("--planted-Secret-4711").output();
}

#[test]
#[should_panic(expected = "leaks the secret")]
fn the_harness_fails_a_test_whose_folder_holds_a_harness_secret_in_a_log() {
    let env = Env::new();
    std::fs::write(env.path("daemon.log"), format!("url={PASSWORD}\n")).unwrap();
    drop(env);
}

#[test]
#[should_panic(expected = "leaks the secret")]
fn the_harness_fails_a_test_whose_webhook_body_holds_a_harness_secret() {
    let receiver = HttpReceiver::start();
    let body = format!("{{\"text\":\"{}\"}}", objstores::S3_SECRET_KEY);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", receiver.port)).unwrap();
    std::io::Write::write_all(
        &mut stream,
        format!(
            "POST /hook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    receiver.wait_for(1, Duration::from_secs(10));
    drop(receiver);
}
