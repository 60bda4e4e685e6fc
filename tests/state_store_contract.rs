//! One suite for every `StateStore`: the same tests run against the embedded
//! SQLite store, against PostgreSQL (a real server started by tests/common),
//! and against PostgreSQL through a real PgBouncer in transaction mode.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cairn::config::StatePostgres;
use cairn::state::postgres::PostgresState;
use cairn::state::sqlite::SqliteState;
use cairn::state::{
    ApiToken, ArtifactMark, ClaimOutcome, EVERY_COPY, FireKey, NewAudit, NewRun, ReplicaInfo, Role,
    RunEnd, RunFilter, RunKind, RunStatus, ScheduleOverride, Session, StateStore, Trigger, User,
    audit_hash,
};
use common::servers;
use jiff::Timestamp;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
    Pgbouncer,
}

/// A fresh, empty store of one backend, and how to open it again (another
/// connection, as another process would).
struct Fixture {
    backend: Backend,
    dir: tempfile::TempDir,
    db: String,
}

impl Fixture {
    fn new(backend: Backend) -> Fixture {
        let db = servers::rand_name();
        if !matches!(backend, Backend::Sqlite) {
            servers::postgres().create_db(&db);
        }
        Fixture {
            backend,
            dir: tempfile::tempdir().expect("temp dir"),
            db,
        }
    }

    fn url(&self) -> String {
        match self.backend {
            Backend::Sqlite => String::new(),
            Backend::Postgres => servers::postgres().url(&self.db),
            Backend::Pgbouncer => servers::pgbouncer().url(&self.db),
        }
    }

    fn open(&self) -> Box<dyn StateStore> {
        match self.backend {
            Backend::Sqlite => {
                Box::new(SqliteState::open(&self.dir.path().join("state.db")).expect("open"))
            }
            _ => Box::new(PostgresState::open(&pg_options(&self.url())).expect("open")),
        }
    }

    /// Runs SQL on the store's database behind its back (test set-up only).
    fn sql(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => {
                rusqlite::Connection::open(self.dir.path().join("state.db"))
                    .and_then(|c| c.execute_batch(sql))
                    .expect("sql");
            }
            _ => {
                servers::postgres().sql(&self.db, sql);
            }
        }
    }
}

fn pg_options(url: &str) -> StatePostgres {
    StatePostgres {
        url: url.to_string(),
        password_env: None,
        sslmode: Some("disable".into()),
        sslrootcert: None,
    }
}

/// A pid that is certainly not running (a child that has been reaped).
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().expect("true");
    let pid = child.id();
    child.wait().expect("wait");
    pid
}

fn new_run(job: &str, kind: RunKind, at: i64) -> NewRun {
    NewRun {
        job: job.into(),
        kind,
        trigger: Trigger::Manual,
        started_at: Timestamp::from_second(at).unwrap(),
        replica: None,
        scheduled_for: None,
        claim: None,
    }
}

fn ended(success: bool) -> RunEnd {
    RunEnd {
        success,
        bytes: Some(1234),
        artifact_id: Some("20261201T000000Z-abcd".into()),
        error: (!success).then(|| "it broke".into()),
        details: Some(serde_json::json!({"checks": [1, 2]})),
    }
}

