//! What each fuzz target does with one input, and what it asserts.
//!
//! Every input reaches the same function cairn runs on a user's config, on a
//! manifest or archive read from storage, on a cron line or on a retention
//! plan. A target fails when cairn panics, hangs, allocates without bound, or
//! breaks a promise checked here (an archive writing outside its target, a bad
//! artifact kept, the newest good one deleted, a schedule going backwards).
//!
//! The fuzz binaries (`fuzz_targets/`) call these; `tests/fuzz_corpus.rs` in
//! cairn includes this file and replays `fuzz/corpus/` and `fuzz/regressions/`
//! through it on every test run.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn::config::{CompressionKind, Config};
use cairn::keys::{DecryptKey, SecretString};
use cairn::pipeline::EncryptionKind;
use cairn::retention::{Candidate, Policy};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// Plaintext a decrypt input may produce before the target stops reading.
const MAX_PLAINTEXT: u64 = 64 << 20;

/// A config file: parse and validate, as `cairn validate` does before
/// touching anything. An error must name a place inside the text.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::parse(Path::new("/fuzz/cairn.toml"), text) {
        let lines = text.lines().count().max(1);
        if let Some(line) = e.line {
            assert!(
                line >= 1 && line <= lines + 1,
                "line {line} of a {lines}-line config: {e}"
            );
        }
        assert!(!e.message.is_empty(), "an empty error message");
    }
}

/// A manifest read from storage, and a `.minisig` file beside it: a manifest
/// that parses serializes and parses back to the same bytes; no signature
/// made up by the input verifies.
pub fn manifest(data: &[u8]) {
    if let Ok(manifest) = cairn::store::Manifest::from_json(data) {
        let once = manifest.to_json();
        let again = cairn::store::Manifest::from_json(&once)
            .unwrap_or_else(|e| panic!("a manifest cairn wrote does not parse back: {e}"));
        assert_eq!(
            once,
            again.to_json(),
            "the manifest changed on a round trip"
        );
    }
    let key = signing_key();
    assert!(
        key.verify(b"{\"format\":1}\n", data).is_err(),
        "a made-up signature verified"
    );
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cairn::keys::signing::PublicKey::parse(text);
    }
}

/// A folder artifact's tar stream restored into an empty folder: whatever it
/// holds, nothing appears outside that folder, and what appears in it is only
/// files, folders and symbolic links.
pub fn tar_restore(data: &[u8]) {
    let case = Scratch::new("tar");
    let outside = case.path.join("outside");
    let target = case.path.join("target");
    std::fs::create_dir(&outside).expect("create the outside folder");
    let restorer = cairn::source::restorer_for("files").expect("the files restorer");
    if restorer.write(&mut &data[..], &target).is_ok() {
        let _ = restorer.check(&target, cairn::source::CheckLevel::Quick);
    }
    let mut names: Vec<_> = std::fs::read_dir(&case.path)
        .expect("read the case folder")
        .map(|e| e.expect("an entry").file_name())
        .collect();
    names.sort();
    assert!(
        names == ["outside", "target"] || names == ["outside"],
        "the restore wrote beside its target: {names:?}"
    );
    assert!(
        std::fs::read_dir(&outside)
            .expect("read the outside folder")
            .next()
            .is_none(),
        "the restore wrote through a link into a folder beside its target"
    );
    assert!(
        !Path::new(PLANTED).exists(),
        "the restore wrote {PLANTED} through an absolute link"
    );
    if target.exists() {
        only_plain_entries(&target);
    }
}

/// Where the seed `symlink-absolute-then-file.tar` tries to write (through a
/// link to /tmp), and the seed `absolute.tar` (by its absolute name).
const PLANTED: &str = "/tmp/cairn-fuzz-planted";

fn only_plain_entries(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("read a restored folder") {
        let entry = entry.expect("an entry");
        let kind = entry.file_type().expect("a file type");
        assert!(
            kind.is_file() || kind.is_dir() || kind.is_symlink(),
            "the restore made {:?}, which is neither a file, a folder nor a link",
            entry.path()
        );
        if kind.is_dir() {
            only_plain_entries(&entry.path());
        }
    }
}

