//! What several daemons sharing one store agree through it: claims of
//! scheduled fires with leases, and the replicas' heartbeats.
//!
//! A fire is the row `(job, kind, scheduled_for)`, inserted once: the replica
//! whose insert made it holds the claim and a lease that it renews while the
//! run lasts. The claim's token (row id and attempt) fences the run: a run
//! whose lease lapsed, or whose claim another replica took over, fails the
//! check ([`super::StateStore::lease_valid`]) and commits nothing.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// One fire of one schedule: what is claimed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FireKey {
    /// The job, or `check:NAME` for health checks.
    pub job: String,
    /// `backup`, `drill`, `repair`, `check`.
    pub kind: String,
    /// The nominal time of the fire (before jitter).
    pub scheduled_for: Timestamp,
}

/// The claim a run holds: its row and the attempt (a take-over increments
/// it, so the old holder's token no longer fences).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimToken {
    pub id: i64,
    pub attempt: u32,
}

impl fmt::Display for ClaimToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.id, self.attempt)
    }
}

impl FromStr for ClaimToken {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a claim token (ID.ATTEMPT)");
        let (id, attempt) = text.split_once('.').ok_or_else(bad)?;
        Ok(ClaimToken {
            id: id.parse().map_err(|_| bad())?,
            attempt: attempt.parse().map_err(|_| bad())?,
        })
    }
}

/// What claiming a fire gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    Won(ClaimToken),
    /// Another replica claimed it first.
    Lost {
        by: String,
    },
}

/// A claim whose lease lapsed, now held by the replica that took it over
/// (with a new lease): it re-runs the fire under `token`, or finishes the claim.
#[derive(Debug, Clone)]
pub struct AbandonedFire {
    pub token: ClaimToken,
    pub fire: FireKey,
    /// The replica that let the lease lapse.
    pub abandoned_by: String,
    /// The runs under the claim that were still `running`, now `interrupted`.
    pub runs: Vec<super::RunRecord>,
}

/// One daemon as it last reported itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    pub started_at: Timestamp,
    pub last_heartbeat: Timestamp,
    pub runs_in_progress: u32,
    /// SHA-256 (hex) of the config file's bytes: replicas should agree.
    pub config_fingerprint: String,
    /// Set when it stopped cleanly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<Timestamp>,
}

impl ReplicaInfo {
    /// Up: not stopped, and heard from within `silence`.
    pub fn up(&self, now: Timestamp, silence: std::time::Duration) -> bool {
        self.stopped_at.is_none()
            && now.as_millisecond() - self.last_heartbeat.as_millisecond()
                <= silence.as_millis() as i64
    }
}

/// Where this process's runs come from: set once by the front end (a daemon's
/// child is told its replica, fire and claim), read when a run is recorded.
#[derive(Debug, Clone, Default)]
pub struct RunOrigin {
    pub replica: Option<String>,
    pub scheduled_for: Option<Timestamp>,
    pub claim: Option<ClaimToken>,
}

static ORIGIN: std::sync::OnceLock<RunOrigin> = std::sync::OnceLock::new();

/// Sets the origin of this process's runs; only the first call counts.
pub fn set_origin(origin: RunOrigin) {
    let _ = ORIGIN.set(origin);
}

pub fn origin() -> RunOrigin {
    ORIGIN.get().cloned().unwrap_or_default()
}

/// This process's replica figures for `/metrics` (the daemon counts, the web
/// server in the same process reads).
#[derive(Debug, Default)]
pub struct Counters {
    won: std::sync::atomic::AtomicU64,
    lost: std::sync::atomic::AtomicU64,
    /// 0 unknown, 1 up, 2 down.
    store: std::sync::atomic::AtomicU8,
    claim_micros_max: std::sync::atomic::AtomicU64,
    late_millis_max: std::sync::atomic::AtomicI64,
}

static COUNTERS: std::sync::OnceLock<Counters> = std::sync::OnceLock::new();

pub fn counters() -> &'static Counters {
    COUNTERS.get_or_init(Counters::default)
}

impl Counters {
    pub fn claimed(&self, won: bool) {
        let counter = if won { &self.won } else { &self.lost };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn store_up(&self, up: bool) {
        self.store
            .store(if up { 1 } else { 2 }, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn claim_latency(&self, took: std::time::Duration) {
        self.claim_micros_max.fetch_max(
            took.as_micros() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    pub fn started_late(&self, millis: i64) {
        self.late_millis_max
            .fetch_max(millis, std::sync::atomic::Ordering::Relaxed);
    }

    /// (won, lost) claims since this process started.
    pub fn claims(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.won.load(Relaxed), self.lost.load(Relaxed))
    }

    /// What the daemon's last heartbeat found: `None` outside a daemon.
    pub fn store_reachable(&self) -> Option<bool> {
        match self.store.load(std::sync::atomic::Ordering::Relaxed) {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        }
    }

    /// The slowest claim and the latest start seen (benchmarks).
    pub fn worst(&self) -> (std::time::Duration, i64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            std::time::Duration::from_micros(self.claim_micros_max.load(Relaxed)),
            self.late_millis_max.load(Relaxed),
        )
    }
}
