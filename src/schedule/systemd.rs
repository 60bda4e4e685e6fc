//! systemd units for cairn: a hardened service for the daemon, or a oneshot
//! service + timer per schedule for those who prefer timers.

use std::path::{Path, PathBuf};

use crate::config::{Config, DestinationConfig, SourceConfig};

/// Where the daemon must be able to write under `ProtectSystem=strict`.
fn writable_paths(config: &Config) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut add = |p: &Path| {
        let p = p.to_path_buf();
        if !paths.contains(&p) {
            paths.push(p);
        }
    };
    if let Some(parent) = config.state_path.parent() {
        add(parent);
    }
    for dest in config.destinations.values() {
        if let DestinationConfig::Fs { path } = dest {
            add(path);
        }
    }
    // SQLite sources in WAL mode need their -shm file.
    for job in config.jobs.values() {
        if let SourceConfig::Sqlite { path } = &job.source
            && let Some(parent) = path.parent()
        {
            add(parent);
        }
    }
    paths
}

pub struct UnitOptions {
    pub exe: PathBuf,
    pub config_file: PathBuf,
    pub user: String,
}

fn quote(path: &Path) -> String {
    let text = path.display().to_string();
    if text.contains(' ') {
        format!("\"{text}\"")
    } else {
        text
    }
}

const HARDENING: &str = "NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
CapabilityBoundingSet=
AmbientCapabilities=
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
UMask=0077";

fn service_common(config: &Config, options: &UnitOptions) -> String {
    let writable: Vec<String> = writable_paths(config).iter().map(|p| quote(p)).collect();
    format!(
        "User={user}\nGroup={user}\n{HARDENING}\nReadWritePaths={paths}\n",
        user = options.user,
        paths = writable.join(" ")
    )
}

/// The daemon's unit: `Type=notify` with a watchdog; on stop only the daemon
/// gets SIGTERM (`KillMode=mixed`) so that it can let runs finish.
pub fn daemon_unit(config: &Config, options: &UnitOptions) -> String {
    let stop_timeout = config.daemon.shutdown_grace.as_secs() + 30;
    format!(
        "# /etc/systemd/system/cairn.service — written by `cairn systemd`
[Unit]
Description=cairn backup daemon
Wants=network-online.target
After=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={exe} --config {config} daemon
ExecReload=/bin/kill -HUP $MAINPID
KillMode=mixed
TimeoutStopSec={stop_timeout}
WatchdogSec=120
Restart=on-failure
RestartSec=30
{common}
[Install]
WantedBy=multi-user.target
",
        exe = quote(&options.exe),
        config = quote(&options.config_file),
        common = service_common(config, options),
    )
}

/// Translates a cron expression to a systemd `OnCalendar=` value where the two
/// mean the same; `None` where they cannot (both day fields restricted, which
/// cron ORs and systemd ANDs; `L`, `W`, `#`, steps on ranges).
pub fn on_calendar(cron: &str, timezone: &str) -> Option<String> {
    let zone = if timezone.eq_ignore_ascii_case("utc") {
        "UTC".to_string()
    } else {
        timezone.to_string()
    };
    let text = cron.trim();
    let spec = match text.to_ascii_lowercase().as_str() {
        "@hourly" => "*-*-* *:00:00".to_string(),
        "@daily" | "@midnight" => "*-*-* 00:00:00".to_string(),
        "@weekly" => "Sun *-*-* 00:00:00".to_string(),
        "@monthly" => "*-*-01 00:00:00".to_string(),
        "@yearly" | "@annually" => "*-01-01 00:00:00".to_string(),
        _ => {
            let fields: Vec<&str> = text.split_whitespace().collect();
            let (second, rest) = match fields.len() {
                5 => ("0", &fields[..]),
                6 => (fields[0], &fields[1..]),
                _ => return None,
            };
            let [minute, hour, dom, month, dow] = rest else {
                return None;
            };
            if *dom != "*" && *dom != "?" && *dow != "*" && *dow != "?" {
                return None;
            }
            let weekdays = match *dow {
                "*" | "?" => None,
                d => Some(weekday_field(d)?),
            };
            let date = format!("*-{}-{}", number_field(month, 2)?, number_field(dom, 2)?);
            let time = format!(
                "{}:{}:{}",
                number_field(hour, 2)?,
                number_field(minute, 2)?,
                number_field(second, 2)?
            );
            match weekdays {
                Some(w) => format!("{w} {date} {time}"),
                None => format!("{date} {time}"),
            }
        }
    };
    Some(format!("{spec} {zone}"))
}

/// `*`, `5`, `1,15`, `1-5` (→ `1..5`), `*/15` (→ `00/15`), `5/10`.
fn number_field(field: &str, width: usize) -> Option<String> {
    if field == "*" || field == "?" {
        return Some("*".into());
    }
    let pad = |n: &str| -> Option<String> {
        let value: u32 = n.parse().ok()?;
        Some(format!("{value:0width$}"))
    };
    let parts: Option<Vec<String>> = field
        .split(',')
        .map(|part| {
            if let Some((start, step)) = part.split_once('/') {
                let start = if start == "*" { "0" } else { start };
                if start.contains('-') {
                    return None;
                }
                Some(format!("{}/{}", pad(start)?, step.parse::<u32>().ok()?))
            } else if let Some((a, b)) = part.split_once('-') {
                Some(format!("{}..{}", pad(a)?, pad(b)?))
            } else {
                pad(part)
            }
        })
        .collect();
    Some(parts?.join(","))
}

