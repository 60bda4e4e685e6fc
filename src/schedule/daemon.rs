//! The daemon: sleeps until the next fire, runs each due task as a `cairn`
//! child process, and handles reloads and shutdown.
//!
//! Each run is a child process in its own process group (`cairn backup JOB
//! --trigger schedule …`), so a run cannot take the daemon down, its memory is
//! returned when it ends, and stopping it reaches the dump tools it started. The
//! child records itself in the history exactly like a manual run.
//!
//! Time: every wait is capped (`MAX_SLEEP`) and the plan is re-read against the
//! wall clock after each wake, so suspend and clock steps are noticed within
//! that cap. The clock is injected ([`Clock`]) so tests drive time by hand.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::plan::{Fire, Plan};
use crate::config::{Config, RerunAbandoned};
use crate::state::replicas::counters;
use crate::state::{AbandonedFire, ClaimOutcome, FireKey, ScheduleOverride, StateStore, Trigger};
use crate::{Error, Result};

/// The longest single sleep: wall-clock jumps are noticed within this.
pub const MAX_SLEEP: Duration = Duration::from_secs(30);
/// How often the daemon heartbeats, re-reads settings (pauses are read per
/// fire; schedule overrides here) and looks for abandoned claims: a change
/// made anywhere applies within this plus one second.
pub const POLL: Duration = Duration::from_secs(2);
/// Longest wait between wakes, so that polling keeps its pace.
const POLL_WAKE: Duration = Duration::from_secs(1);
/// After the grace period, children get SIGTERM; this long after, SIGKILL.
const KILL_AFTER: Duration = Duration::from_secs(10);

pub const DAEMON_NAMESPACE: &str = "daemon";
pub const PROCESS_KEY: &str = "process";
pub const RELOAD_KEY: &str = "reload";

/// What wakes the daemon besides its timer.
#[derive(Debug)]
pub enum Event {
    /// Time moved (test clocks send it after advancing).
    Tick,
    Reload,
    /// Stop scheduling and let runs finish; a second one aborts them at once.
    Shutdown,
    Finished {
        subject: String,
        key: String,
        success: bool,
    },
    /// A run asked for now (the web API), started like a scheduled one.
    Manual(ManualRun),
}

/// A run outside the schedule: `cairn ARGS… --trigger manual` as a child, under
/// the same rules (one run per subject, `max_concurrent_runs`).
#[derive(Debug)]
pub struct ManualRun {
    pub subject: String,
    pub args: Vec<String>,
    pub limited: bool,
    /// The child's pid, or why it was not started.
    pub reply: Sender<std::result::Result<u32, String>>,
}

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
    /// Waits for an event, at most `max`; `None` when the time ran out.
    fn wait(&self, events: &Receiver<Event>, max: Duration) -> Option<Event>;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn wait(&self, events: &Receiver<Event>, max: Duration) -> Option<Event> {
        match events.recv_timeout(max) {
            Ok(event) => Some(event),
            Err(RecvTimeoutError::Timeout) => None,
            // Nobody can send any more; sleep out the wait.
            Err(RecvTimeoutError::Disconnected) => {
                std::thread::sleep(max);
                None
            }
        }
    }
}

/// A run in progress, as the daemon controls it.
pub trait RunHandle: Send {
    /// Ask it to stop cleanly (SIGTERM to its process group).
    fn terminate(&mut self);
    /// Stop it now (SIGKILL to its process group).
    fn kill(&mut self);
    /// The child's process id, where there is one.
    fn pid(&self) -> Option<u32> {
        None
    }
}

/// Starts runs; reports each end as [`Event::Finished`] on `done`.
pub trait Runner: Send + Sync {
    /// `fire.claim` is the claim the run holds for `replica`, with `lease`.
    fn start(
        &self,
        fire: &Fire,
        replica: &Replica,
        lease: Duration,
        done: Sender<Event>,
    ) -> Result<Box<dyn RunHandle>>;
}

/// Facts the daemon publishes in the state store for `cairn status` and `reload`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub host: String,
    pub started_at: Timestamp,
    pub config: PathBuf,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReloadResult {
    pub at: Timestamp,
    pub accepted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

struct Running {
    handle: Box<dyn RunHandle>,
    limited: bool,
    claim: Option<crate::state::ClaimToken>,
}

/// This daemon among the replicas sharing its state store.
#[derive(Debug, Clone)]
pub struct Replica {
    /// `CAIRN_REPLICA`, else `HOST-PID-RANDOM`.
    pub id: String,
    pub started_at: Timestamp,
    /// SHA-256 (hex) of the config file's bytes.
    pub fingerprint: String,
}

impl Replica {
    pub fn new(config: &Config, id: Option<String>) -> Replica {
        let id = id.filter(|i| !i.is_empty()).unwrap_or_else(|| {
            format!(
                "{}-{}-{:04x}",
                crate::state::host(),
                std::process::id(),
                rand::random::<u16>()
            )
        });
        Replica {
            id,
            started_at: Timestamp::now(),
            fingerprint: fingerprint(config),
        }
    }

    fn info(&self, runs: usize, stopped: bool) -> crate::state::ReplicaInfo {
        let now = Timestamp::now();
        crate::state::ReplicaInfo {
            id: self.id.clone(),
            host: crate::state::host(),
            pid: std::process::id(),
            version: crate::VERSION.to_string(),
            started_at: self.started_at,
            last_heartbeat: now,
            runs_in_progress: runs as u32,
            config_fingerprint: self.fingerprint.clone(),
            stopped_at: stopped.then_some(now),
        }
    }
}

/// SHA-256 (hex) of the config file's bytes (empty when it cannot be read).
pub fn fingerprint(config: &Config) -> String {
    use sha2::Digest;
    std::fs::read(&config.file)
        .map(|bytes| hex::encode(sha2::Sha256::digest(bytes)))
        .unwrap_or_default()
}

/// Runs that count toward `max_concurrent_runs`.
fn limited(running: &HashMap<String, Running>) -> usize {
    running.values().filter(|r| r.limited).count()
}

pub struct Daemon<'a> {
    pub config: Config,
    /// Reads the config again on reload.
    pub load: Box<dyn Fn() -> Result<Config> + 'a>,
    pub store: &'a dyn StateStore,
    pub clock: &'a dyn Clock,
    pub runner: &'a dyn Runner,
    pub events: Receiver<Event>,
    /// Where runs report their end; clones go to each run.
    pub sender: Sender<Event>,
    /// Where the events of runs settled as interrupted go.
    pub run_events: &'a dyn crate::engine::events::EventSink,
    /// Called after start-up and after each reload (systemd readiness).
    pub on_ready: Box<dyn Fn() + 'a>,
    /// Called at every wake (systemd watchdog).
    pub on_wake: Box<dyn Fn() + 'a>,
    pub replica: Replica,
}