/// Stored bytes decoded as a restore does. The first byte picks the
/// encryption (age to a fixed identity, OpenPGP with a passphrase, none) and
/// the compression; the rest is the stored object. A decoder may refuse the
/// input, never panic, and never produce more than it is allowed to read.
pub fn decrypt(data: &[u8]) {
    let Some((&choice, stored)) = data.split_first() else {
        return;
    };
    static AGE: OnceLock<DecryptKey> = OnceLock::new();
    static OPENPGP: OnceLock<DecryptKey> = OnceLock::new();
    static NONE: DecryptKey = DecryptKey::None;
    let (encryption, key) = match choice % 3 {
        0 => (EncryptionKind::Age, AGE.get_or_init(age_key)),
        1 => (
            EncryptionKind::Openpgp,
            OPENPGP.get_or_init(|| {
                DecryptKey::OpenPgp(SecretString::from("fuzz passphrase".to_string()))
            }),
        ),
        _ => (EncryptionKind::None, &NONE),
    };
    let compression = match (choice >> 2) % 3 {
        0 => CompressionKind::Zstd,
        1 => CompressionKind::Gzip,
        _ => CompressionKind::None,
    };
    let input: cairn::pipeline::Source = Box::new(io::Cursor::new(stored.to_vec()));
    if let Ok(decoder) = cairn::pipeline::decoder(input, compression, encryption, key) {
        let _ = io::copy(&mut decoder.take(MAX_PLAINTEXT), &mut io::sink());
    }
}

/// A schedule line (expression, then an optional time zone on the second
/// line): every next fire is strictly later than the one before.
pub fn cron(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(3, '\n');
    let expression = lines.next().unwrap_or_default();
    let zone = lines
        .next()
        .map(str::trim)
        .filter(|z| !z.is_empty())
        .unwrap_or("UTC");
    let Ok(schedule) = cairn::cron::Schedule::parse(expression, None, zone) else {
        return;
    };
    // Around the 2026 DST changes in Europe and the US, and near the end of
    // what jiff represents.
    for start in [
        "2026-03-29T00:30:00Z",
        "2026-10-25T00:30:00Z",
        "2026-03-08T06:59:59Z",
        "9999-12-30T00:00:00Z",
    ] {
        let mut at: Timestamp = start.parse().expect("a fixed instant");
        for _ in 0..4 {
            match schedule.next_after(at) {
                Some(next) => {
                    assert!(next > at, "`{expression}` in {zone}: {next} follows {at}");
                    at = next;
                }
                None => break,
            }
        }
        let _ = schedule.interval_hint(at);
    }
}

/// A retention plan: one decision per artifact in order, bad artifacts always
/// deleted, never every good one deleted, an empty policy keeps every good
/// one, and applying the plan to what it kept keeps all of it again.
pub fn retention(data: &[u8]) {
    if data.len() < 9 {
        return;
    }
    let (head, rest) = data.split_at(9);
    let count = |b: u8| (b != 0xff).then_some(u32::from(b % 40));
    let mut policy = Policy {
        keep_last: count(head[0]),
        keep_hourly: count(head[1]),
        keep_daily: count(head[2]),
        keep_weekly: count(head[3]),
        keep_monthly: count(head[4]),
        keep_yearly: count(head[5]),
        keep_within: (head[6] != 0)
            .then(|| std::time::Duration::from_secs(u64::from(head[6]) * 3600)),
        ..Policy::default()
    };
    if head[7] != 0xff {
        policy
            .keep_tags
            .insert("weekly".into(), u32::from(head[7] % 10));
    }
    let zones = [
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",
        "Antarctica/Casey",
    ];
    let zone = TimeZone::get(zones[usize::from(head[8]) % zones.len()]).expect("a bundled zone");
    let now: Timestamp = "2026-12-05T12:00:00Z".parse().expect("a fixed instant");
    let candidates: Vec<Candidate> = rest
        .chunks_exact(5)
        .map(|c| {
            let minutes = i64::from(u32::from_le_bytes([c[0], c[1], c[2], 0]));
            let flags = c[4];
            let offset = jiff::SignedDuration::from_mins(minutes);
            let created_at = if flags & 4 != 0 {
                now.checked_add(offset)
            } else {
                now.checked_sub(offset)
            }
            .unwrap_or(now);
            Candidate {
                id: format!("a{:03}", c[3] % 16),
                created_at,
                tag: (flags & 2 != 0).then(|| "weekly".to_string()),
                good: flags & 1 != 0,
            }
        })
        .collect();

    let plan = cairn::retention::apply(&policy, &candidates, now, &zone);
    assert_eq!(plan.len(), candidates.len(), "one decision per artifact");
    for ((id, decision), candidate) in plan.iter().zip(&candidates) {
        assert_eq!(id, &candidate.id, "decisions in input order");
        if !candidate.good {
            assert!(!decision.is_keep(), "a bad artifact was kept: {id}");
        } else if policy.is_empty() {
            assert!(decision.is_keep(), "an empty policy deleted {id}");
        }
    }
    if candidates.iter().any(|c| c.good) {
        assert!(
            plan.iter().any(|(_, d)| d.is_keep()),
            "every good artifact was deleted"
        );
    }
    let kept: Vec<Candidate> = candidates
        .iter()
        .zip(&plan)
        .filter(|(_, (_, d))| d.is_keep())
        .map(|(c, _)| c.clone())
        .collect();
    let again = cairn::retention::apply(&policy, &kept, now, &zone);
    assert!(
        again.iter().all(|(_, d)| d.is_keep()),
        "applying the plan to what it kept deletes some of it"
    );
}