fn weekday_field(field: &str) -> Option<String> {
    const NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    let name = |d: &str| -> Option<&str> {
        if let Ok(n) = d.parse::<usize>() {
            return NAMES.get(n % 7).copied();
        }
        NAMES
            .iter()
            .find(|n| n.eq_ignore_ascii_case(&d[..d.len().min(3)]))
            .copied()
    };
    let parts: Option<Vec<String>> = field
        .split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => Some(format!("{}..{}", name(a)?, name(b)?)),
            None if part.contains('/') || part.contains('#') || part.contains('L') => None,
            None => name(part).map(str::to_string),
        })
        .collect();
    Some(parts?.join(","))
}

/// A oneshot service running `cairn --config FILE ARGS`.
fn oneshot_service(
    config: &Config,
    options: &UnitOptions,
    description: &str,
    args: &str,
) -> String {
    format!(
        "[Unit]
Description={description}
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart={exe} --config {file} {args}
{common}",
        exe = quote(&options.exe),
        file = quote(&options.config_file),
        common = service_common(config, options),
    )
}

/// A timer unit with the given `[Timer]` lines.
fn timer(description: &str, timer_lines: &str) -> String {
    format!(
        "[Unit]
Description={description}

[Timer]
{timer_lines}
[Install]
WantedBy=timers.target
"
    )
}

/// One oneshot service and one timer per schedule, named
/// `cairn-backup-JOB[-TAG]`, with `Persistent=true` for catch-up; and one pair
/// per health check (`cairn-check-NAME`) on its interval.
pub fn timer_units(config: &Config, options: &UnitOptions) -> Vec<(String, String)> {
    let mut units = Vec::new();
    for job in config.jobs.values() {
        for (i, schedule) in job.schedules.iter().enumerate() {
            let name = match &schedule.tag {
                Some(tag) => format!("cairn-backup-{}-{tag}", job.name),
                None if i == 0 => format!("cairn-backup-{}", job.name),
                None => format!("cairn-backup-{}-{i}", job.name),
            };
            let tag = schedule
                .tag
                .as_ref()
                .map(|t| format!(" --tag {t}"))
                .unwrap_or_default();
            units.push((
                format!("{name}.service"),
                oneshot_service(
                    config,
                    options,
                    &format!("cairn backup of {}", job.name),
                    &format!("backup {} --prune{tag}", job.name),
                ),
            ));
            let calendar = match on_calendar(&schedule.expression, &schedule.timezone_name) {
                Some(c) => format!("OnCalendar={c}"),
                None => format!(
                    "# `{}` has no exact OnCalendar= equivalent: write one by hand\n# (see `man systemd.time`), or use `cairn daemon`.\nOnCalendar=",
                    schedule.expression
                ),
            };
            let jitter = job
                .jitter
                .map(|j| format!("RandomizedDelaySec={}\n", j.as_secs()))
                .unwrap_or_default();
            let persistent = match job.catch_up {
                crate::config::CatchUp::Once => "true",
                crate::config::CatchUp::Skip => "false",
            };
            units.push((
                format!("{name}.timer"),
                timer(
                    &format!("cairn backup of {} ({})", job.name, schedule.expression),
                    &format!("{calendar}\nPersistent={persistent}\n{jitter}"),
                ),
            ));
        }
    }
    for check in config.checks.values() {
        let name = format!("cairn-check-{}", check.name);
        units.push((
            format!("{name}.service"),
            oneshot_service(
                config,
                options,
                &format!("cairn health check {}", check.name),
                &format!("health {}", check.name),
            ),
        ));
        let interval = check.interval.as_secs().max(1);
        units.push((
            format!("{name}.timer"),
            timer(
                &format!("cairn health check {} every {interval}s", check.name),
                &format!("OnActiveSec={interval}\nOnUnitActiveSec={interval}\nAccuracySec=1s\n"),
            ),
        ));
    }
    units
}

#[cfg(test)]
mod tests {
    use super::on_calendar;

    #[test]
    fn cron_to_on_calendar() {
        for (cron, zone, expected) in [
            ("0 2 * * *", "UTC", "*-*-* 02:00:00 UTC"),
            (
                "30 3 * * 0",
                "Europe/Berlin",
                "Sun *-*-* 03:30:00 Europe/Berlin",
            ),
            ("*/15 * * * *", "UTC", "*-*-* *:00/15:00 UTC"),
            ("0 4 1 * *", "UTC", "*-*-01 04:00:00 UTC"),
            ("0 9 * * 1-5", "UTC", "Mon..Fri *-*-* 09:00:00 UTC"),
            ("*/10 * * * * *", "UTC", "*-*-* *:*:00/10 UTC"),
            ("@weekly", "UTC", "Sun *-*-* 00:00:00 UTC"),
        ] {
            assert_eq!(on_calendar(cron, zone).as_deref(), Some(expected), "{cron}");
        }
        // cron ORs the two day fields, systemd ANDs them.
        assert_eq!(on_calendar("0 0 1 * 1", "UTC"), None);
        assert_eq!(on_calendar("0 0 * * 5L", "UTC"), None);
    }
}