/// What a daemon session did, for tests and the exit log.
#[derive(Debug, Default)]
pub struct Summary {
    pub started: Vec<Fire>,
    pub skipped: Vec<(Fire, String)>,
    /// Fires another replica claimed first, with its id.
    pub lost: Vec<(Fire, String)>,
    pub aborted: usize,
}

impl Daemon<'_> {
    pub fn run(self) -> Result<Summary> {
        let Daemon {
            config,
            load,
            store,
            clock,
            runner,
            events,
            sender,
            run_events,
            on_ready,
            on_wake,
            replica,
        } = self;
        crate::engine::runs::settle_orphans(&config, store, run_events);
        let mut summary = Summary::default();
        let mut running: HashMap<String, Running> = HashMap::new();
        let mut queue: VecDeque<Fire> = VecDeque::new();
        let mut overrides = store.schedule_overrides()?;
        let (mut plan, catch_up) = new_plan(&config, store, clock.now(), &overrides)?;
        if let Err(e) = store.heartbeat(&replica.info(0, false)) {
            tracing::warn!(error = %e, "the first heartbeat was not recorded");
        }
        counters().store_up(true);
        tracing::info!(
            tasks = plan.len(),
            jobs = config.jobs.len(),
            replica = %replica.id,
            "daemon started"
        );
        let mut ctx = Dispatch {
            store,
            runner,
            sender: &sender,
            max: config.daemon.max_concurrent_runs,
            summary: &mut summary,
            replica: &replica,
            lease: config.daemon.lease,
            store_up: true,
            paused: store.paused_jobs()?,
        };
        let mut rerun = config.daemon.rerun_abandoned;
        let mut store_alert = super::store_alert::StoreAlert::default();
        store_alert.reached(&config, store, &replica.id);
        let mut last_poll = Instant::now();
        for fire in catch_up {
            ctx.offer(fire, clock.now(), &mut running, &mut queue);
        }
        on_ready();

        let mut stopping: Option<Instant> = None;
        let mut terminated: Option<Instant> = None;
        let mut grace = config.daemon.shutdown_grace;
        let mut keep_history = config.keep_history;
        let mut history_pruned: Option<Timestamp> = None;
        loop {
            on_wake();
            let now = clock.now();
            if last_poll.elapsed() >= POLL {
                last_poll = Instant::now();
                let was_up = ctx.store_up;
                ctx.store_up = match store.heartbeat(&replica.info(running.len(), false)) {
                    Ok(()) => {
                        store_alert.reached(&config, store, &replica.id);
                        match store.paused_jobs() {
                            Ok(paused) => ctx.paused = paused,
                            Err(e) => tracing::warn!(error = %e, "cannot read the paused jobs"),
                        }
                        true
                    }
                    Err(e) => {
                        if was_up {
                            tracing::error!(error = %e, "the state store is unreachable: this replica starts no new runs, and its running ones abort before their leases end, until it is back");
                        }
                        store_alert.unreachable(&config, &replica.id, &e.to_string());
                        false
                    }
                };
                counters().store_up(ctx.store_up);
                if ctx.store_up && !was_up {
                    // Back: fires missed meanwhile are caught up once (the plan's rule).
                    tracing::warn!("the state store is reachable again: resuming");
                    match new_plan(&config, store, now, &overrides) {
                        Ok((new, missed)) => {
                            plan = new;
                            for fire in missed {
                                ctx.offer(fire, now, &mut running, &mut queue);
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "the plan could not be rebuilt"),
                    }
                }
                if ctx.store_up && stopping.is_none() {
                    match store.schedule_overrides() {
                        Ok(now_set) if now_set != overrides => {
                            overrides = now_set;
                            match new_plan(&config, store, now, &overrides) {
                                Ok((new, _)) => {
                                    tracing::info!(
                                        overrides = overrides.len(),
                                        tasks = new.len(),
                                        "schedule overrides changed: applied"
                                    );
                                    plan = new;
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "the schedule overrides could not be applied")
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "cannot read the schedule overrides"),
                    }
                    match store.take_abandoned(&replica.id, ctx.lease) {
                        Ok(taken) => {
                            for abandoned in taken {
                                ctx.abandoned(
                                    &config,
                                    &plan,
                                    abandoned,
                                    rerun,
                                    now,
                                    run_events,
                                    &mut running,
                                );
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot look for abandoned claims"),
                    }
                }
            }
            if history_pruned.is_none_or(|t| now.as_second() - t.as_second() >= 3600) {
                forget_old_runs(store, keep_history, now);
                history_pruned = Some(now);
            }
            if stopping.is_none() && ctx.store_up {
                for fire in plan.due(now) {
                    ctx.offer(fire, now, &mut running, &mut queue);
                }
            }
            if let Some(since) = stopping {
                if running.is_empty() {
                    break;
                }
                if terminated.is_none() && since.elapsed() >= grace {
                    tracing::warn!(
                        runs = running.len(),
                        "shutdown grace period over: aborting the runs still going"
                    );
                    for run in running.values_mut() {
                        run.handle.terminate();
                    }
                    ctx.summary.aborted += running.len();
                    terminated = Some(Instant::now());
                }
                if terminated.is_some_and(|t| t.elapsed() >= KILL_AFTER) {
                    for run in running.values_mut() {
                        run.handle.kill();
                    }
                }
            }
            let wait = match stopping {
                Some(_) => Duration::from_millis(200),
                None => plan
                    .next_wake()
                    .map(|wake| {
                        let ms = wake.as_millisecond() - now.as_millisecond();
                        Duration::from_millis(ms.max(0) as u64)
                    })
                    .unwrap_or(MAX_SLEEP)
                    .min(POLL_WAKE),
            };
            match clock.wait(&events, wait) {
                None | Some(Event::Tick) => {}
                Some(Event::Finished {
                    subject,
                    key,
                    success,
                }) => {
                    let ended = running.remove(&subject);
                    tracing::info!(job = %subject, task = %key, success, "run finished");
                    // The child finishes its claim itself; one that failed
                    // without doing so (killed) leaves the lease to lapse,
                    // and the run is settled as abandoned.
                    if success
                        && let Some(token) = ended.and_then(|r| r.claim)
                        && let Err(e) = store.finish_claim(&token, &replica.id)
                    {
                        tracing::warn!(error = %e, "the claim of a finished run was not finished; it lapses with its lease");
                    }
                    // A child killed by the OOM killer or SIGKILL left its run
                    // `running`: record and alert it now.
                    if !success {
                        crate::engine::runs::settle_orphans(&config, store, run_events);
                    }
                    if stopping.is_none() {
                        ctx.start_queued(clock.now(), &mut running, &mut queue);
                    }
                }
                Some(Event::Manual(manual)) => {
                    let answer = match stopping {
                        Some(_) => Err("the daemon is stopping".to_string()),
                        None => ctx.start_manual(&manual, clock.now(), &mut running),
                    };
                    let _ = manual.reply.send(answer);
                }
                Some(Event::Reload) => {
                    let now = clock.now();
                    let result = (load)().and_then(|new| {
                        let (new_plan, _) = new_plan(&new, store, now, &overrides)?;
                        Ok((new, new_plan))
                    });
                    let record = match result {
                        Ok((new, new_plan)) => {
                            tracing::info!(
                                tasks = new_plan.len(),
                                "configuration reloaded; running jobs continue"
                            );
                            plan = new_plan;
                            ctx.max = new.daemon.max_concurrent_runs;
                            ctx.lease = new.daemon.lease;
                            rerun = new.daemon.rerun_abandoned;
                            grace = new.daemon.shutdown_grace;
                            keep_history = new.keep_history;
                            ReloadResult {
                                at: Timestamp::now(),
                                accepted: true,
                                error: None,
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "the new configuration is invalid; the old one stays in force");
                            ReloadResult {
                                at: Timestamp::now(),
                                accepted: false,
                                error: Some(e.to_string()),
                            }
                        }
                    };
                    if let Ok(value) = serde_json::to_value(&record) {
                        let _ = store.put_value(DAEMON_NAMESPACE, RELOAD_KEY, &value);
                    }
                    on_ready();
                }
                Some(Event::Shutdown) => {
                    if stopping.is_some() {
                        tracing::warn!("second stop request: aborting the runs now");
                        grace = Duration::ZERO;
                    } else {
                        tracing::info!(
                            runs = running.len(),
                            grace_secs = grace.as_secs(),
                            "stopping: no new runs; waiting for the running ones"
                        );
                        for fire in queue.drain(..) {
                            ctx.summary
                                .skipped
                                .push((fire, "the daemon is stopping".into()));
                        }
                        stopping = Some(Instant::now());
                    }
                }
            }
        }
        if let Err(e) = store.heartbeat(&replica.info(0, true)) {
            tracing::warn!(error = %e, "the stop of this replica was not recorded");
        }
        tracing::info!("daemon stopped");
        Ok(summary)
    }
}

/// Keeps the history to `keep` (zero: everything), hourly.
fn forget_old_runs(store: &dyn StateStore, keep: Duration, now: Timestamp) {
    if keep.is_zero() {
        return;
    }
    let Some(cutoff) = jiff::SignedDuration::try_from(keep)
        .ok()
        .and_then(|keep| now.checked_sub(keep).ok())
    else {
        return;
    };
    match store.forget_runs_before(cutoff) {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(runs = n, before = %cutoff, "old runs removed from the history ([state] keep_history)")
        }
        Err(e) => tracing::warn!(error = %e, "old runs could not be removed from the history"),
    }
}

/// A plan for `config` at `now`; marks new entries as seen now so that the next
/// start can tell what it missed.
fn new_plan(
    config: &Config,
    store: &dyn StateStore,
    now: Timestamp,
    overrides: &std::collections::BTreeMap<String, ScheduleOverride>,
) -> Result<(Plan, Vec<Fire>)> {
    let entries = super::entries_with(config, overrides);
    let marks = store.schedule_marks()?;
    for entry in &entries {
        if !marks.contains_key(&entry.key) {
            store.set_schedule_mark(&entry.key, now)?;
        }
    }
    Ok(Plan::new(entries, &marks, now))
}

struct Dispatch<'a, 'b> {
    store: &'a dyn StateStore,
    runner: &'a dyn Runner,
    sender: &'a Sender<Event>,
    max: usize,
    summary: &'b mut Summary,
    replica: &'a Replica,
    lease: Duration,
    /// The last heartbeat reached the store.
    store_up: bool,
    /// Paused jobs as of the last poll (a pause applies within one poll).
    paused: BTreeSet<String>,
}

/// What is claimed for a fire: its job (or check), the kind of run, its time.
fn fire_key(fire: &Fire) -> FireKey {
    let verb = fire.args.first().map_or("backup", String::as_str);
    FireKey {
        job: fire.subject.clone(),
        kind: if verb == "health" { "check" } else { verb }.to_string(),
        scheduled_for: fire.scheduled_at,
    }
}

impl Dispatch<'_, '_> {
    fn skip(&mut self, fire: Fire, why: String) {
        tracing::warn!(job = %fire.subject, task = %fire.key, scheduled_at = %fire.scheduled_at, "fire skipped: {why}");
        self.summary.skipped.push((fire, why));
    }

    /// A fire became due: run it, queue it, or skip it. Its schedule mark is
    /// written by the replica that handles it (skips it, or wins its claim):
    /// replicas that lose the claim add no statement but the claim.
    fn offer(
        &mut self,
        fire: Fire,
        now: Timestamp,
        running: &mut HashMap<String, Running>,
        queue: &mut VecDeque<Fire>,
    ) {
        let why_not = if self.paused.contains(&fire.subject) {
            Some("the job is paused (`cairn resume` to resume)")
        } else if running.contains_key(&fire.subject) {
            Some("its previous run is still going")
        } else if queue.iter().any(|f| f.subject == fire.subject) {
            Some("a run of it is already queued")
        } else {
            None
        };
        if let Some(why) = why_not {
            self.mark(&fire);
            return self.skip(fire, why.into());
        }
        if fire.limited && limited(running) >= self.max {
            tracing::info!(job = %fire.subject, running = running.len(), "queued: max_concurrent_runs reached");
            queue.push_back(fire);
            return;
        }
        self.claim_and_start(fire, now, running);
    }

    fn mark(&self, fire: &Fire) {
        if let Err(e) = self.store.set_schedule_mark(&fire.key, fire.scheduled_at) {
            tracing::warn!(error = %e, "schedule mark not saved");
        }
    }

    /// Claims the fire in the store; only the replica that wins runs it.
    fn claim_and_start(
        &mut self,
        mut fire: Fire,
        now: Timestamp,
        running: &mut HashMap<String, Running>,
    ) {
        let started = Instant::now();
        let outcome = self
            .store
            .claim_fire(&fire_key(&fire), &self.replica.id, self.lease);
        let took = started.elapsed();
        counters().claim_latency(took);
        let claim_us = took.as_micros() as u64;
        match outcome {
            Ok(ClaimOutcome::Won(token)) => {
                counters().claimed(true);
                tracing::debug!(job = %fire.subject, task = %fire.key, claim_us, "fire claimed");
                if fire.trigger != Trigger::Manual {
                    self.mark(&fire);
                }
                fire.claim = Some(token);
                self.start(fire, now, running);
            }
            Ok(ClaimOutcome::Lost { by }) => {
                counters().claimed(false);
                tracing::debug!(job = %fire.subject, task = %fire.key, scheduled_at = %fire.scheduled_at, replica = %by, claim_us, "fire claimed by another replica");
                self.summary.lost.push((fire, by));
            }
            Err(e) => self.skip(
                fire,
                format!("the state store is unreachable, so it was not claimed: {e}"),
            ),
        }
    }

    /// A claim whose lease lapsed, now this replica's: its runs were recorded
    /// interrupted (alert them), then it runs again or is finished.
    #[allow(clippy::too_many_arguments)]
    fn abandoned(
        &mut self,
        config: &Config,
        plan: &Plan,
        abandoned: AbandonedFire,
        rerun: RerunAbandoned,
        now: Timestamp,
        run_events: &dyn crate::engine::events::EventSink,
        running: &mut HashMap<String, Running>,
    ) {
        let AbandonedFire {
            token,
            fire,
            abandoned_by,
            runs,
        } = abandoned;
        for run in &runs {
            tracing::warn!(job = %run.job, run_id = run.id, replica = %abandoned_by, "a run abandoned by its replica (its lease lapsed) is recorded as interrupted");
            run_events.emit(
                config,
                Some(self.store),
                &crate::engine::events::Event::Interrupted { run },
            );
        }
        let entry = plan.upcoming().into_iter().find(|(entry, _)| {
            entry.subject == fire.job
                && fire_key(&Fire {
                    key: String::new(),
                    subject: entry.subject.clone(),
                    args: entry.args.clone(),
                    scheduled_at: fire.scheduled_for,
                    due_at: now,
                    trigger: Trigger::Schedule,
                    limited: entry.limited,
                    claim: None,
                })
                .kind
                    == fire.kind
        });
        let why_not = match (&entry, rerun) {
            (_, RerunAbandoned::Never) => Some("[daemon] rerun_abandoned = \"never\"".to_string()),
            _ if token.attempt > 2 => Some("it was re-run once already".to_string()),
            (None, _) => Some("its schedule is no longer in the config".to_string()),
            (Some((entry, next)), RerunAbandoned::Once) => {
                let interval = entry
                    .when
                    .next_after(fire.scheduled_for)
                    .map(|n| n.as_millisecond() - fire.scheduled_for.as_millisecond())
                    .unwrap_or(i64::MAX);
                let until_next =
                    next.map_or(i64::MAX, |n| n.as_millisecond() - now.as_millisecond());
                if until_next < interval / 2 {
                    Some("its next fire comes within half an interval".to_string())
                } else if running.contains_key(&entry.subject) {
                    Some("a run of it is going on this replica".to_string())
                } else if entry.limited && limited(running) >= self.max {
                    Some("this replica is at max_concurrent_runs".to_string())
                } else {
                    None
                }
            }
        };
        match (why_not, entry) {
            (None, Some((entry, _))) => {
                tracing::warn!(job = %fire.job, kind = %fire.kind, scheduled_for = %fire.scheduled_for, replica = %abandoned_by, "re-running a fire abandoned by another replica");
                let fire = Fire {
                    key: entry.key.clone(),
                    subject: entry.subject.clone(),
                    args: entry.args.clone(),
                    scheduled_at: fire.scheduled_for,
                    due_at: now,
                    trigger: Trigger::Schedule,
                    limited: entry.limited,
                    claim: Some(token),
                };
                self.start(fire, now, running);
            }
            (why, _) => {
                tracing::warn!(job = %fire.job, kind = %fire.kind, scheduled_for = %fire.scheduled_for, replica = %abandoned_by, "a fire abandoned by its replica is not re-run: {}", why.unwrap_or_default());
                if let Err(e) = self.store.finish_claim(&token, &self.replica.id) {
                    tracing::warn!(error = %e, "the claim of an abandoned fire was not finished");
                }
            }
        }
    }

    fn start_queued(
        &mut self,
        now: Timestamp,
        running: &mut HashMap<String, Running>,
        queue: &mut VecDeque<Fire>,
    ) {
        while limited(running) < self.max {
            let Some(position) = queue.iter().position(|f| !running.contains_key(&f.subject))
            else {
                break;
            };
            if let Some(fire) = queue.remove(position) {
                self.claim_and_start(fire, now, running);
            }
        }
    }

    fn start_manual(
        &mut self,
        manual: &ManualRun,
        now: Timestamp,
        running: &mut HashMap<String, Running>,
    ) -> std::result::Result<u32, String> {
        if running.contains_key(&manual.subject) {
            return Err(format!("`{}` is already running", manual.subject));
        }
        if manual.limited && limited(running) >= self.max {
            return Err(format!(
                "{} runs are going ([daemon] max_concurrent_runs); try again later",
                self.max
            ));
        }
        let fire = Fire {
            key: format!("manual:{}", manual.subject),
            subject: manual.subject.clone(),
            args: manual.args.clone(),
            scheduled_at: now,
            due_at: now,
            trigger: Trigger::Manual,
            limited: manual.limited,
            // Not a scheduled fire: the child takes the job's claim itself,
            // as `cairn backup JOB` does on any replica.
            claim: None,
        };
        let handle = self
            .runner
            .start(&fire, self.replica, self.lease, self.sender.clone())
            .map_err(|e| format!("cannot start: {e}"))?;
        let pid = handle.pid().unwrap_or(0);
        tracing::info!(job = %fire.subject, pid, "manual run started");
        running.insert(
            fire.subject,
            Running {
                handle,
                limited: manual.limited,
                claim: None,
            },
        );
        Ok(pid)
    }

    fn start(&mut self, fire: Fire, now: Timestamp, running: &mut HashMap<String, Running>) {
        let lateness_ms = now.as_millisecond() - fire.due_at.as_millisecond();
        counters().started_late(lateness_ms);
        match self
            .runner
            .start(&fire, self.replica, self.lease, self.sender.clone())
        {
            Ok(handle) => {
                tracing::info!(
                    job = %fire.subject,
                    task = %fire.key,
                    trigger = %fire.trigger,
                    scheduled_at = %fire.scheduled_at,
                    lateness_ms,
                    "run started"
                );
                running.insert(
                    fire.subject.clone(),
                    Running {
                        handle,
                        limited: fire.limited,
                        claim: fire.claim,
                    },
                );
                self.summary.started.push(fire);
            }
            Err(e) => {
                if let Some(token) = &fire.claim {
                    let _ = self.store.finish_claim(token, &self.replica.id);
                }
                self.skip(fire, format!("cannot start: {e}"))
            }
        }
    }
}

/// Runs each fire as `cairn --config FILE ARGS… --trigger T` in its own process group.
pub struct ProcessRunner {
    pub exe: PathBuf,
    pub config: PathBuf,
    /// Extra global flags passed on (log format).
    pub global_args: Vec<String>,
}

struct ChildHandle {
    pid: i32,
}

fn signal_group(pid: i32, signal: libc::c_int) {
    // SAFETY: signalling a process group we created; a stale id fails harmlessly.
    unsafe {
        libc::kill(-pid, signal);
    }
}

impl RunHandle for ChildHandle {
    fn terminate(&mut self) {
        signal_group(self.pid, libc::SIGTERM);
    }

    fn kill(&mut self) {
        signal_group(self.pid, libc::SIGKILL);
    }

    fn pid(&self) -> Option<u32> {
        u32::try_from(self.pid).ok()
    }
}

impl Runner for ProcessRunner {
    fn start(
        &self,
        fire: &Fire,
        replica: &Replica,
        lease: Duration,
        done: Sender<Event>,
    ) -> Result<Box<dyn RunHandle>> {
        use std::os::unix::process::CommandExt;
        let trigger = match fire.trigger {
            Trigger::CatchUp => "catch-up",
            Trigger::Manual => "manual",
            Trigger::Schedule => "schedule",
        };
        let mut command = std::process::Command::new(&self.exe);
        command
            .arg("--config")
            .arg(&self.config)
            .args(&self.global_args)
            .args(&fire.args)
            .args(["--trigger", trigger])
            .env(super::lease::REPLICA_ENV, &replica.id)
            .env(super::lease::LEASE_ENV, lease.as_millis().to_string())
            .env(
                super::lease::SCHEDULED_FOR_ENV,
                fire.scheduled_at.to_string(),
            )
            .env_remove(super::lease::CLAIM_ENV)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .process_group(0);
        crate::descriptor_limit::give_back_to(&mut command);
        if let Some(token) = &fire.claim {
            command.env(super::lease::CLAIM_ENV, token.to_string());
        }
        let mut child = command
            .spawn()
            .map_err(|e| Error::Run(format!("cannot start {}: {e}", self.exe.display())))?;
        let pid = child.id() as i32;
        let subject = fire.subject.clone();
        let key = fire.key.clone();
        std::thread::spawn(move || {
            let success = child.wait().is_ok_and(|s| s.success());
            let _ = done.send(Event::Finished {
                subject,
                key,
                success,
            });
        });
        Ok(Box::new(ChildHandle { pid }))
    }
}

/// Publishes this daemon process in the state store; returns what to call at exit.
pub fn publish_process(store: &dyn StateStore, config: &Config) -> Result<ProcessInfo> {
    let info = ProcessInfo {
        pid: std::process::id(),
        host: crate::state::host(),
        started_at: Timestamp::now(),
        config: std::path::absolute(&config.file).unwrap_or_else(|_| config.file.clone()),
        version: crate::VERSION.to_string(),
        stopped_at: None,
    };
    store.put_value(
        DAEMON_NAMESPACE,
        PROCESS_KEY,
        &serde_json::to_value(&info).unwrap_or_default(),
    )?;
    Ok(info)
}

/// The daemon recorded in the store, if its process is alive on this host.
pub fn running_daemon(store: &dyn StateStore) -> Option<ProcessInfo> {
    let value = store.get_value(DAEMON_NAMESPACE, PROCESS_KEY).ok()??;
    let info: ProcessInfo = serde_json::from_value(value).ok()?;
    if info.stopped_at.is_some() || info.host != crate::state::host() {
        return None;
    }
    // A daemon of another user (EPERM) is running too.
    let alive = i32::try_from(info.pid).is_ok_and(crate::leftovers::process_alive);
    alive.then_some(info)
}

/// Waits on a channel fed by the test: time only moves when the test says so.
#[cfg(test)]
pub mod testing {
    use super::*;
    use std::sync::Mutex;

    pub struct ManualClock {
        pub now: Mutex<Timestamp>,
    }

    impl ManualClock {
        pub fn at(text: &str) -> ManualClock {
            ManualClock {
                now: Mutex::new(text.parse().unwrap()),
            }
        }
        pub fn advance(&self, seconds: i64) {
            let mut now = self.now.lock().unwrap();
            *now = now
                .checked_add(jiff::SignedDuration::from_secs(seconds))
                .unwrap();
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Timestamp {
            *self.now.lock().unwrap()
        }
        fn wait(&self, events: &Receiver<Event>, max: Duration) -> Option<Event> {
            // Real waits stay short: only the test moves this clock.
            events.recv_timeout(max.min(Duration::from_millis(50))).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::ManualClock;
    use super::*;
    use crate::state::sqlite::SqliteState;
    use std::sync::mpsc::channel;
    use std::sync::{Arc, Mutex};

    /// Records starts; each run lasts until the test finishes it.
    #[derive(Default)]
    struct FakeRunner {
        started: Mutex<Vec<(String, Trigger)>>,
        senders: Mutex<HashMap<String, Sender<Event>>>,
        terminated: Arc<Mutex<Vec<String>>>,
    }

    struct FakeHandle {
        subject: String,
        terminated: Arc<Mutex<Vec<String>>>,
        done: Sender<Event>,
    }

    impl RunHandle for FakeHandle {
        fn terminate(&mut self) {
            self.terminated.lock().unwrap().push(self.subject.clone());
            let _ = self.done.send(Event::Finished {
                subject: self.subject.clone(),
                key: String::new(),
                success: false,
            });
        }
        fn kill(&mut self) {}
    }

    impl Runner for FakeRunner {
        fn start(
            &self,
            fire: &Fire,
            _replica: &Replica,
            _lease: Duration,
            done: Sender<Event>,
        ) -> Result<Box<dyn RunHandle>> {
            self.started
                .lock()
                .unwrap()
                .push((fire.subject.clone(), fire.trigger));
            self.senders
                .lock()
                .unwrap()
                .insert(fire.subject.clone(), done.clone());
            Ok(Box::new(FakeHandle {
                subject: fire.subject.clone(),
                terminated: self.terminated.clone(),
                done,
            }))
        }
    }

    impl FakeRunner {
        fn finish(&self, subject: &str) {
            let sender = self.senders.lock().unwrap().remove(subject).unwrap();
            sender
                .send(Event::Finished {
                    subject: subject.into(),
                    key: String::new(),
                    success: true,
                })
                .unwrap();
        }
        fn started(&self) -> Vec<(String, Trigger)> {
            self.started.lock().unwrap().clone()
        }
    }

    fn config(dir: &std::path::Path, body: &str) -> Config {
        let text = format!("[destinations.local]\nkind = \"fs\"\npath = \"b\"\n{body}");
        let path = dir.join("cairn.toml");
        std::fs::write(&path, &text).unwrap();
        Config::load(&path).unwrap()
    }

    fn job(name: &str, cron: &str) -> String {
        format!(
            "[jobs.{name}]\nsource = {{ kind = \"sqlite\", path = \"{name}.db\" }}\ndestinations = [\"local\"]\nencryption = {{ kind = \"none\" }}\nschedules = [{{ cron = \"{cron}\" }}]\n"
        )
    }

    /// Runs a daemon on its own thread; the closure drives it through `tx`.
    fn with_daemon(
        config: Config,
        store: &SqliteState,
        clock: &ManualClock,
        runner: &FakeRunner,
        drive: impl FnOnce(&Sender<Event>),
    ) -> Summary {
        let (tx, rx) = channel();
        let (ready_tx, ready_rx) = channel();
        let path = config.file.clone();
        let config_for_replica = config.clone();
        std::thread::scope(|s| {
            let sender = tx.clone();
            let handle = s.spawn(move || {
                Daemon {
                    config,
                    load: Box::new(move || Ok(Config::load(&path)?)),
                    store,
                    clock,
                    runner,
                    events: rx,
                    sender,
                    run_events: &crate::engine::events::Discard,
                    on_ready: Box::new(move || {
                        let _ = ready_tx.send(());
                    }),
                    on_wake: Box::new(|| {}),
                    replica: Replica::new(&config_for_replica, Some("test".into())),
                }
                .run()
                .unwrap()
            });
            // The plan is made at start-up: move the clock only after that.
            ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
            let driven = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drive(&tx)));
            if let Err(panic) = driven {
                // Stop the daemon at once (two stops skip the grace period), then fail.
                let _ = tx.send(Event::Shutdown);
                let _ = tx.send(Event::Shutdown);
                let _ = handle.join();
                std::panic::resume_unwind(panic);
            }
            handle.join().unwrap()
        })
    }

    fn settle() {
        std::thread::sleep(Duration::from_millis(100));
    }

    /// A temp folder with a state store and the config `body`.
    fn fixture(body: &str) -> (tempfile::TempDir, SqliteState, Config) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteState::open(&dir.path().join("s.db")).unwrap();
        let cfg = config(dir.path(), body);
        (dir, store, cfg)
    }

    /// Moves the clock and lets the daemon act on it.
    fn tick(clock: &ManualClock, tx: &Sender<Event>, seconds: i64) {
        clock.advance(seconds);
        tx.send(Event::Tick).unwrap();
        settle();
    }

    #[test]
    fn catches_up_after_downtime_then_runs_on_schedule() {
        let (_dir, store, cfg) = fixture(&job("app", "0 2 * * *"));
        let key = super::super::entries(&cfg)[0].key.clone();
        store
            .set_schedule_mark(&key, "2026-11-28T02:00:00Z".parse().unwrap())
            .unwrap();
        let clock = ManualClock::at("2026-12-01T09:00:00Z");
        let runner = FakeRunner::default();
        with_daemon(cfg, &store, &clock, &runner, |tx| {
            settle();
            assert_eq!(runner.started(), vec![("app".into(), Trigger::CatchUp)]);
            runner.finish("app");
            clock.advance(17 * 3600);
            tx.send(Event::Tick).unwrap();
            settle();
            assert_eq!(runner.started().len(), 2);
            assert_eq!(runner.started()[1].1, Trigger::Schedule);
            runner.finish("app");
            settle();
            tx.send(Event::Shutdown).unwrap();
        });
        // The mark is the last handled fire, so a restart now misses nothing.
        assert_eq!(
            store.schedule_marks().unwrap()[&key],
            "2026-12-02T02:00:00Z".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn a_fire_during_a_run_is_skipped() {
        let (_dir, store, cfg) = fixture(&job("app", "* * * * *"));
        let clock = ManualClock::at("2026-12-01T09:00:30Z");
        let runner = FakeRunner::default();
        let summary = with_daemon(cfg, &store, &clock, &runner, |tx| {
            tick(&clock, tx, 60);
            tick(&clock, tx, 60);
            assert_eq!(runner.started().len(), 1);
            runner.finish("app");
            settle();
            tx.send(Event::Shutdown).unwrap();
        });
        assert_eq!(summary.skipped.len(), 1);
        assert!(summary.skipped[0].1.contains("still going"));
    }

    #[test]
    fn max_concurrent_runs_queues_the_rest() {
        let body = format!(
            "[daemon]\nmax_concurrent_runs = 1\n{}{}{}",
            job("a", "0 * * * *"),
            job("b", "0 * * * *"),
            job("c", "0 * * * *")
        );
        let (_dir, store, cfg) = fixture(&body);
        let clock = ManualClock::at("2026-12-01T09:59:00Z");
        let runner = FakeRunner::default();
        with_daemon(cfg, &store, &clock, &runner, |tx| {
            tick(&clock, tx, 60);
            assert_eq!(runner.started().len(), 1);
            for _ in 0..2 {
                let last = runner.started().last().unwrap().0.clone();
                runner.finish(&last);
                settle();
            }
            let names: Vec<String> = runner.started().into_iter().map(|s| s.0).collect();
            assert_eq!(names, ["a", "b", "c"]);
            runner.finish("c");
            settle();
            tx.send(Event::Shutdown).unwrap();
        });
    }

    #[test]
    fn health_checks_do_not_wait_for_the_concurrency_limit() {
        let body = format!(
            "[daemon]\nmax_concurrent_runs = 1\n{}[checks.disk]\nkind = \"disk\"\npath = \".\"\nmin_free_percent = 1\ninterval = \"1m\"\n",
            job("app", "* * * * *")
        );
        let (_dir, store, cfg) = fixture(&body);
        let clock = ManualClock::at("2026-12-01T09:00:50Z");
        let runner = FakeRunner::default();
        with_daemon(cfg, &store, &clock, &runner, |tx| {
            // The backup fires at 09:01 and keeps running; the check is due at 09:01:50.
            tick(&clock, tx, 10);
            assert_eq!(runner.started().len(), 1);
            tick(&clock, tx, 50);
            let names: Vec<String> = runner.started().into_iter().map(|s| s.0).collect();
            assert_eq!(names, ["app", "check:disk"]);
            runner.finish("app");
            runner.finish("check:disk");
            settle();
            tx.send(Event::Shutdown).unwrap();
        });
    }

    #[test]
    fn paused_jobs_are_skipped() {
        let (_dir, store, cfg) = fixture(&job("app", "* * * * *"));
        store.set_paused("app", true).unwrap();
        let clock = ManualClock::at("2026-12-01T09:00:30Z");
        let runner = FakeRunner::default();
        let summary = with_daemon(cfg, &store, &clock, &runner, |tx| {
            tick(&clock, tx, 60);
            tx.send(Event::Shutdown).unwrap();
        });
        assert!(runner.started().is_empty());
        assert!(summary.skipped[0].1.contains("paused"));
    }

    #[test]
    fn a_bad_reload_keeps_the_old_config() {
        let (dir, store, cfg) = fixture(&job("app", "* * * * *"));
        let clock = ManualClock::at("2026-12-01T09:00:30Z");
        let runner = FakeRunner::default();
        with_daemon(cfg, &store, &clock, &runner, |tx| {
            std::fs::write(dir.path().join("cairn.toml"), "[jobs.app]\nbogus = 1\n").unwrap();
            tx.send(Event::Reload).unwrap();
            settle();
            let reload: ReloadResult = serde_json::from_value(
                store
                    .get_value(DAEMON_NAMESPACE, RELOAD_KEY)
                    .unwrap()
                    .unwrap(),
            )
            .unwrap();
            assert!(!reload.accepted);
            assert!(reload.error.unwrap().contains("bogus"));
            // The old schedule still fires.
            tick(&clock, tx, 60);
            assert_eq!(runner.started().len(), 1);
            runner.finish("app");
            // A good config replaces it: now a job that never fires this minute.
            let good = format!(
                "[destinations.local]\nkind = \"fs\"\npath = \"b\"\n{}",
                job("other", "0 0 1 1 *")
            );
            std::fs::write(dir.path().join("cairn.toml"), good).unwrap();
            tx.send(Event::Reload).unwrap();
            settle();
            tick(&clock, tx, 60);
            assert_eq!(runner.started().len(), 1);
            tx.send(Event::Shutdown).unwrap();
        });
    }

    #[test]
    fn shutdown_waits_for_the_grace_period_then_aborts() {
        let body = format!(
            "[daemon]\nshutdown_grace = \"1s\"\n{}",
            job("app", "* * * * *")
        );
        let (_dir, store, cfg) = fixture(&body);
        let clock = ManualClock::at("2026-12-01T09:00:30Z");
        let runner = FakeRunner::default();
        let started = Instant::now();
        let summary = with_daemon(cfg, &store, &clock, &runner, |tx| {
            tick(&clock, tx, 60);
            tx.send(Event::Shutdown).unwrap();
            // No new runs while stopping.
            clock.advance(60);
            tx.send(Event::Tick).unwrap();
        });
        assert!(started.elapsed() >= Duration::from_secs(1));
        assert_eq!(summary.aborted, 1);
        assert_eq!(runner.started().len(), 1);
        assert_eq!(*runner.terminated.lock().unwrap(), ["app"]);
    }
}
