//! Real database servers for tests: PostgreSQL (Debian `postgresql`) and MariaDB
//! (Debian `mariadb-server`), each started once per test binary in a temp folder
//! on a free 127.0.0.1 port, with a password, and stopped by a watcher process
//! when the test binary exits. Tests create their own databases in them.
#![allow(dead_code)]
// The servers outlive their spawning call on purpose: a watcher stops them.
#![allow(clippy::zombie_processes)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "s3cret-Pw'\"x";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stops the server (by running `stop`) once this test process has exited.
fn reap_after_exit(stop: &str, dir: &Path) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
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

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} did not become ready"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn newest_pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server is not installed (Debian package `postgresql`; scripts/install-test-deps installs it)")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no initdb under /usr/lib/postgresql/*/bin")
}

pub struct Postgres {
    pub port: u16,
    pub bin: PathBuf,
    dir: PathBuf,
}

/// `program` run as the `postgres` user when this process is root (initdb and
/// the server refuse to run as root).
fn as_postgres(program: PathBuf) -> Command {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.stdin(Stdio::null());
    cmd
}

fn pg_ctl_start(bin: &Path, dir: &Path, port: u16) {
    run(
        as_postgres(bin.join("pg_ctl"))
            .arg("-D")
            .arg(dir.join("data"))
            .arg("-l")
            .arg(dir.join("log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50",
                dir.display()
            ))
            .args(["-w", "start"]),
        "pg_ctl start",
    );
}

impl Postgres {
    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/DB` (password percent-encoded).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{db}",
            urlencode(PASSWORD),
            self.port
        )
    }

    /// The URL without a password (the tests pass it through password_env).
    pub fn url_without_password(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL with psql and returns unaligned tuples-only output.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", db, "-c", sql])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs a SQL script file's worth of statements.
    pub fn script(&self, db: &str, sql: &str) {
        let path = self.dir.join(format!("script-{}.sql", rand_name()));
        std::fs::write(&path, sql).expect("write script");
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", db, "-f"])
            .arg(&path)
            .env("PGPASSWORD", PASSWORD)
            .output()
            .expect("psql");
        let _ = std::fs::remove_file(&path);
        assert!(
            out.status.success(),
            "psql script: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn create_db(&self, name: &str) {
        self.sql("postgres", &format!("CREATE DATABASE \"{name}\""));
    }

    /// Stops the server (`pg_ctl stop -m fast`: sessions are ended); only for a
    /// server of the test's own ([`start_postgres`]).
    pub fn stop(&self) {
        run(
            as_postgres(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-m", "fast", "-w", "stop"]),
            "pg_ctl stop",
        );
    }

    /// Starts a stopped server again on the same port and data.
    pub fn start(&self) {
        pg_ctl_start(&self.bin, &self.dir, self.port);
        wait_until("postgres", || self.ready());
    }

    fn ready(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn rand_name() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The PostgreSQL server shared by this test binary.
pub fn postgres() -> &'static Postgres {
    static SERVER: OnceLock<Postgres> = OnceLock::new();
    SERVER.get_or_init(start_postgres)
}

/// A new server of its own (for restores that need an empty one).
pub fn start_postgres() -> Postgres {
    let bin = newest_pg_bin();
    let dir = tempfile::Builder::new()
        .prefix("cairn-pg-")
        .tempdir()
        .expect("temp dir")
        .keep();
    let data = dir.join("data");
    let pwfile = dir.join("pw");
    std::fs::write(&pwfile, PASSWORD).expect("pwfile");
    if is_root() {
        run(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir),
            "chown",
        );
        run(Command::new("chmod").arg("700").arg(&dir), "chmod");
    }
    run(
        as_postgres(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .arg(format!("--pwfile={}", pwfile.display())),
        "initdb",
    );
    let port = free_port();
    pg_ctl_start(&bin, &dir, port);
    let stop = if is_root() {
        format!(
            "runuser -u postgres -- {} -D {} -m immediate stop",
            bin.join("pg_ctl").display(),
            data.display()
        )
    } else {
        format!(
            "{} -D {} -m immediate stop",
            bin.join("pg_ctl").display(),
            data.display()
        )
    };
    reap_after_exit(&stop, &dir);
    let server = Postgres { port, bin, dir };
    wait_until("postgres", || server.ready());
    server
}

pub struct Mariadb {
    pub port: u16,
    socket: PathBuf,
    dir: PathBuf,
}

pub const MY_USER: &str = "cairn";

impl Mariadb {
    pub fn url(&self, db: &str) -> String {
        format!(
            "mysql://{MY_USER}:{}@127.0.0.1:{}/{db}",
            urlencode(PASSWORD),
            self.port
        )
    }

    pub fn url_without_password(&self, db: &str) -> String {
        format!("mysql://{MY_USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL as root over the socket; returns tab-separated rows.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let mut cmd = Command::new("mariadb");
        cmd.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-u", "root", "--batch", "--skip-column-names", "-e", sql]);
        if !db.is_empty() {
            cmd.arg(db);
        }
        let out = cmd.output().expect("mariadb client");
        assert!(
            out.status.success(),
            "mariadb {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// The MariaDB server shared by this test binary.
pub fn mariadb() -> &'static Mariadb {
    static SERVER: OnceLock<Mariadb> = OnceLock::new();
    SERVER.get_or_init(start_mariadb)
}

fn start_mariadb() -> Mariadb {
    let dir = tempfile::Builder::new()
        .prefix("cairn-my-")
        .tempdir()
        .expect("temp dir")
        .keep();
    let data = dir.join("data");
    let user = if is_root() {
        "root".to_string()
    } else {
        std::env::var("USER").unwrap_or_default()
    };
    run(
        Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--user={user}"))
            .args(["--auth-root-authentication-method=socket", "--skip-test-db"]),
        "mariadb-install-db",
    );
    let port = free_port();
    let socket = dir.join("sock");
    let pid_file = dir.join("pid");
    Command::new("mariadbd")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--pid-file={}", pid_file.display()))
        .arg(format!("--port={port}"))
        .args([
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=64M",
        ])
        .arg(format!("--user={user}"))
        .arg(format!("--log-error={}", dir.join("err.log").display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mariadbd (Debian package `mariadb-server`)");
    reap_after_exit(&format!("kill $(cat '{}')", pid_file.display()), &dir);
    let server = Mariadb { port, socket, dir };
    wait_until("mariadb", || {
        Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", server.socket.display()))
            .args(["-u", "root", "-e", "SELECT 1"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    let pw = PASSWORD.replace('\\', "\\\\").replace('\'', "\\'");
    server.sql(
        "",
        &format!(
            "CREATE USER '{MY_USER}'@'%' IDENTIFIED BY '{pw}'; GRANT ALL PRIVILEGES ON *.* TO '{MY_USER}'@'%' WITH GRANT OPTION; FLUSH PRIVILEGES;"
        ),
    );
    server
}

/// PgBouncer in transaction mode in front of a PostgreSQL server (Debian
/// `pgbouncer`): clients get a server connection per transaction only.
pub struct Pgbouncer {
    pub port: u16,
    dir: PathBuf,
}

impl Pgbouncer {
    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/DB` through PgBouncer.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{db}",
            urlencode(PASSWORD),
            self.port
        )
    }

    pub fn url_without_password(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

/// The PgBouncer (transaction mode) in front of [`postgres`], shared by this test binary.
pub fn pgbouncer() -> &'static Pgbouncer {
    static SERVER: OnceLock<Pgbouncer> = OnceLock::new();
    SERVER.get_or_init(|| start_pgbouncer(postgres()))
}

fn start_pgbouncer(pg: &Postgres) -> Pgbouncer {
    let program = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("pgbouncer is not installed (Debian package `pgbouncer`; scripts/install-test-deps installs it)");
    let dir = tempfile::Builder::new()
        .prefix("cairn-pgb-")
        .tempdir()
        .expect("temp dir")
        .keep();
    let port = free_port();
    std::fs::write(
        dir.join("userlist.txt"),
        format!("\"postgres\" \"{}\"\n", PASSWORD.replace('"', "\"\"")),
    )
    .expect("userlist");
    std::fs::write(
        dir.join("pgbouncer.ini"),
        format!(
            "[databases]\n* = host=127.0.0.1 port={pg_port}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = scram-sha-256\nauth_file = {dir}/userlist.txt\npool_mode = transaction\nmax_client_conn = 500\ndefault_pool_size = 10\nignore_startup_parameters = extra_float_digits,options\nlogfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
            pg_port = pg.port,
            dir = dir.display()
        ),
    )
    .expect("pgbouncer.ini");
    let mut cmd = Command::new(program);
    if is_root() {
        run(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir),
            "chown",
        );
        cmd.args(["-u", "postgres"]);
    }
    let child = cmd
        .arg(dir.join("pgbouncer.ini"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pgbouncer");
    reap_after_exit(&format!("kill {}", child.id()), &dir);
    let server = Pgbouncer { port, dir };
    wait_until("pgbouncer", || {
        Command::new(pg.bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-d", "postgres"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    server
}