/// A folder of its own for one input, removed afterwards (without following
/// links: `remove_dir_all` does not).
/// One HTTP request as raw bytes on a connection to a live API and UI server
/// (one job, an admin token; `TOKEN` in the input stands for the token's
/// secret, so the corpus reaches past authentication into every handler's
/// parsing): an answer is never a 500, it comes within 5 s, and the server
/// keeps accepting connections.
pub fn web_request(data: &[u8]) {
    use std::io::Write;
    let (addr, token) = web_server();
    let request = replace_all(data, b"TOKEN", token.as_bytes());
    let mut conn = std::net::TcpStream::connect(addr)
        .unwrap_or_else(|e| panic!("the server stopped accepting connections: {e}"));
    let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let _ = conn.set_write_timeout(Some(std::time::Duration::from_secs(5)));
    if conn.write_all(&request).is_err() {
        return; // The server closed the connection early, as it may.
    }
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 64 << 10 {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!("no answer within 5 s")
            }
            Err(_) => break,
        }
    }
    assert!(
        !head.starts_with(b"HTTP/1.1 500"),
        "a request made the server fail: {}",
        String::from_utf8_lossy(&head[..head.len().min(2048)])
    );
}

fn replace_all(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

static WEB_SCRATCH: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_web_scratch() {
    if let Some(path) = WEB_SCRATCH.get() {
        let _ = std::fs::remove_dir_all(path);
    }
}

/// The server `web_request` talks to, started once per process and left
/// running (with its folder) until the process ends.
fn web_server() -> &'static (std::net::SocketAddr, String) {
    static SERVER: OnceLock<(std::net::SocketAddr, String)> = OnceLock::new();
    SERVER.get_or_init(|| {
        // libFuzzer's C main leaves SIGPIPE deadly (Rust's main ignores it): a
        // server closing a connection early would kill the fuzzer silently.
        // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        let dir = Scratch::new("web");
        let path = dir.path.clone();
        std::mem::forget(dir);
        // libFuzzer ends the process with exit(), so no destructor runs:
        // the folder goes at exit, not with the Scratch.
        let _ = WEB_SCRATCH.set(path.clone());
        // SAFETY: registers a plain function with no arguments.
        unsafe { libc::atexit(remove_web_scratch) };
        let text = format!(
            "[destinations.local]\nkind = \"fs\"\npath = \"{0}/backups\"\n\n\
             [jobs.app]\nsource = {{ kind = \"sqlite\", path = \"{0}/app.db\" }}\n\
             destinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\n\n\
             [daemon]\nlisten = \"127.0.0.1:0\"\nrestore_root = \"{0}/restores\"\n\n\
             [state]\npath = \"{0}/state.db\"\n",
            path.display()
        );
        let config_path = path.join("cairn.toml");
        std::fs::write(&config_path, &text).expect("write the web config");
        let config = Config::parse(&config_path, &text).expect("the web config parses");
        let store = cairn::state::open(&config).expect("open the state store");
        let (_, secret) = cairn::auth::token::create(
            store.as_ref(),
            "fuzz",
            cairn::state::Role::Admin,
            None,
            Vec::new(),
            Timestamp::now(),
        )
        .expect("create the admin token");
        drop(store);
        let state = cairn::web::AppState::new(
            std::sync::Arc::new(std::sync::RwLock::new(config)),
            std::time::Duration::from_secs(60),
        );
        let server = cairn::web::Server::start(
            "127.0.0.1:0".parse().expect("an address"),
            std::sync::Arc::new(state),
        )
        .expect("start the web server");
        let addr = server.local_addr();
        std::mem::forget(server);
        (addr, secret)
    })
}

struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new(what: &str) -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "cairn-fuzz-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a scratch folder");
        Scratch { path }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The age identity the decrypt corpus is encrypted to (a key for fuzzing
/// only; it protects nothing).
const FUZZ_IDENTITY: &str =
    "AGE-SECRET-KEY-1DT3EKAJFPA64PXTPF52VS2G753YTTQ43W4GG8QJQNT8FZ9HZJ9DSTEXCVH\n";

fn age_key() -> DecryptKey {
    let case = Scratch::new("identity");
    let path = case.path.join("identity.txt");
    std::fs::write(&path, FUZZ_IDENTITY).expect("write the fuzz identity");
    DecryptKey::AgeIdentities(cairn::keys::load_identities(&path).expect("the fuzz identity loads"))
}

fn signing_key() -> &'static cairn::keys::signing::PublicKey {
    static KEY: OnceLock<cairn::keys::signing::PublicKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let generated = cairn::keys::signing::generate().expect("generate a signing key");
        cairn::keys::signing::PublicKey::parse(&generated.public_key).expect("parse it back")
    })
}
