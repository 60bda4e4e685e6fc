//! The run side of a claimed fire: a daemon's child learns its claim from the
//! environment, renews the lease while it runs, aborts before the lease ends
//! when it cannot renew, checks the lease before its commit (the fence) and
//! finishes the claim when it ends.
//!
//! The daemon passes `CAIRN_REPLICA`, `CAIRN_CLAIM` (`ID.ATTEMPT`),
//! `CAIRN_SCHEDULED_FOR` (RFC 3339) and `CAIRN_LEASE_MS` to each child.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use jiff::Timestamp;

use crate::cancel::Cancel;
use crate::config::Config;
use crate::state::replicas::RunOrigin;
use crate::state::{ClaimToken, StateStore};
use crate::{Error, Result};

pub const REPLICA_ENV: &str = "CAIRN_REPLICA";
pub const CLAIM_ENV: &str = "CAIRN_CLAIM";
pub const SCHEDULED_FOR_ENV: &str = "CAIRN_SCHEDULED_FOR";
pub const LEASE_ENV: &str = "CAIRN_LEASE_MS";

/// A claim handed to this process by its daemon.
#[derive(Debug, Clone)]
pub struct ChildClaim {
    pub replica: String,
    pub token: ClaimToken,
    pub scheduled_for: Option<Timestamp>,
    pub lease: Duration,
}

/// The run origin of this process from its environment: its replica (a
/// daemon's child, or a CLI given `CAIRN_REPLICA`) and claimed fire, if any.
pub fn origin_from_env() -> (RunOrigin, Option<ChildClaim>) {
    let replica = std::env::var(REPLICA_ENV).ok().filter(|r| !r.is_empty());
    let token = std::env::var(CLAIM_ENV)
        .ok()
        .and_then(|t| t.parse::<ClaimToken>().ok());
    let scheduled_for = std::env::var(SCHEDULED_FOR_ENV)
        .ok()
        .and_then(|t| t.parse::<Timestamp>().ok());
    let lease = std::env::var(LEASE_ENV)
        .ok()
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_millis);
    let claim = match (&replica, token, lease) {
        (Some(replica), Some(token), Some(lease)) => Some(ChildClaim {
            replica: replica.clone(),
            token,
            scheduled_for,
            lease,
        }),
        _ => None,
    };
    let origin = RunOrigin {
        replica,
        scheduled_for: claim.as_ref().and(scheduled_for),
        claim: claim.as_ref().map(|c| c.token),
    };
    (origin, claim)
}

/// The part of the lease kept in reserve: a run aborts when less than this is
/// left without a renewal, and the fence wants at least this much left.
pub fn margin(lease: Duration) -> Duration {
    lease / 3
}

/// A lease being renewed; dropping it stops renewing and finishes the claim.
pub struct Held {
    claim: ChildClaim,
    store: Arc<dyn StateStore>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl ChildClaim {
    /// Starts renewing the lease (and the `job:NAME` claim, so that a dead
    /// replica's claim lapses with its lease) on a store connection of its
    /// own; `cancel` is set when the lease cannot be kept.
    pub fn hold(&self, config: &Config, job: Option<&str>, cancel: Cancel) -> Result<Held> {
        let store: Arc<dyn StateStore> = Arc::from(crate::state::open(config)?);
        let stop = Arc::new(AtomicBool::new(false));
        let lease_ms = self.lease.as_millis() as i64;
        let valid_until = Arc::new(AtomicI64::new(Timestamp::now().as_millisecond() + lease_ms));
        let renewer = {
            let (store, stop, valid_until) = (store.clone(), stop.clone(), valid_until.clone());
            let (claim, cancel) = (self.clone(), cancel.clone());
            let job_claim = job.map(|j| format!("job:{j}"));
            std::thread::spawn(move || {
                let holder = crate::state::sqlite::holder();
                let every = claim.lease / 4;
                while !stop.load(Ordering::SeqCst) {
                    let asked = Timestamp::now().as_millisecond();
                    match store.renew_lease(&claim.token, &claim.replica, claim.lease) {
                        Ok(true) => {
                            valid_until.store(asked + lease_ms, Ordering::SeqCst);
                            // The job claim lapses a margin before the
                            // fire's lease: the replica that takes over a
                            // lapsed fire must not find the job still claimed
                            // by the dead run (the replicas test found the
                            // milliseconds between the two renewals).
                            if let Some(name) = &job_claim {
                                let secs = (claim.lease - margin(claim.lease)).as_secs().max(1);
                                let _ = store.claim(name, &holder, secs);
                            }
                        }
                        Ok(false) => {
                            tracing::error!(claim = %claim.token, "the claim of this run is no longer this replica's (its lease lapsed and another replica took it over): aborting the run, nothing is committed");
                            cancel.cancel();
                            return;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot renew the lease of this run in the state store; the run aborts before the lease ends unless a renewal succeeds")
                        }
                    }
                    sleep_unless(&stop, every);
                }
            })
        };
        // The renewal itself may hang on an unreachable store: the deadline is
        // watched apart from it.
        let watchdog = {
            let (stop, valid_until, claim) = (stop.clone(), valid_until.clone(), self.clone());
            std::thread::spawn(move || {
                let margin_ms = margin(claim.lease).as_millis() as i64;
                while !stop.load(Ordering::SeqCst) {
                    let left =
                        valid_until.load(Ordering::SeqCst) - Timestamp::now().as_millisecond();
                    if left < margin_ms {
                        tracing::error!(claim = %claim.token, left_ms = left, "the lease of this run could not be renewed in the state store: aborting the run before the lease ends, nothing is committed");
                        cancel.cancel();
                        return;
                    }
                    sleep_unless(&stop, Duration::from_millis(100));
                }
            })
        };
        Ok(Held {
            claim: self.clone(),
            store,
            stop,
            threads: vec![renewer, watchdog],
        })
    }
}

fn sleep_unless(stop: &AtomicBool, total: Duration) {
    let step = Duration::from_millis(50);
    let mut slept = Duration::ZERO;
    while slept < total && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(step);
        slept += step;
    }
}

impl Held {
    /// The commit check: the claim is still this run's and its lease has at
    /// least the margin left (the store's answer, not a local guess).
    pub fn fence(&self) -> crate::engine::backup::Fence {
        let (store, claim) = (self.store.clone(), self.claim.clone());
        crate::engine::backup::Fence::new(move || {
            match store.lease_valid(&claim.token, &claim.replica, margin(claim.lease)) {
                Ok(true) => Ok(()),
                Ok(false) => Err(Error::Run(format!(
                    "the lease of claim {} is no longer this replica's ({}) or too short to commit: nothing was committed (another replica may run this fire)",
                    claim.token, claim.replica
                ))),
                Err(e) => Err(Error::Run(format!(
                    "cannot check the lease of claim {} in the state store, so nothing was committed: {e}",
                    claim.token
                ))),
            }
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if let Err(e) = self
            .store
            .finish_claim(&self.claim.token, &self.claim.replica)
        {
            tracing::warn!(error = %e, "the claim of this run could not be finished; it lapses with its lease");
        }
    }
}
