use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::schedule::daemon::{
    self, DAEMON_NAMESPACE, Daemon, Event, PROCESS_KEY, ProcessRunner, RELOAD_KEY, ReloadResult,
    SystemClock,
};
use crate::{Error, Result, state};

use super::{Context, LogFormat, output};

#[derive(Debug, clap::Args)]
pub struct Args {}

#[derive(Debug, clap::Args)]
pub struct ReloadArgs {
    /// How long to wait for the daemon to answer
    #[arg(long, default_value = "10s")]
    timeout: String,
}

pub fn run(context: &Context, _args: Args) -> Result<u8> {
    let config = context.load()?;
    if let Some(refusal) = crate::web::listen::refusal(&config.daemon) {
        return Err(Error::Usage(refusal));
    }
    raise_descriptor_limit();
    let store = state::open(&config)?;
    // Several daemons on one host share a store only as named replicas.
    let replica_id = std::env::var(crate::schedule::lease::REPLICA_ENV).ok();
    if let Some(other) = daemon::running_daemon(store.as_ref())
        && other.pid != std::process::id()
        && replica_id.is_none()
    {
        return Err(Error::Usage(format!(
            "a cairn daemon (pid {}) already runs with this state store ({}); stop it first, or give each daemon its own {} to run them as replicas",
            other.pid,
            store.location(),
            crate::schedule::lease::REPLICA_ENV
        )));
    }
    let replica = daemon::Replica::new(&config, replica_id);
    let mut info = daemon::publish_process(store.as_ref(), &config)?;
    let (tx, rx) = channel();

    let signals_tx = tx.clone();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(|e| Error::Run(format!("cannot listen for signals: {e}")))?;
    let signals_handle = signals.handle();
    let signal_thread = std::thread::spawn(move || {
        for signal in signals.forever() {
            let event = if signal == signal_hook::consts::SIGHUP {
                Event::Reload
            } else {
                Event::Shutdown
            };
            if signals_tx.send(event).is_err() {
                break;
            }
        }
    });

    let exe = std::env::current_exe()
        .map_err(|e| Error::Run(format!("cannot find the cairn program itself: {e}")))?;
    let config_path =
        std::path::absolute(&context.config_path).unwrap_or_else(|_| context.config_path.clone());
    let runner = ProcessRunner {
        exe,
        config: config_path.clone(),
        global_args: match context.log_format {
            LogFormat::Json => vec!["--log-format".into(), "json".into()],
            LogFormat::Text => Vec::new(),
        },
    };
    // `[daemon] listen`: /metrics, /healthz and the API, with the config
    // reloads see; the API starts runs through the daemon loop (Event::Manual).
    let shared = std::sync::Arc::new(std::sync::RwLock::new(config.clone()));
    let runs_tx = std::sync::Mutex::new(tx.clone());
    let start_run: crate::web::StartRun = Box::new(move |subject, args, limited| {
        let (reply, answer) = channel();
        let manual = daemon::ManualRun {
            subject: subject.to_string(),
            args,
            limited,
            reply,
        };
        let sent = runs_tx
            .lock()
            .map_err(|_| "the daemon is stopping".to_string())?
            .send(Event::Manual(manual));
        sent.map_err(|_| "the daemon is stopping".to_string())?;
        answer
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the daemon did not answer".to_string())?
    });
    let mut web = match config.daemon.listen {
        Some(addr) => Some(crate::web::Server::start(
            addr,
            std::sync::Arc::new(
                crate::web::AppState::new(shared.clone(), Duration::from_secs(30))
                    .with_start_run(start_run),
            ),
        )?),
        None => None,
    };
    let watchdog = sd_notify::watchdog_enabled();
    let last_ping = std::cell::Cell::new(Instant::now());
    let summary = Daemon {
        config,
        load: Box::new(move || {
            let config = Config::load(&config_path)?;
            *shared.write().unwrap_or_else(|p| p.into_inner()) = config.clone();
            Ok(config)
        }),
        store: store.as_ref(),
        clock: &SystemClock,
        runner: &runner,
        events: rx,
        sender: tx,
        run_events: &super::Notifier,
        on_ready: Box::new(|| {
            // Parsing the config leaves a few MiB of freed heap (TOML tables,
            // serde buffers) that glibc keeps unless asked; an idle daemon
            // should not (bench/daemon.sh: 17 → 14 MiB with 1,000 jobs).
            // SAFETY: malloc_trim only returns free memory to the system.
            unsafe {
                libc::malloc_trim(0);
            }
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        }),
        on_wake: Box::new(|| {
            if let Some(interval) = watchdog
                && last_ping.get().elapsed() >= interval / 2
            {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                last_ping.set(Instant::now());
            }
        }),
        replica,
    }
    .run();
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    if let Some(web) = web.as_mut() {
        web.stop();
    }
    signals_handle.close();
    let _ = signal_thread.join();
    info.stopped_at = Some(jiff::Timestamp::now());
    let _ = store.put_value(
        DAEMON_NAMESPACE,
        PROCESS_KEY,
        &serde_json::to_value(&info).unwrap_or_default(),
    );
    let summary = summary?;
    if summary.aborted > 0 {
        tracing::warn!(
            runs = summary.aborted,
            "runs were aborted at shutdown; nothing of them was committed"
        );
    }
    Ok(0)
}

/// Lifts the soft limit of open descriptors to the hard one, as Go programs
/// do at start: systemd gives services a soft limit of 1,024, less than a
/// daemon serving many HTTP clients while runs go on needs.
fn raise_descriptor_limit() {
    match crate::descriptor_limit::raise() {
        Ok(limit) => tracing::debug!(limit, "open descriptor limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open descriptor limit"),
    }
}

pub fn reload(context: &Context, args: ReloadArgs) -> Result<u8> {
    let timeout = crate::time::parse_duration(&args.timeout)
        .map_err(|e| Error::Usage(format!("--timeout {e}")))?;
    // Refuse a config the daemon would refuse too, with the same message.
    let config = context.load()?;
    let store = state::open(&config)?;
    let Some(info) = daemon::running_daemon(store.as_ref()) else {
        return Err(Error::Run(format!(
            "no cairn daemon is running with the state store {} (start one with `cairn daemon`)",
            store.location()
        )));
    };
    let sent = jiff::Timestamp::now();
    // SAFETY: sends SIGHUP to the daemon's recorded pid, checked alive above.
    if unsafe { libc::kill(info.pid as libc::pid_t, libc::SIGHUP) } != 0 {
        return Err(Error::Run(format!(
            "cannot signal the daemon (pid {}): {}",
            info.pid,
            std::io::Error::last_os_error()
        )));
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let answer = store
            .get_value(DAEMON_NAMESPACE, RELOAD_KEY)?
            .and_then(|v| serde_json::from_value::<ReloadResult>(v).ok())
            .filter(|r| r.at >= sent);
        if let Some(answer) = answer {
            if context.json {
                output::print_json(&answer);
            } else if answer.accepted {
                println!(
                    "daemon (pid {}) reloaded {}",
                    info.pid,
                    config.file.display()
                );
            } else {
                println!(
                    "daemon (pid {}) refused the new config and keeps the old one: {}",
                    info.pid,
                    answer.error.as_deref().unwrap_or("")
                );
            }
            return Ok(u8::from(!answer.accepted));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(Error::Run(format!(
        "the daemon (pid {}) did not answer the reload within {}",
        info.pid, args.timeout
    )))
}
