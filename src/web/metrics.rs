//! The Prometheus metrics, computed per render from the state store (run
//! history, check results) and the catalog (artifacts per destination). A new
//! prometheus-client registry is built for every render: nothing global.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::config::Config;
use crate::engine::status::{JobStatus, job_statuses};
use crate::state::{RunFilter, RunKind, RunRecord, RunStatus, StateStore};

type Labels = Vec<(String, String)>;

/// A replica silent this long is down (heartbeats come every 2s).
const REPLICA_SILENCE: std::time::Duration = std::time::Duration::from_secs(11);
type FloatGauge = Gauge<f64, AtomicU64>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The catalog side of the metrics (slow for remote destinations: callers may
/// cache it).
pub fn catalog(config: &Config, store: Option<&dyn StateStore>) -> Vec<JobStatus> {
    let jobs: Vec<&crate::config::Job> = config.jobs.values().collect();
    job_statuses(config, &jobs, store, jiff::Timestamp::now())
}

fn last(
    store: &dyn StateStore,
    job: &str,
    kind: RunKind,
    status: Option<RunStatus>,
) -> Option<RunRecord> {
    store
        .runs(&RunFilter {
            job: Some(job.to_string()),
            kind: Some(kind),
            status,
            limit: Some(1),
            with_log: false,
        })
        .ok()?
        .into_iter()
        .find(|r| r.status != RunStatus::Running)
}

fn finished(store: &dyn StateStore, job: &str, kind: RunKind) -> Option<RunRecord> {
    store
        .runs(&RunFilter {
            job: Some(job.to_string()),
            kind: Some(kind),
            status: None,
            limit: Some(5),
            with_log: false,
        })
        .ok()?
        .into_iter()
        .find(|r| r.status != RunStatus::Running)
}

/// Renders every metric in the Prometheus text format (version 0.0.4); with
/// `process`, also the serving process's own metrics (the daemon's, not those
/// of a one-shot run that writes a textfile or pushes).
pub fn render(
    config: &Config,
    store: Option<&dyn StateStore>,
    statuses: &[JobStatus],
    process: bool,
) -> String {
    let mut registry = Registry::default();

    let backup_success = Family::<Labels, FloatGauge>::default();
    let backup_duration = Family::<Labels, FloatGauge>::default();
    let backup_last_status = Family::<Labels, FloatGauge>::default();
    let backup_size = Family::<Labels, FloatGauge>::default();
    let artifacts = Family::<Labels, FloatGauge>::default();
    let untrusted = Family::<Labels, FloatGauge>::default();
    let newest_artifact = Family::<Labels, FloatGauge>::default();
    let destination_up = Family::<Labels, FloatGauge>::default();
    let runs_total = Family::<Labels, Counter<u64>>::default();
    let drill_success = Family::<Labels, FloatGauge>::default();
    let drill_duration = Family::<Labels, FloatGauge>::default();
    let drill_last_status = Family::<Labels, FloatGauge>::default();
    let check_up = Family::<Labels, FloatGauge>::default();
    let check_duration = Family::<Labels, FloatGauge>::default();
    let check_last = Family::<Labels, FloatGauge>::default();
    let paused = Family::<Labels, FloatGauge>::default();
    let replica_up = Family::<Labels, FloatGauge>::default();
    let replica_heartbeat = Family::<Labels, FloatGauge>::default();
    let claims = Family::<Labels, Counter<u64>>::default();
    let store_up = FloatGauge::default();

    // Several replicas: the fleet as the store knows it, and this process's view.
    let replicas = store.map(|s| s.replicas());
    let reachable = matches!(replicas, Some(Ok(_)))
        && crate::state::replicas::counters().store_reachable() != Some(false);
    store_up.set(f64::from(u8::from(reachable)));
    let now = jiff::Timestamp::now();
    for r in replicas.and_then(|r| r.ok()).unwrap_or_default() {
        let l = labels(&[("replica", &r.id)]);
        replica_up
            .get_or_create(&l)
            .set(f64::from(u8::from(r.up(now, REPLICA_SILENCE))));
        replica_heartbeat
            .get_or_create(&l)
            .set(r.last_heartbeat.as_millisecond() as f64 / 1000.0);
    }
    let (won, lost) = crate::state::replicas::counters().claims();
    claims
        .get_or_create(&labels(&[("result", "won")]))
        .inc_by(won);
    claims
        .get_or_create(&labels(&[("result", "lost")]))
        .inc_by(lost);

    if let Some(store) = store {
        for job in config.jobs.keys() {
            let l = labels(&[("job", job)]);
            if let Some(run) = last(store, job, RunKind::Backup, Some(RunStatus::Success)) {
                let at = run.finished_at.unwrap_or(run.started_at);
                backup_success
                    .get_or_create(&l)
                    .set(at.as_millisecond() as f64 / 1000.0);
            }
            if let Some(run) = finished(store, job, RunKind::Backup) {
                if let Some(d) = run.duration_secs() {
                    backup_duration.get_or_create(&l).set(d);
                }
                backup_last_status
                    .get_or_create(&l)
                    .set(f64::from(u8::from(run.status == RunStatus::Success)));
            }
            if let Some(run) = last(store, job, RunKind::Drill, Some(RunStatus::Success)) {
                let at = run.finished_at.unwrap_or(run.started_at);
                drill_success
                    .get_or_create(&l)
                    .set(at.as_millisecond() as f64 / 1000.0);
            }
            if let Some(run) = finished(store, job, RunKind::Drill) {
                if let Some(d) = run.duration_secs() {
                    drill_duration.get_or_create(&l).set(d);
                }
                drill_last_status
                    .get_or_create(&l)
                    .set(f64::from(u8::from(run.status == RunStatus::Success)));
            }
        }
        for check in config.checks.keys() {
            let l = labels(&[("check", check)]);
            if let Some(run) = finished(store, check, RunKind::Check) {
                check_up
                    .get_or_create(&l)
                    .set(f64::from(u8::from(run.status == RunStatus::Success)));
                if let Some(d) = run.duration_secs() {
                    check_duration.get_or_create(&l).set(d);
                }
                let at = run.finished_at.unwrap_or(run.started_at);
                check_last
                    .get_or_create(&l)
                    .set(at.as_millisecond() as f64 / 1000.0);
            }
        }
        // Counted from the whole history of the jobs and checks in the config.
        if let Ok(counts) = store.run_counts() {
            for c in counts {
                let known = config.jobs.contains_key(&c.job)
                    || (c.kind == RunKind::Check && config.checks.contains_key(&c.job));
                if known {
                    runs_total
                        .get_or_create(&labels(&[
                            ("job", &c.job),
                            ("kind", c.kind.as_str()),
                            ("status", c.status.as_str()),
                        ]))
                        .inc_by(c.count);
                }
            }
        }
    }
    for status in statuses {
        paused
            .get_or_create(&labels(&[("job", &status.job)]))
            .set(f64::from(u8::from(status.paused)));
        for d in &status.destinations {
            let l = labels(&[("job", &status.job), ("destination", &d.destination)]);
            destination_up
                .get_or_create(&l)
                .set(f64::from(u8::from(d.error.is_none())));
            if d.error.is_some() {
                continue;
            }
            artifacts.get_or_create(&l).set(d.artifacts as f64);
            untrusted.get_or_create(&l).set(d.untrusted as f64);
            if let Some(newest) = d.newest {
                newest_artifact
                    .get_or_create(&l)
                    .set(newest.as_second() as f64);
            }
            if let Some(size) = d.newest_bytes {
                backup_size.get_or_create(&l).set(size as f64);
            }
        }
    }

    registry.register(
        "cairn_replica_up",
        "1 if the replica (daemon) heartbeat within the last 11s, else 0",
        replica_up,
    );
    registry.register(
        "cairn_replica_last_heartbeat_timestamp_seconds",
        "When the replica last recorded its heartbeat (Unix time)",
        replica_heartbeat,
    );
    registry.register(
        "cairn_claims",
        "Fires this daemon tried to claim, by result (won: it ran them; lost: another replica did)",
        claims,
    );
    registry.register(
        "cairn_state_store_up",
        "1 if the state store answered (and the daemon's last heartbeat reached it), else 0",
        store_up,
    );
    registry.register(
        "cairn_backup_last_success_timestamp_seconds",
        "When the job's last successful backup run finished (Unix time)",
        backup_success,
    );
    registry.register(
        "cairn_backup_duration_seconds",
        "How long the job's last finished backup run took",
        backup_duration,
    );
    registry.register(
        "cairn_backup_last_run_success",
        "1 if the job's last finished backup run succeeded, else 0",
        backup_last_status,
    );
    registry.register(
        "cairn_backup_size_bytes",
        "Stored size of the newest usable artifact in each destination",
        backup_size,
    );
    registry.register(
        "cairn_destination_artifacts",
        "Usable artifacts of the job in each destination",
        artifacts,
    );
    registry.register(
        "cairn_destination_untrusted_artifacts",
        "Complete artifacts whose manifest signature does not verify (not counted as usable)",
        untrusted,
    );
    registry.register(
        "cairn_destination_newest_artifact_timestamp_seconds",
        "Creation time of the newest usable artifact in each destination (Unix time)",
        newest_artifact,
    );
    registry.register(
        "cairn_destination_up",
        "1 if the destination could be listed for the job, else 0",
        destination_up,
    );
    registry.register(
        "cairn_runs",
        "Finished runs in the history by job (or check), kind and status",
        runs_total,
    );
    registry.register(
        "cairn_drill_last_success_timestamp_seconds",
        "When the job's last successful restore drill finished (Unix time)",
        drill_success,
    );
    registry.register(
        "cairn_drill_duration_seconds",
        "How long the job's last finished restore drill took",
        drill_duration,
    );
    registry.register(
        "cairn_drill_last_run_success",
        "1 if the job's last finished restore drill succeeded, else 0",
        drill_last_status,
    );
    registry.register(
        "cairn_check_up",
        "1 if the check's last run passed, else 0",
        check_up,
    );
    registry.register(
        "cairn_check_duration_seconds",
        "How long the check's last run took",
        check_duration,
    );
    registry.register(
        "cairn_check_last_run_timestamp_seconds",
        "When the check last ran (Unix time)",
        check_last,
    );
    registry.register("cairn_job_paused", "1 if the job is paused", paused);

    let mut text = String::new();
    let _ = encode(&mut text, &registry);
    let mut out = to_prometheus_text(&text);
    if process {
        out.push_str(&process_metrics());
    }
    out
}

/// prometheus-client writes OpenMetrics text; node-exporter's textfile
/// collector and the Pushgateway read the Prometheus text format, where a
/// counter's TYPE line names the `_total` series and there is no `# EOF`.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut counters = Vec::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            counters.push(name.to_string());
        }
    }
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# TYPE ", "# HELP "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .iter()
                .any(|c| c == name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// The standard process metrics, from /proc/self.
fn process_metrics() -> String {
    let mut out = String::new();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as f64;
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        && let Some((_, rest)) = stat.rsplit_once(')')
    {
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Fields after the command: state is index 0, utime 11, stime 12, starttime 19, rss 21.
        let get = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
        if let (Some(utime), Some(stime)) = (get(11), get(12)) {
            out.push_str("# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n# TYPE process_cpu_seconds_total counter\n");
            out.push_str(&format!(
                "process_cpu_seconds_total {}\n",
                (utime + stime) / ticks
            ));
        }
        if let Some(rss) = get(21) {
            out.push_str("# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\n");
            out.push_str(&format!("process_resident_memory_bytes {}\n", rss * page));
        }
        if let (Some(start), Ok(uptime)) = (get(19), std::fs::read_to_string("/proc/uptime")) {
            let boot_uptime: f64 = uptime
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
            let started = now - boot_uptime + start / ticks;
            out.push_str("# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n# TYPE process_start_time_seconds gauge\n");
            out.push_str(&format!("process_start_time_seconds {started:.3}\n"));
        }
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        out.push_str("# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\n");
        out.push_str(&format!("process_open_fds {}\n", entries.count()));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn counters_are_renamed_for_the_text_format() {
        let om = "# HELP cairn_runs Runs.\n# TYPE cairn_runs counter\ncairn_runs_total{job=\"a\"} 1\n# EOF\n";
        assert_eq!(
            super::to_prometheus_text(om),
            "# HELP cairn_runs_total Runs.\n# TYPE cairn_runs_total counter\ncairn_runs_total{job=\"a\"} 1\n"
        );
    }
}