fn runs_round_trip_and_filters(b: Backend) {
    let f = Fixture::new(b);
    let store = f.open();
    let a = store
        .start_run(&new_run("app", RunKind::Backup, 1_700_000_000))
        .unwrap();
    let v = store
        .start_run(&new_run("app", RunKind::Verify, 1_700_000_100))
        .unwrap();
    let other = store
        .start_run(&new_run("db", RunKind::Backup, 1_700_000_200))
        .unwrap();
    store
        .finish_run(a, &ended(true), "line one\nline two\n")
        .unwrap();
    store.finish_run(v, &ended(false), "bad\0byte").unwrap();

    let all = store.runs(&RunFilter::default()).unwrap();
    assert_eq!(
        all.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![other, v, a],
        "newest first"
    );
    assert!(all.iter().all(|r| r.log.is_none()), "no logs in listings");
    let first = all.iter().find(|r| r.id == a).unwrap();
    assert_eq!(first.status, RunStatus::Success);
    assert_eq!(first.bytes, Some(1234));
    assert_eq!(first.artifact_id.as_deref(), Some("20261201T000000Z-abcd"));
    assert_eq!(first.details, Some(serde_json::json!({"checks": [1, 2]})));
    assert_eq!(
        first.started_at,
        Timestamp::from_second(1_700_000_000).unwrap()
    );
    assert!(first.finished_at.is_some());
    assert_eq!(first.pid, std::process::id());
    assert_eq!(all[0].status, RunStatus::Running);

    let app_backups = store
        .runs(&RunFilter {
            job: Some("app".into()),
            kind: Some(RunKind::Backup),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        app_backups.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![a]
    );
    let failed = store
        .runs(&RunFilter {
            status: Some(RunStatus::Failure),
            with_log: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].error.as_deref(), Some("it broke"));
    assert!(failed[0].log.as_deref().unwrap().starts_with("bad"));
    let limited = store
        .runs(&RunFilter {
            limit: Some(2),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(limited.len(), 2);
    let one = store.run(a).unwrap().unwrap();
    assert_eq!(one.log.as_deref(), Some("line one\nline two\n"));
    assert!(store.run(a + 1000).unwrap().is_none());
}

fn latest_runs_of_many_jobs_in_one_read(b: Backend) {
    let f = Fixture::new(b);
    let store = f.open();
    let run = |job: &str, kind, at, success: Option<bool>| {
        let id = store.start_run(&new_run(job, kind, at)).unwrap();
        if let Some(success) = success {
            store.finish_run(id, &ended(success), "the log").unwrap();
        }
        id
    };
    let app_ok = run("app", RunKind::Backup, 1_700_000_000, Some(true));
    let app_failed = run("app", RunKind::Backup, 1_700_000_100, Some(false));
    run("app", RunKind::Verify, 1_700_000_200, Some(true));
    let db_running = run("db", RunKind::Backup, 1_700_000_300, None);
    run("elsewhere", RunKind::Backup, 1_700_000_400, Some(true));
    let jobs = ["app".to_string(), "db".into(), "never-ran".into()];

    let latest = store.latest_runs(&jobs, RunKind::Backup, None).unwrap();
    let ids: Vec<_> = latest.iter().map(|(j, r)| (j.as_str(), r.id)).collect();
    assert_eq!(ids, vec![("app", app_failed), ("db", db_running)]);
    assert!(latest.values().all(|r| r.log.is_none()), "no logs");
    assert_eq!(latest["app"].error.as_deref(), Some("it broke"));

    let succeeded = store
        .latest_runs(&jobs, RunKind::Backup, Some(RunStatus::Success))
        .unwrap();
    let ids: Vec<_> = succeeded.iter().map(|(j, r)| (j.as_str(), r.id)).collect();
    assert_eq!(ids, vec![("app", app_ok)]);
    assert!(
        store
            .latest_runs(&jobs, RunKind::Drill, None)
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .latest_runs(&[], RunKind::Backup, None)
            .unwrap()
            .is_empty()
    );
}

fn orphaned_runs_are_interrupted_once(b: Backend) {
    let f = Fixture::new(b);
    let store = f.open();
    let mine = store
        .start_run(&new_run("app", RunKind::Backup, 1_700_000_000))
        .unwrap();
    let orphan = store
        .start_run(&new_run("app", RunKind::Backup, 1_700_000_100))
        .unwrap();
    let elsewhere = store
        .start_run(&new_run("app", RunKind::Backup, 1_700_000_200))
        .unwrap();
    let dead = dead_pid();
    f.sql(&format!("UPDATE runs SET pid = {dead} WHERE id = {orphan}"));
    f.sql(&format!(
        "UPDATE runs SET pid = {dead}, host = 'some-other-host' WHERE id = {elsewhere}"
    ));
    let marked = store.interrupt_orphaned_runs().unwrap();
    assert_eq!(
        marked.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![orphan]
    );
    assert_eq!(marked[0].status, RunStatus::Interrupted);
    assert!(
        marked[0]
            .error
            .as_deref()
            .unwrap()
            .contains("ended before it finished")
    );
    assert!(
        f.open().interrupt_orphaned_runs().unwrap().is_empty(),
        "a second sweep (another process) marks nothing again"
    );
    assert_eq!(store.run(mine).unwrap().unwrap().status, RunStatus::Running);
    assert_eq!(
        store.run(elsewhere).unwrap().unwrap().status,
        RunStatus::Running,
        "runs of other hosts are not this host's to judge"
    );
}

fn forgotten_runs_stay_counted(b: Backend) {
    let f = Fixture::new(b);
    let store = f.open();
    for (at, ok) in [(1_000_000, true), (1_000_100, false), (2_000_000, true)] {
        let id = store
            .start_run(&new_run("app", RunKind::Backup, at))
            .unwrap();
        store.finish_run(id, &ended(ok), "").unwrap();
    }
    store
        .start_run(&new_run("app", RunKind::Backup, 500))
        .unwrap();
    let count = |status| {
        store
            .run_counts()
            .unwrap()
            .into_iter()
            .find(|c| c.job == "app" && c.kind == RunKind::Backup && c.status == status)
            .map_or(0, |c| c.count)
    };
    assert_eq!(
        (count(RunStatus::Success), count(RunStatus::Failure)),
        (2, 1)
    );
    let forgotten = store
        .forget_runs_before(Timestamp::from_second(1_500_000).unwrap())
        .unwrap();
    assert_eq!(
        forgotten, 2,
        "finished runs before the date; never a running one"
    );
    assert_eq!(store.runs(&RunFilter::default()).unwrap().len(), 2);
    assert_eq!(
        (count(RunStatus::Success), count(RunStatus::Failure)),
        (2, 1),
        "counters never go down"
    );
    assert_eq!(
        store
            .forget_runs_before(Timestamp::from_second(3_000_000).unwrap())
            .unwrap(),
        1
    );
    assert_eq!(count(RunStatus::Success), 2);
    assert_eq!(count(RunStatus::Running), 0, "running runs are not counted");
}

fn pauses_schedule_marks_and_overrides(b: Backend) {
    let f = Fixture::new(b);
    let store = f.open();
    store.set_paused("app", true).unwrap();
    store.set_paused("app", true).unwrap();
    store.set_paused("db", true).unwrap();
    store.set_paused("db", false).unwrap();
    assert_eq!(
        f.open().paused_jobs().unwrap(),
        BTreeSet::from(["app".to_string()])
    );

    let t1 = Timestamp::from_second(1_700_000_000).unwrap();
    let t2 = Timestamp::from_second(1_700_000_060).unwrap();
    store.set_schedule_mark("app#0", t1).unwrap();
    store.set_schedule_mark("app#0", t2).unwrap();
    store.set_schedule_mark("db#0", t1).unwrap();
    let marks = f.open().schedule_marks().unwrap();
    assert_eq!(marks.get("app#0"), Some(&t2));
    assert_eq!(marks.get("db#0"), Some(&t1));
    assert_eq!(marks.len(), 2);

    let cron = ScheduleOverride::Cron {
        cron: "0 3 * * *".into(),
    };
    store.set_schedule_override("app", Some(&cron)).unwrap();
    store
        .set_schedule_override("db", Some(&ScheduleOverride::Disabled))
        .unwrap();
    store
        .set_schedule_override("db", Some(&ScheduleOverride::Disabled))
        .unwrap();
    let overrides = f.open().schedule_overrides().unwrap();
    assert_eq!(overrides.get("app"), Some(&cron));
    assert_eq!(overrides.get("db"), Some(&ScheduleOverride::Disabled));
    store.set_schedule_override("app", None).unwrap();
    assert_eq!(store.schedule_overrides().unwrap().len(), 1);
}

fn copy_marks_per_destination(b: Backend) {
    let f = Fixture::new(b);
    let store = f.open();
    let at = Timestamp::from_second(1_700_000_000).unwrap();
    let bad = ArtifactMark {
        bad: true,
        reason: "checksum mismatch".into(),
        at,
    };
    let good = ArtifactMark {
        bad: false,
        reason: "verified".into(),
        at,
    };
    store.mark_copy("app", "A1", EVERY_COPY, &bad).unwrap();
    store.mark_copy("app", "A1", "s3", &good).unwrap();
    store.mark_copy("other", "A1", "s3", &bad).unwrap();
    let marks = store.copy_marks("app").unwrap();
    assert!(!marks.is_bad("A1", "s3"), "its own mark wins");
    assert!(
        marks.is_bad("A1", "local"),
        "the whole-artifact mark applies"
    );
    assert!(marks.bad_only_as_whole("A1", "local"));
    store.mark_copy("app", "A1", "s3", &bad).unwrap();
    assert!(
        store.copy_marks("app").unwrap().is_bad("A1", "s3"),
        "replaced"
    );
    store.forget_whole_mark("app", "A1").unwrap();
    let marks = f.open().copy_marks("app").unwrap();
    assert!(!marks.is_bad("A1", "local"));
    assert_eq!(marks.0.len(), 1);
    assert_eq!(store.copy_marks("nobody").unwrap().0.len(), 0);

    let jobs = ["app".to_string(), "nobody".into(), "other".into()];
    let of = store.copy_marks_of(&jobs).unwrap();
    assert_eq!(
        of.keys().collect::<Vec<_>>(),
        jobs.iter().collect::<Vec<_>>()
    );
    for job in &jobs {
        assert_eq!(of[job], store.copy_marks(job).unwrap(), "{job}");
    }
    assert!(of["other"].is_bad("A1", "s3"));
}

fn claims_are_exclusive_expire_and_release(b: Backend) {
    let f = Fixture::new(b);
    let (one, two) = (f.open(), f.open());
    assert!(one.claim("job:app", "hostA:1", 60).unwrap());
    assert!(!two.claim("job:app", "hostB:2", 60).unwrap(), "held");
    assert!(
        one.claim("job:app", "hostA:1", 60).unwrap(),
        "renewal by its holder"
    );
    assert!(
        two.claim("job:db", "hostB:2", 60).unwrap(),
        "another name is free"
    );
    two.release("job:app", "hostB:2").unwrap();
    assert!(
        !two.claim("job:app", "hostB:2", 60).unwrap(),
        "only the holder releases"
    );
    one.release("job:app", "hostA:1").unwrap();
    assert!(
        two.claim("job:app", "hostB:2", 0).unwrap(),
        "released: free"
    );
    // A lease of 0 s lapses at once: after a millisecond another holder takes it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !one.claim("job:app", "hostA:1", 60).unwrap() {
        assert!(
            Instant::now() < deadline,
            "a lapsed lease was never taken over"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!two.claim("job:app", "hostB:2", 60).unwrap());
    // A holder on this host whose process is gone holds nothing.
    let gone = format!("{}:{}", cairn::state::host(), dead_pid());
    assert!(one.claim("job:x", &gone, 600).unwrap());
    assert!(two.claim("job:x", "hostB:2", 60).unwrap());
}

fn claims_race_one_winner(b: Backend) {
    let f = Fixture::new(b);
    let stores: Vec<Box<dyn StateStore>> = (0..6).map(|_| f.open()).collect();
    let barrier = std::sync::Barrier::new(stores.len());
    let winners: usize = std::thread::scope(|s| {
        let handles: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(n, store)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    store.claim("fire:app", &format!("host{n}:1"), 60).unwrap() as usize
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(winners, 1);
}

fn values_round_trip(b: Backend) {
    let f = Fixture::new(b);
    let store = f.open();
    let v = serde_json::json!({"state": "firing", "since": 17, "text": "naïve — ok"});
    store.put_value("alerts", "app", &v).unwrap();
    store
        .put_value("alerts", "db", &serde_json::json!(1))
        .unwrap();
    store
        .put_value("alerts", "db", &serde_json::json!("two"))
        .unwrap();
    store
        .put_value("facts", "app", &serde_json::json!(null))
        .unwrap();
    let again = f.open();
    assert_eq!(again.get_value("alerts", "app").unwrap(), Some(v.clone()));
    assert_eq!(again.get_value("alerts", "none").unwrap(), None);
    let all = again.values("alerts").unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all["db"], serde_json::json!("two"));
    assert_eq!(again.values("facts").unwrap().len(), 1);
}

fn users_sessions_and_tokens(b: Backend) {
    let f = Fixture::new(b);
    let store = f.open();
    let now = Timestamp::from_second(1_700_000_000).unwrap();
    let ann = User {
        name: "ann".into(),
        role: Role::Admin,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        created_at: now,
    };
    assert!(store.add_user(&ann).unwrap());
    assert!(!store.add_user(&ann).unwrap(), "the name is taken");
    let bob = User {
        name: "bob".into(),
        role: Role::Viewer,
        ..ann.clone()
    };
    assert!(store.add_user(&bob).unwrap());
    assert_eq!(
        store
            .users()
            .unwrap()
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>(),
        vec!["ann", "bob"]
    );
    assert_eq!(store.user("bob").unwrap().unwrap().role, Role::Viewer);
    assert!(store.user("eve").unwrap().is_none());

    let session = |id: &str, user: &str, at: i64| Session {
        id_hash: id.into(),
        user: user.into(),
        csrf: format!("csrf-{id}"),
        created_at: Timestamp::from_second(at).unwrap(),
        last_seen_at: Timestamp::from_second(at).unwrap(),
    };
    store
        .create_session(&session("s1", "ann", 1_700_000_000))
        .unwrap();
    store
        .create_session(&session("s2", "bob", 1_700_000_000))
        .unwrap();
    store
        .create_session(&session("s3", "bob", 1_700_000_500))
        .unwrap();
    let s1 = f.open().session("s1").unwrap().unwrap();
    assert_eq!((s1.user.as_str(), s1.csrf.as_str()), ("ann", "csrf-s1"));
    store
        .touch_session("s1", Timestamp::from_second(1_700_000_900).unwrap())
        .unwrap();
    assert_eq!(
        store.session("s1").unwrap().unwrap().last_seen_at,
        Timestamp::from_second(1_700_000_900).unwrap()
    );
    assert_eq!(
        store
            .end_stale_sessions(
                Timestamp::from_second(1_600_000_000).unwrap(),
                Timestamp::from_second(1_700_000_100).unwrap()
            )
            .unwrap(),
        1,
        "s2 was idle"
    );
    assert!(store.session("s2").unwrap().is_none());
    assert!(store.set_password("bob", "$argon2id$new").unwrap());
    assert!(
        store.session("s3").unwrap().is_none(),
        "a new password ends sessions"
    );
    assert_eq!(
        store.user("bob").unwrap().unwrap().password_hash,
        "$argon2id$new"
    );
    assert!(!store.set_password("eve", "x").unwrap());
    assert!(store.remove_user("ann").unwrap());
    assert!(
        store.session("s1").unwrap().is_none(),
        "removal ends sessions"
    );
    assert!(!store.remove_user("ann").unwrap());
    store
        .create_session(&session("s4", "bob", 1_700_000_000))
        .unwrap();
    store.end_session("s4").unwrap();
    assert!(store.session("s4").unwrap().is_none());

    let token = ApiToken {
        name: "ci".into(),
        hash: "ab".repeat(32),
        role: Role::Operator,
        jobs: vec!["app".into(), "db".into()],
        created_at: now,
        expires_at: Some(Timestamp::from_second(1_800_000_000).unwrap()),
        last_used_at: None,
        revoked_at: None,
    };
    assert!(store.add_token(&token).unwrap());
    assert!(!store.add_token(&token).unwrap());
    let all = ApiToken {
        name: "all".into(),
        hash: "cd".repeat(32),
        jobs: vec![],
        expires_at: None,
        ..token.clone()
    };
    assert!(store.add_token(&all).unwrap());
    let found = f.open().token_by_hash(&"ab".repeat(32)).unwrap().unwrap();
    assert_eq!(found.name, "ci");
    assert_eq!(found.jobs, vec!["app".to_string(), "db".to_string()]);
    assert_eq!(found.expires_at, token.expires_at);
    assert!(store.token_by_hash("ff").unwrap().is_none());
    store.touch_token("ci", now).unwrap();
    assert_eq!(
        store
            .token_by_hash(&"ab".repeat(32))
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(now)
    );
    assert!(store.revoke_token("ci", now).unwrap());
    assert!(!store.revoke_token("ci", now).unwrap(), "already revoked");
    assert!(
        !store.add_token(&token).unwrap(),
        "a revoked token keeps its name"
    );
    let tokens = store.tokens().unwrap();
    assert_eq!(
        tokens
            .iter()
            .map(|t| (t.name.as_str(), t.revoked_at.is_some()))
            .collect::<Vec<_>>(),
        vec![("all", false), ("ci", true)]
    );
}

fn audit_chain_under_concurrent_appends(b: Backend) {
    let f = Fixture::new(b);
    const THREADS: usize = 4;
    const EACH: usize = 25;
    let stores: Vec<Box<dyn StateStore>> = (0..THREADS).map(|_| f.open()).collect();
    std::thread::scope(|s| {
        for (n, store) in stores.iter().enumerate() {
            s.spawn(move || {
                for k in 0..EACH {
                    let entry = NewAudit {
                        at: Timestamp::now(),
                        actor: format!("user:u{n}"),
                        action: "run.backup".into(),
                        target: format!("job{k}"),
                        address: "127.0.0.1".into(),
                        result: "ok".into(),
                    };
                    let appended = store.append_audit(&entry).unwrap();
                    assert_eq!(
                        appended.hash,
                        audit_hash(appended.seq, &appended.prev_hash, &entry)
                    );
                }
            });
        }
    });
    let store = f.open();
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = store.audit_after(after, 7).unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        all.extend(page);
    }
    assert_eq!(all.len(), THREADS * EACH);
    let mut prev = String::new();
    for (n, e) in all.iter().enumerate() {
        assert_eq!(e.seq, n as i64 + 1, "no gap");
        assert_eq!(e.prev_hash, prev, "no fork at {}", e.seq);
        assert_eq!(
            e.hash,
            audit_hash(e.seq, &e.prev_hash, &e.entry),
            "hash of {}",
            e.seq
        );
        prev = e.hash.clone();
    }
    let newest = store.audit_newest(3).unwrap();
    assert_eq!(
        newest.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![100, 99, 98]
    );
}

fn concurrent_migrations_on_a_fresh_store(b: Backend) {
    let f = Fixture::new(b);
    let opened: Vec<Box<dyn StateStore>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6).map(|_| s.spawn(|| f.open())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (n, store) in opened.iter().enumerate() {
        store.set_paused(&format!("job{n}"), true).unwrap();
    }
    assert_eq!(opened[0].paused_jobs().unwrap().len(), 6);
}

/// The trait is synchronous and is called from inside tokio runtimes (the
/// daemon's HTTP side) as well as from plain threads.
fn usable_inside_a_tokio_runtime(b: Backend) {
    let f = Fixture::new(b);
    let store = std::sync::Arc::new(f.open());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let paused = runtime.block_on(async {
        store.set_paused("app", true).unwrap();
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.paused_jobs().unwrap())
            .await
            .unwrap()
    });
    assert!(paused.contains("app"));
    let inner = runtime.block_on(async { store.paused_jobs().unwrap() });
    assert_eq!(inner, paused);
}

fn fire(job: &str, at: i64) -> FireKey {
    FireKey {
        job: job.into(),
        kind: "backup".into(),
        scheduled_for: Timestamp::from_second(at).unwrap(),
    }
}

fn a_fire_is_claimed_once_and_its_lease_fences(b: Backend) {
    let f = Fixture::new(b);
    let (store, other) = (f.open(), f.open());
    let lease = Duration::from_secs(60);
    let ClaimOutcome::Won(token) = store.claim_fire(&fire("app", 100), "r1", lease).unwrap() else {
        panic!("the first claim wins");
    };
    assert_eq!(
        other.claim_fire(&fire("app", 100), "r2", lease).unwrap(),
        ClaimOutcome::Lost { by: "r1".into() }
    );
    assert!(matches!(
        other.claim_fire(&fire("app", 102), "r2", lease).unwrap(),
        ClaimOutcome::Won(_)
    ));
    assert!(matches!(
        other.claim_fire(&fire("db", 100), "r2", lease).unwrap(),
        ClaimOutcome::Won(_)
    ));
    assert!(
        store
            .lease_valid(&token, "r1", Duration::from_secs(10))
            .unwrap()
    );
    assert!(!store.lease_valid(&token, "r2", Duration::ZERO).unwrap());
    assert!(
        !store
            .lease_valid(&token, "r1", Duration::from_secs(120))
            .unwrap(),
        "margin beyond the lease"
    );
    assert!(store.renew_lease(&token, "r1", lease).unwrap());
    assert!(!other.renew_lease(&token, "r2", lease).unwrap());
    assert!(other.take_abandoned("r2", lease).unwrap().is_empty());
    store.finish_claim(&token, "r1").unwrap();
    store.finish_claim(&token, "r1").unwrap();
    assert!(!store.lease_valid(&token, "r1", Duration::ZERO).unwrap());
    assert!(!store.renew_lease(&token, "r1", lease).unwrap());
    assert_eq!(
        other.claim_fire(&fire("app", 100), "r2", lease).unwrap(),
        ClaimOutcome::Lost { by: "r1".into() },
        "a finished fire is never claimed again"
    );
}

fn a_lapsed_lease_is_taken_over_once_and_its_runs_interrupted(b: Backend) {
    let f = Fixture::new(b);
    let store = f.open();
    let ClaimOutcome::Won(token) = store
        .claim_fire(&fire("app", 100), "r1", Duration::from_millis(1))
        .unwrap()
    else {
        panic!("won");
    };
    let run = store
        .start_run(&NewRun {
            job: "app".into(),
            kind: RunKind::Backup,
            trigger: Trigger::Schedule,
            started_at: Timestamp::now(),
            replica: Some("r1".into()),
            scheduled_for: Some(Timestamp::from_second(100).unwrap()),
            claim: Some(token.id),
        })
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.lease_valid(&token, "r1", Duration::ZERO).unwrap() {
        assert!(Instant::now() < deadline, "a 1 ms lease never lapsed");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(5));
    assert!(
        !store
            .renew_lease(&token, "r1", Duration::from_secs(60))
            .unwrap(),
        "lapsed: not renewed"
    );
    // Two replicas sweep at once: exactly one takes the claim.
    let (two, three) = (f.open(), f.open());
    let (a, b2) = std::thread::scope(|s| {
        let a = s.spawn(|| two.take_abandoned("r2", Duration::from_secs(60)).unwrap());
        let b2 = s.spawn(|| three.take_abandoned("r3", Duration::from_secs(60)).unwrap());
        (a.join().unwrap(), b2.join().unwrap())
    });
    assert_eq!(a.len() + b2.len(), 1, "taken over exactly once");
    let (taken, by) = if a.is_empty() {
        (&b2[0], "r3")
    } else {
        (&a[0], "r2")
    };
    assert_eq!(taken.abandoned_by, "r1");
    assert_eq!(taken.fire, fire("app", 100));
    assert_eq!(taken.token.attempt, 2);
    assert_eq!(taken.runs.len(), 1);
    assert_eq!(taken.runs[0].id, run);
    assert!(
        taken.runs[0]
            .error
            .as_deref()
            .unwrap()
            .contains("abandoned by replica r1")
    );
    let recorded = store.run(run).unwrap().unwrap();
    assert_eq!(recorded.status, RunStatus::Interrupted);
    assert_eq!(recorded.replica.as_deref(), Some("r1"));
    assert_eq!(
        recorded.scheduled_for,
        Some(Timestamp::from_second(100).unwrap())
    );
    assert!(
        !store.lease_valid(&token, "r1", Duration::ZERO).unwrap(),
        "the old token fences nothing"
    );
    assert!(store.lease_valid(&taken.token, by, Duration::ZERO).unwrap());
    assert!(
        store
            .take_abandoned("r4", Duration::from_secs(60))
            .unwrap()
            .is_empty()
    );
}

fn fire_claims_race_one_winner(b: Backend) {
    let f = Fixture::new(b);
    let stores: Vec<Box<dyn StateStore>> = (0..6).map(|_| f.open()).collect();
    let barrier = std::sync::Barrier::new(stores.len());
    let outcomes: Vec<ClaimOutcome> = std::thread::scope(|s| {
        let handles: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(n, store)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    store
                        .claim_fire(&fire("app", 7), &format!("r{n}"), Duration::from_secs(5))
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o, ClaimOutcome::Won(_)))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let winner = format!("r{}", winners[0]);
    for outcome in &outcomes {
        if let ClaimOutcome::Lost { by } = outcome {
            assert_eq!(by, &winner, "a loser names the winner");
        }
    }
}

fn heartbeats_values_and_claim_holders(b: Backend) {
    let f = Fixture::new(b);
    let store = f.open();
    let mut info = ReplicaInfo {
        id: "r1".into(),
        host: "h".into(),
        pid: 4,
        version: "1".into(),
        started_at: Timestamp::from_second(10).unwrap(),
        last_heartbeat: Timestamp::from_second(11).unwrap(),
        runs_in_progress: 0,
        config_fingerprint: "abc".into(),
        stopped_at: None,
    };
    store.heartbeat(&info).unwrap();
    info.last_heartbeat = Timestamp::from_second(20).unwrap();
    info.runs_in_progress = 2;
    store.heartbeat(&info).unwrap();
    let r2 = ReplicaInfo {
        id: "r2".into(),
        last_heartbeat: Timestamp::from_second(30).unwrap(),
        stopped_at: Some(Timestamp::from_second(31).unwrap()),
        ..info.clone()
    };
    f.open().heartbeat(&r2).unwrap();
    assert_eq!(
        store.replicas().unwrap(),
        vec![r2, info.clone()],
        "newest heartbeat first"
    );

    let a = serde_json::json!({"state": "failing", "since": 1});
    let b2 = serde_json::json!({"state": "ok"});
    let other = f.open();
    assert!(store.swap_value("alerts", "app", None, &a).unwrap());
    assert!(!other.swap_value("alerts", "app", None, &b2).unwrap());
    assert!(other.swap_value("alerts", "app", Some(&a), &b2).unwrap());
    assert!(!store.swap_value("alerts", "app", Some(&a), &b2).unwrap());
    assert_eq!(store.get_value("alerts", "app").unwrap(), Some(b2));

    assert!(store.claim("job:app", "elsewhere:1:r9", 60).unwrap());
    assert_eq!(
        other.claim_holder("job:app").unwrap().as_deref(),
        Some("elsewhere:1:r9")
    );
    store.release("job:app", "elsewhere:1:r9").unwrap();
    assert_eq!(other.claim_holder("job:app").unwrap(), None);
}

macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod sqlite { $( #[test] fn $test() { super::$test(super::Backend::Sqlite) } )* }
        mod postgres { $( #[test] fn $test() { super::$test(super::Backend::Postgres) } )* }
        mod pgbouncer { $( #[test] fn $test() { super::$test(super::Backend::Pgbouncer) } )* }
    };
}

contract!(
    runs_round_trip_and_filters,
    latest_runs_of_many_jobs_in_one_read,
    orphaned_runs_are_interrupted_once,
    forgotten_runs_stay_counted,
    pauses_schedule_marks_and_overrides,
    copy_marks_per_destination,
    claims_are_exclusive_expire_and_release,
    claims_race_one_winner,
    values_round_trip,
    users_sessions_and_tokens,
    audit_chain_under_concurrent_appends,
    concurrent_migrations_on_a_fresh_store,
    usable_inside_a_tokio_runtime,
    a_fire_is_claimed_once_and_its_lease_fences,
    a_lapsed_lease_is_taken_over_once_and_its_runs_interrupted,
    fire_claims_race_one_winner,
    heartbeats_values_and_claim_holders,
);

// PostgreSQL only: what a network database does that a file does not.

#[test]
fn postgres_reconnects_after_the_server_dropped_the_connection() {
    let f = Fixture::new(Backend::Postgres);
    let store = f.open();
    store.set_paused("app", true).unwrap();
    servers::postgres().sql(
        "postgres",
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
            f.db
        ),
    );
    // The first call may see the dead connection; the store opens a new one.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.paused_jobs() {
            Ok(jobs) => {
                assert!(jobs.contains("app"));
                break;
            }
            Err(e) => {
                assert!(e.to_string().contains("state store"), "{e}");
                assert!(Instant::now() < deadline, "never reconnected: {e}");
            }
        }
    }
}

#[test]
fn postgres_unreachable_fails_fast_naming_the_state_store() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://cairn:hunter2-secret@127.0.0.1:{port}/cairn");
    let start = Instant::now();
    let err = PostgresState::open(&pg_options(&url))
        .err()
        .expect("no server there");
    let text = err.to_string();
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        text.contains("state store postgres://cairn@127.0.0.1"),
        "{text}"
    );
    assert!(!text.contains("hunter2-secret"), "{text}");
}

#[test]
fn postgres_store_opened_by_a_newer_cairn_is_refused() {
    let f = Fixture::new(Backend::Postgres);
    drop(f.open());
    f.sql("UPDATE cairn_schema SET version = 999");
    let err = PostgresState::open(&pg_options(&f.url()))
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("newer than this cairn knows"),
        "{err}"
    );
}

#[test]
fn postgres_tls_modes_are_enforced() {
    let f = Fixture::new(Backend::Postgres);
    let open = |mode: &str| {
        PostgresState::open(&StatePostgres {
            sslmode: Some(mode.into()),
            ..pg_options(&f.url())
        })
    };
    // The test server has no TLS: `prefer` falls back, `require` refuses.
    assert!(open("prefer").is_ok());
    let err = open("require").err().expect("require needs TLS");
    assert!(
        err.to_string().contains("state store postgres://postgres@"),
        "{err}"
    );
    let err = open("verify-full").err().expect("no root certificate");
    assert!(err.to_string().contains("sslrootcert"), "{err}");
}
