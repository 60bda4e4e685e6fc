//! The PostgreSQL state store, for several daemons sharing one history.
//!
//! Every statement is unnamed (`query_typed`, `batch_execute`), nothing relies
//! on session state, and locks are transaction-scoped, so the store works
//! behind PgBouncer in transaction mode. Claims are one upsert with a lease
//! column; the audit chain is appended under a table lock in one transaction.

mod connect;
mod copy;
mod replicas;
mod schema;
pub mod tls;
mod worker;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use jiff::Timestamp;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row};

use super::{
    AbandonedFire, ApiToken, ArtifactMark, AuditEntry, ClaimOutcome, ClaimToken, CopyMarks,
    FireKey, NewAudit, NewRun, ReplicaInfo, RunCount, RunEnd, RunFilter, RunKind, RunRecord,
    RunStatus, ScheduleOverride, Session, StateStore, User, audit_hash, host,
};
use crate::config::StatePostgres;
use crate::{Error, Result};

pub use connect::location;
pub use copy::Copied;

/// The kv namespace that keeps the number of runs deleted by `forget_runs_before`.
const FORGOTTEN_RUNS: &str = "forgotten_runs";

pub struct PostgresState {
    location: String,
    worker: worker::Worker,
}

type PgResult<T> = std::result::Result<T, tokio_postgres::Error>;

fn millis(ts: Timestamp) -> i64 {
    ts.as_millisecond()
}

fn from_millis(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// PostgreSQL text cannot hold NUL.
fn text(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

/// Runs `body` between BEGIN and COMMIT (ROLLBACK on error) on the one
/// connection; the worker runs one call at a time, so nothing interleaves.
pub(crate) async fn in_transaction<T>(
    client: &Client,
    body: impl Future<Output = PgResult<T>>,
) -> PgResult<T> {
    client.batch_execute("BEGIN").await?;
    match body.await {
        Ok(value) => {
            client.batch_execute("COMMIT").await?;
            Ok(value)
        }
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

impl PostgresState {
    pub fn open(options: &StatePostgres) -> Result<PostgresState> {
        let location = location(&options.url);
        let fail = |what: &str, e: String| state_error(&location, what, e);
        let (config, tls) =
            connect::config(options).map_err(|e| fail("bad connection settings", e))?;
        let worker = worker::Worker::start(config, tls)
            .map_err(|e| fail("cannot start its connection thread", e.to_string()))?;
        let store = PostgresState { location, worker };
        match store
            .worker
            .call(|c| async move { schema::migrate(&c).await })
            .map_err(|e| store.error("cannot bring the schema up to date", e))?
        {
            schema::Outcome::Current => Ok(store),
            schema::Outcome::Newer(version) => Err(Error::Run(format!(
                "state store {} has schema version {version}, newer than this cairn knows ({}); upgrade cairn",
                store.location,
                schema::MIGRATIONS.len()
            ))),
        }
    }

    fn error(&self, what: &str, e: String) -> Error {
        state_error(&self.location, what, e)
    }

    fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(std::sync::Arc<Client>) -> Fut + Send + 'static,
        Fut: Future<Output = PgResult<T>> + Send + 'static,
    {
        self.worker.call(f).map_err(|e| self.error(what, e))
    }

    /// One statement; returns the rows it returned.
    fn query(&self, what: &str, sql: impl Into<String>, params: Vec<Param>) -> Result<Vec<Row>> {
        let sql = sql.into();
        self.call(what, move |c| async move {
            c.query_typed(&sql, &typed(&params)).await
        })
    }

    /// One statement that says what it changed with `RETURNING 1`.
    fn changed(&self, what: &str, sql: &str, params: Vec<Param>) -> Result<usize> {
        self.query(what, sql, params).map(|rows| rows.len())
    }
}

fn state_error(location: &str, what: &str, e: String) -> Error {
    Error::Run(format!(
        "state store {location}: {what}: {e} (history only: backups and their listing do not depend on it)"
    ))
}

/// An owned statement parameter (calls move to the connection thread).
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
    Bool(bool),
    Texts(Vec<String>),
}

impl Param {
    fn sql(&self) -> (&(dyn ToSql + Sync), Type) {
        match self {
            Param::Text(v) => (v, Type::TEXT),
            Param::OptText(v) => (v, Type::TEXT),
            Param::Int(v) => (v, Type::INT8),
            Param::OptInt(v) => (v, Type::INT8),
            Param::Bool(v) => (v, Type::BOOL),
            Param::Texts(v) => (v, Type::TEXT_ARRAY),
        }
    }
}

fn typed(params: &[Param]) -> Vec<(&(dyn ToSql + Sync), Type)> {
    params.iter().map(Param::sql).collect()
}

fn t(s: &str) -> Param {
    Param::Text(text(s))
}

fn ot(s: Option<&str>) -> Param {
    Param::OptText(s.map(text))
}

fn i(v: i64) -> Param {
    Param::Int(v)
}

fn oi(v: Option<i64>) -> Param {
    Param::OptInt(v)
}

fn parse<T: std::str::FromStr<Err = String>>(row: &Row, idx: usize) -> Result<T> {
    let value: String = get(row, idx)?;
    value
        .parse()
        .map_err(|e: String| Error::Run(format!("state store: column {idx}: {e}")))
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, idx: usize) -> Result<T> {
    row.try_get(idx).map_err(|e| {
        Error::Run(format!(
            "state store: column {idx}: {}",
            worker::describe(&e)
        ))
    })
}

const RUN_COLUMNS: &str = "id, job, kind, trigger, status, started_at, finished_at, bytes, \
     artifact_id, error, details, log, host, pid, replica, scheduled_for";

fn run_record(row: &Row, with_log: bool) -> Result<RunRecord> {
    Ok(RunRecord {
        id: get(row, 0)?,
        job: get(row, 1)?,
        kind: parse(row, 2)?,
        trigger: parse(row, 3)?,
        status: parse(row, 4)?,
        started_at: from_millis(get(row, 5)?),
        finished_at: get::<Option<i64>>(row, 6)?.map(from_millis),
        bytes: get::<Option<i64>>(row, 7)?.map(|b| b.max(0) as u64),
        artifact_id: get(row, 8)?,
        error: get(row, 9)?,
        details: get::<Option<String>>(row, 10)?.and_then(|d| serde_json::from_str(&d).ok()),
        log: if with_log { get(row, 11)? } else { None },
        host: get(row, 12)?,
        pid: get::<i64>(row, 13)?.max(0) as u32,
        replica: get(row, 14)?,
        scheduled_for: get::<Option<i64>>(row, 15)?.map(from_millis),
    })
}

const TOKEN_COLUMNS: &str =
    "name, hash, role, jobs, created_at, expires_at, last_used_at, revoked_at";
const AUDIT_COLUMNS: &str = "seq, at, actor, action, target, address, result, prev_hash, hash";

fn user_row(row: &Row) -> Result<User> {
    Ok(User {
        name: get(row, 0)?,
        role: parse(row, 1)?,
        password_hash: get(row, 2)?,
        created_at: from_millis(get(row, 3)?),
    })
}

fn session_row(row: &Row) -> Result<Session> {
    Ok(Session {
        id_hash: get(row, 0)?,
        user: get(row, 1)?,
        csrf: get(row, 2)?,
        created_at: from_millis(get(row, 3)?),
        last_seen_at: from_millis(get(row, 4)?),
    })
}

fn token_row(row: &Row) -> Result<ApiToken> {
    let jobs: String = get(row, 3)?;
    Ok(ApiToken {
        name: get(row, 0)?,
        hash: get(row, 1)?,
        role: parse(row, 2)?,
        jobs: serde_json::from_str(&jobs).unwrap_or_default(),
        created_at: from_millis(get(row, 4)?),
        expires_at: get::<Option<i64>>(row, 5)?.map(from_millis),
        last_used_at: get::<Option<i64>>(row, 6)?.map(from_millis),
        revoked_at: get::<Option<i64>>(row, 7)?.map(from_millis),
    })
}

fn audit_row(row: &Row) -> Result<AuditEntry> {
    Ok(AuditEntry {
        seq: get(row, 0)?,
        entry: NewAudit {
            at: from_millis(get(row, 1)?),
            actor: get(row, 2)?,
            action: get(row, 3)?,
            target: get(row, 4)?,
            address: get(row, 5)?,
            result: get(row, 6)?,
        },
        prev_hash: get(row, 7)?,
        hash: get(row, 8)?,
    })
}

impl StateStore for PostgresState {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn start_run(&self, run: &NewRun) -> Result<i64> {
        let rows = self.query(
            "cannot record the run",
            "INSERT INTO runs (job, kind, trigger, status, started_at, host, pid,
             replica, scheduled_for, claim)
             VALUES ($1, $2, $3, 'running', $4, $5, $6, $7, $8, $9) RETURNING id",
            vec![
                t(&run.job),
                t(run.kind.as_str()),
                t(run.trigger.as_str()),
                i(millis(run.started_at)),
                t(&host()),
                i(std::process::id() as i64),
                ot(run.replica.as_deref()),
                oi(run.scheduled_for.map(millis)),
                oi(run.claim),
            ],
        )?;
        match rows.first() {
            Some(row) => get(row, 0),
            None => Err(self.error("cannot record the run", "no id returned".into())),
        }
    }

    fn finish_run(&self, id: i64, end: &RunEnd, log: &str) -> Result<()> {
        let status = if end.success {
            RunStatus::Success
        } else {
            RunStatus::Failure
        };
        self.query(
            "cannot record the end of the run",
            "UPDATE runs SET status = $2, finished_at = $3, bytes = $4, artifact_id = $5,
             error = $6, details = $7, log = $8 WHERE id = $1",
            vec![
                i(id),
                t(status.as_str()),
                i(millis(Timestamp::now())),
                oi(end.bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX))),
                ot(end.artifact_id.as_deref()),
                ot(end.error.as_deref()),
                ot(end.details.as_ref().map(ToString::to_string).as_deref()),
                t(&super::sqlite::truncate_log(log)),
            ],
        )
        .map(|_| ())
    }

    fn interrupt_orphaned_runs(&self) -> Result<Vec<RunRecord>> {
        let rows = self.query(
            "cannot read runs",
            // Runs under a fire claim are settled when their lease lapses
            // (`take_abandoned`): a pid says nothing about another host's run.
            "SELECT id, pid FROM runs WHERE status = 'running' AND host = $1 AND claim IS NULL",
            vec![t(&host())],
        )?;
        let mut marked = Vec::new();
        for row in rows {
            let (id, pid): (i64, i64) = (get(&row, 0)?, get(&row, 1)?);
            if pid as u32 == std::process::id() || !crate::leftovers::owner_dead(&pid.to_string()) {
                continue;
            }
            // The sweeper whose update changes the row owns the run's alert.
            let changed = self.query(
                "cannot update runs",
                format!(
                    "UPDATE runs SET status = 'interrupted', finished_at = $2,
                     error = coalesce(error, 'the process running it ended before it finished (killed, or out of memory)')
                     WHERE id = $1 AND status = 'running' RETURNING {RUN_COLUMNS}"
                ),
                vec![i(id), i(millis(Timestamp::now()))],
            )?;
            for row in &changed {
                marked.push(run_record(row, false)?);
            }
        }
        Ok(marked)
    }

    fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let columns = if filter.with_log {
            RUN_COLUMNS.to_string()
        } else {
            RUN_COLUMNS.replace(" log,", " NULL::text AS log,")
        };
        let mut sql = format!("SELECT {columns} FROM runs WHERE true");
        let mut params = Vec::new();
        for (column, value) in [
            ("job", filter.job.clone()),
            ("kind", filter.kind.map(|k| k.as_str().to_string())),
            ("status", filter.status.map(|s| s.as_str().to_string())),
        ] {
            if let Some(value) = value {
                params.push(t(&value));
                sql.push_str(&format!(" AND {column} = ${}", params.len()));
            }
        }
        sql.push_str(" ORDER BY id DESC");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        self.query("cannot read runs", sql, params)?
            .iter()
            .map(|row| run_record(row, filter.with_log))
            .collect()
    }

    fn latest_runs(
        &self,
        jobs: &[String],
        kind: RunKind,
        status: Option<RunStatus>,
    ) -> Result<BTreeMap<String, RunRecord>> {
        let columns = RUN_COLUMNS.replace(" log,", " NULL::text AS log,");
        let mut params = vec![Param::Texts(jobs.to_vec()), t(kind.as_str())];
        let mut wanted = "job = wanted.name AND kind = $2".to_string();
        if let Some(status) = status {
            params.push(t(status.as_str()));
            wanted.push_str(" AND status = $3");
        }
        // One index walk per job (runs_by_job), all in one statement.
        let sql = format!(
            "SELECT latest.* FROM unnest($1::text[]) AS wanted(name) CROSS JOIN LATERAL \
             (SELECT {columns} FROM runs WHERE {wanted} ORDER BY id DESC LIMIT 1) AS latest"
        );
        self.query("cannot read runs", sql, params)?
            .iter()
            .map(|row| run_record(row, false).map(|run| (run.job.clone(), run)))
            .collect()
    }

    fn run_counts(&self) -> Result<Vec<RunCount>> {
        let rows = self.query(
            "cannot count runs",
            "SELECT job, kind, status, count(*)::bigint FROM runs WHERE status != 'running'
             GROUP BY job, kind, status
             UNION ALL
             SELECT split_part(key, E'\\t', 1), split_part(key, E'\\t', 2),
                    split_part(key, E'\\t', 3), value::bigint
             FROM kv WHERE namespace = $1",
            vec![t(FORGOTTEN_RUNS)],
        )?;
        let mut totals: BTreeMap<(String, String, String), i64> = BTreeMap::new();
        for row in &rows {
            *totals
                .entry((get(row, 0)?, get(row, 1)?, get(row, 2)?))
                .or_default() += get::<i64>(row, 3)?;
        }
        // Kinds or statuses this version does not know are left out.
        Ok(totals
            .into_iter()
            .filter_map(|((job, kind, status), count)| {
                Some(RunCount {
                    job,
                    kind: kind.parse().ok()?,
                    status: status.parse().ok()?,
                    count: count.max(0) as u64,
                })
            })
            .collect())
    }

    fn run(&self, id: i64) -> Result<Option<RunRecord>> {
        self.query(
            "cannot read the run",
            format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"),
            vec![i(id)],
        )?
        .first()
        .map(|row| run_record(row, true))
        .transpose()
    }

    fn forget_runs_before(&self, before: Timestamp) -> Result<usize> {
        let (before, now) = (millis(before), millis(Timestamp::now()));
        self.call("cannot forget old runs", move |c| async move {
            in_transaction(&c, async {
                // The forgotten runs stay counted: `cairn_runs_total` never goes down.
                c.query_typed(
                    "INSERT INTO kv (namespace, key, value, updated_at)
                     SELECT $3, job || E'\\t' || kind || E'\\t' || status, count(*)::text, $2
                     FROM runs WHERE status != 'running' AND started_at < $1
                     GROUP BY job, kind, status
                     ON CONFLICT (namespace, key) DO UPDATE
                     SET value = (kv.value::bigint + excluded.value::bigint)::text,
                         updated_at = excluded.updated_at",
                    &[
                        (&before, Type::INT8),
                        (&now, Type::INT8),
                        (&FORGOTTEN_RUNS, Type::TEXT),
                    ],
                )
                .await?;
                let deleted = c
                    .query_typed(
                        "DELETE FROM runs WHERE status != 'running' AND started_at < $1 RETURNING 1",
                        &[(&before, Type::INT8)],
                    )
                    .await?;
                Ok(deleted.len())
            })
            .await
        })
    }

    fn set_paused(&self, job: &str, paused: bool) -> Result<()> {
        let what = "cannot change the paused jobs";
        if paused {
            self.query(
                what,
                "INSERT INTO paused (job, since) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                vec![t(job), i(millis(Timestamp::now()))],
            )
        } else {
            self.query(what, "DELETE FROM paused WHERE job = $1", vec![t(job)])
        }
        .map(|_| ())
    }

    fn paused_jobs(&self) -> Result<BTreeSet<String>> {
        self.query(
            "cannot read the paused jobs",
            "SELECT job FROM paused",
            vec![],
        )?
        .iter()
        .map(|row| get(row, 0))
        .collect()
    }

    fn schedule_marks(&self) -> Result<BTreeMap<String, Timestamp>> {
        self.query(
            "cannot read schedule marks",
            "SELECT schedule, at FROM schedule_marks",
            vec![],
        )?
        .iter()
        .map(|row| Ok((get(row, 0)?, from_millis(get(row, 1)?))))
        .collect()
    }

    fn set_schedule_mark(&self, schedule: &str, at: Timestamp) -> Result<()> {
        self.query(
            "cannot write a schedule mark",
            "INSERT INTO schedule_marks (schedule, at) VALUES ($1, $2)
             ON CONFLICT (schedule) DO UPDATE SET at = excluded.at",
            vec![t(schedule), i(millis(at))],
        )
        .map(|_| ())
    }

    fn mark_copy(&self, job: &str, id: &str, destination: &str, mark: &ArtifactMark) -> Result<()> {
        self.query(
            "cannot mark the artifact",
            "INSERT INTO artifact_marks (job, id, destination, bad, reason, at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (job, id, destination) DO UPDATE SET bad = excluded.bad,
             reason = excluded.reason, at = excluded.at",
            vec![
                t(job),
                t(id),
                t(destination),
                Param::Bool(mark.bad),
                t(&mark.reason),
                i(millis(mark.at)),
            ],
        )
        .map(|_| ())
    }

    fn forget_whole_mark(&self, job: &str, id: &str) -> Result<()> {
        self.query(
            "cannot update the artifact's marks",
            "DELETE FROM artifact_marks WHERE job = $1 AND id = $2 AND destination = ''",
            vec![t(job), t(id)],
        )
        .map(|_| ())
    }

    fn copy_marks(&self, job: &str) -> Result<CopyMarks> {
        self.query(
            "cannot read artifact marks",
            "SELECT id, destination, bad, reason, at FROM artifact_marks WHERE job = $1",
            vec![t(job)],
        )?
        .iter()
        .map(|row| {
            Ok((
                (get(row, 0)?, get(row, 1)?),
                ArtifactMark {
                    bad: get(row, 2)?,
                    reason: get(row, 3)?,
                    at: from_millis(get(row, 4)?),
                },
            ))
        })
        .collect::<Result<_>>()
        .map(CopyMarks)
    }

    fn copy_marks_of(&self, jobs: &[String]) -> Result<BTreeMap<String, CopyMarks>> {
        let mut marks: BTreeMap<String, CopyMarks> = jobs
            .iter()
            .map(|job| (job.clone(), CopyMarks::default()))
            .collect();
        let rows = self.query(
            "cannot read artifact marks",
            "SELECT job, id, destination, bad, reason, at FROM artifact_marks WHERE job = ANY($1)",
            vec![Param::Texts(jobs.to_vec())],
        )?;
        for row in &rows {
            let job: String = get(row, 0)?;
            let mark = ArtifactMark {
                bad: get(row, 3)?,
                reason: get(row, 4)?,
                at: from_millis(get(row, 5)?),
            };
            marks
                .entry(job)
                .or_default()
                .0
                .insert((get(row, 1)?, get(row, 2)?), mark);
        }
        Ok(marks)
    }

    fn claim(&self, name: &str, holder: &str, lease_secs: u64) -> Result<bool> {
        let now = millis(Timestamp::now());
        let until = now.saturating_add((lease_secs as i64).saturating_mul(1000));
        let what = "cannot claim";
        // Free, ours already, or lapsed: one statement decides.
        let won = self.changed(
            what,
            "INSERT INTO claims (name, holder, until) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
             WHERE claims.holder = excluded.holder OR claims.until < $4
             RETURNING 1",
            vec![t(name), t(holder), i(until), i(now)],
        )? == 1;
        if won {
            return Ok(true);
        }
        // A holder on this host whose process is gone holds nothing.
        let current = self.query(
            what,
            "SELECT holder FROM claims WHERE name = $1",
            vec![t(name)],
        )?;
        let Some(row) = current.first() else {
            return self.claim(name, holder, lease_secs);
        };
        let old: String = get(row, 0)?;
        if !super::sqlite::holder_dead(&old) {
            return Ok(false);
        }
        Ok(self.changed(
            what,
            "UPDATE claims SET holder = $2, until = $3 WHERE name = $1 AND holder = $4 RETURNING 1",
            vec![t(name), t(holder), i(until), t(&old)],
        )? == 1)
    }

    fn release(&self, name: &str, holder: &str) -> Result<()> {
        self.query(
            "cannot release a claim",
            "DELETE FROM claims WHERE name = $1 AND holder = $2",
            vec![t(name), t(holder)],
        )
        .map(|_| ())
    }

    fn get_value(&self, namespace: &str, key: &str) -> Result<Option<serde_json::Value>> {
        let rows = self.query(
            "cannot read a value",
            "SELECT value FROM kv WHERE namespace = $1 AND key = $2",
            vec![t(namespace), t(key)],
        )?;
        Ok(match rows.first() {
            Some(row) => serde_json::from_str(&get::<String>(row, 0)?).ok(),
            None => None,
        })
    }

    fn put_value(&self, namespace: &str, key: &str, value: &serde_json::Value) -> Result<()> {
        self.query(
            "cannot write a value",
            "INSERT INTO kv (namespace, key, value, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value,
             updated_at = excluded.updated_at",
            vec![
                t(namespace),
                t(key),
                t(&value.to_string()),
                i(millis(Timestamp::now())),
            ],
        )
        .map(|_| ())
    }

    fn values(&self, namespace: &str) -> Result<BTreeMap<String, serde_json::Value>> {
        let rows = self.query(
            "cannot read values",
            "SELECT key, value FROM kv WHERE namespace = $1",
            vec![t(namespace)],
        )?;
        let mut values = BTreeMap::new();
        for row in &rows {
            if let Ok(value) = serde_json::from_str(&get::<String>(row, 1)?) {
                values.insert(get(row, 0)?, value);
            }
        }
        Ok(values)
    }

    fn add_user(&self, user: &User) -> Result<bool> {
        Ok(self.changed(
            "cannot add the user",
            "INSERT INTO users (name, role, password_hash, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING RETURNING 1",
            vec![
                t(&user.name),
                t(user.role.as_str()),
                t(&user.password_hash),
                i(millis(user.created_at)),
            ],
        )? == 1)
    }

    fn user(&self, name: &str) -> Result<Option<User>> {
        self.query(
            "cannot read the user",
            "SELECT name, role, password_hash, created_at FROM users WHERE name = $1",
            vec![t(name)],
        )?
        .first()
        .map(user_row)
        .transpose()
    }

    fn users(&self) -> Result<Vec<User>> {
        self.query(
            "cannot read the users",
            "SELECT name, role, password_hash, created_at FROM users ORDER BY name",
            vec![],
        )?
        .iter()
        .map(user_row)
        .collect()
    }

    fn set_password(&self, name: &str, password_hash: &str) -> Result<bool> {
        let (name, hash) = (text(name), text(password_hash));
        self.call("cannot change the password", move |c| async move {
            in_transaction(&c, async {
                let changed = c
                    .query_typed(
                        "UPDATE users SET password_hash = $2 WHERE name = $1 RETURNING 1",
                        &[(&name, Type::TEXT), (&hash, Type::TEXT)],
                    )
                    .await?;
                c.query_typed(
                    "DELETE FROM sessions WHERE user_name = $1",
                    &[(&name, Type::TEXT)],
                )
                .await?;
                Ok(changed.len() == 1)
            })
            .await
        })
    }

    fn remove_user(&self, name: &str) -> Result<bool> {
        let name = text(name);
        self.call("cannot remove the user", move |c| async move {
            in_transaction(&c, async {
                c.query_typed(
                    "DELETE FROM sessions WHERE user_name = $1",
                    &[(&name, Type::TEXT)],
                )
                .await?;
                let removed = c
                    .query_typed(
                        "DELETE FROM users WHERE name = $1 RETURNING 1",
                        &[(&name, Type::TEXT)],
                    )
                    .await?;
                Ok(removed.len() == 1)
            })
            .await
        })
    }

    fn create_session(&self, session: &Session) -> Result<()> {
        self.query(
            "cannot start the session",
            "INSERT INTO sessions (id_hash, user_name, csrf, created_at, last_seen_at)
             VALUES ($1, $2, $3, $4, $5)",
            vec![
                t(&session.id_hash),
                t(&session.user),
                t(&session.csrf),
                i(millis(session.created_at)),
                i(millis(session.last_seen_at)),
            ],
        )
        .map(|_| ())
    }

    fn session(&self, id_hash: &str) -> Result<Option<Session>> {
        self.query(
            "cannot read the session",
            "SELECT id_hash, user_name, csrf, created_at, last_seen_at FROM sessions
             WHERE id_hash = $1",
            vec![t(id_hash)],
        )?
        .first()
        .map(session_row)
        .transpose()
    }

    fn touch_session(&self, id_hash: &str, at: Timestamp) -> Result<()> {
        self.query(
            "cannot update the session",
            "UPDATE sessions SET last_seen_at = $2 WHERE id_hash = $1",
            vec![t(id_hash), i(millis(at))],
        )
        .map(|_| ())
    }

    fn end_session(&self, id_hash: &str) -> Result<()> {
        self.query(
            "cannot end the session",
            "DELETE FROM sessions WHERE id_hash = $1",
            vec![t(id_hash)],
        )
        .map(|_| ())
    }

    fn end_stale_sessions(
        &self,
        created_before: Timestamp,
        seen_before: Timestamp,
    ) -> Result<usize> {
        self.changed(
            "cannot end stale sessions",
            "DELETE FROM sessions WHERE created_at < $1 OR last_seen_at < $2 RETURNING 1",
            vec![i(millis(created_before)), i(millis(seen_before))],
        )
    }

    fn add_token(&self, token: &ApiToken) -> Result<bool> {
        let jobs = serde_json::to_string(&token.jobs).unwrap_or_else(|_| "[]".into());
        Ok(self.changed(
            "cannot add the token",
            "INSERT INTO tokens
             (name, hash, role, jobs, created_at, expires_at, last_used_at, revoked_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING 1",
            vec![
                t(&token.name),
                t(&token.hash),
                t(token.role.as_str()),
                t(&jobs),
                i(millis(token.created_at)),
                oi(token.expires_at.map(millis)),
                oi(token.last_used_at.map(millis)),
                oi(token.revoked_at.map(millis)),
            ],
        )? == 1)
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>> {
        self.query(
            "cannot read the token",
            format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1"),
            vec![t(hash)],
        )?
        .first()
        .map(token_row)
        .transpose()
    }

    fn tokens(&self) -> Result<Vec<ApiToken>> {
        self.query(
            "cannot read the tokens",
            format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY name"),
            vec![],
        )?
        .iter()
        .map(token_row)
        .collect()
    }

    fn touch_token(&self, name: &str, at: Timestamp) -> Result<()> {
        self.query(
            "cannot update the token",
            "UPDATE tokens SET last_used_at = $2 WHERE name = $1",
            vec![t(name), i(millis(at))],
        )
        .map(|_| ())
    }

    fn revoke_token(&self, name: &str, at: Timestamp) -> Result<bool> {
        Ok(self.changed(
            "cannot revoke the token",
            "UPDATE tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL RETURNING 1",
            vec![t(name), i(millis(at))],
        )? == 1)
    }

    fn append_audit(&self, entry: &NewAudit) -> Result<AuditEntry> {
        let entry = NewAudit {
            at: entry.at,
            actor: text(&entry.actor),
            action: text(&entry.action),
            target: text(&entry.target),
            address: text(&entry.address),
            result: text(&entry.result),
        };
        self.call("cannot append to the audit log", move |c| async move {
            in_transaction(&c, async {
                // Appenders queue here: the chain neither forks nor leaves a gap.
                c.batch_execute("LOCK TABLE audit IN EXCLUSIVE MODE").await?;
                let last = c
                    .query_typed("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &[])
                    .await?;
                let (seq, prev_hash) = match last.first() {
                    Some(row) => (row.try_get::<_, i64>(0)? + 1, row.try_get::<_, String>(1)?),
                    None => (1, super::access::AUDIT_GENESIS.to_string()),
                };
                let hash = audit_hash(seq, &prev_hash, &entry);
                c.query_typed(
                    "INSERT INTO audit (seq, at, actor, action, target, address, result, prev_hash, hash)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    &[
                        (&seq, Type::INT8),
                        (&millis(entry.at), Type::INT8),
                        (&entry.actor, Type::TEXT),
                        (&entry.action, Type::TEXT),
                        (&entry.target, Type::TEXT),
                        (&entry.address, Type::TEXT),
                        (&entry.result, Type::TEXT),
                        (&prev_hash, Type::TEXT),
                        (&hash, Type::TEXT),
                    ],
                )
                .await?;
                Ok(AuditEntry {
                    seq,
                    entry: entry.clone(),
                    prev_hash,
                    hash,
                })
            })
            .await
        })
    }

    fn audit_after(&self, after_seq: i64, limit: usize) -> Result<Vec<AuditEntry>> {
        self.query(
            "cannot read the audit log",
            format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2"),
            vec![i(after_seq), i(limit as i64)],
        )?
        .iter()
        .map(audit_row)
        .collect()
    }

    fn audit_newest(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        self.query(
            "cannot read the audit log",
            format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY seq DESC LIMIT $1"),
            vec![i(limit as i64)],
        )?
        .iter()
        .map(audit_row)
        .collect()
    }

    fn set_schedule_override(&self, job: &str, value: Option<&ScheduleOverride>) -> Result<()> {
        let what = "cannot change the schedule override";
        match value {
            Some(value) => self.query(
                what,
                "INSERT INTO schedule_overrides (job, value, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (job) DO UPDATE SET value = excluded.value,
                 updated_at = excluded.updated_at",
                vec![
                    t(job),
                    t(&serde_json::to_string(value).unwrap_or_default()),
                    i(millis(Timestamp::now())),
                ],
            ),
            None => self.query(
                what,
                "DELETE FROM schedule_overrides WHERE job = $1",
                vec![t(job)],
            ),
        }
        .map(|_| ())
    }

    fn claim_fire(&self, fire: &FireKey, replica: &str, lease: Duration) -> Result<ClaimOutcome> {
        replicas::claim_fire(self, fire, replica, lease)
    }

    fn renew_lease(&self, token: &ClaimToken, replica: &str, lease: Duration) -> Result<bool> {
        replicas::renew_lease(self, token, replica, lease)
    }

    fn lease_valid(&self, token: &ClaimToken, replica: &str, margin: Duration) -> Result<bool> {
        replicas::lease_valid(self, token, replica, margin)
    }

    fn finish_claim(&self, token: &ClaimToken, replica: &str) -> Result<()> {
        replicas::finish_claim(self, token, replica)
    }

    fn take_abandoned(&self, replica: &str, lease: Duration) -> Result<Vec<AbandonedFire>> {
        replicas::take_abandoned(self, replica, lease)
    }

    fn heartbeat(&self, info: &ReplicaInfo) -> Result<()> {
        replicas::heartbeat(self, info)
    }

    fn replicas(&self) -> Result<Vec<ReplicaInfo>> {
        replicas::replicas(self)
    }

    fn swap_value(
        &self,
        namespace: &str,
        key: &str,
        expected: Option<&serde_json::Value>,
        new: &serde_json::Value,
    ) -> Result<bool> {
        replicas::swap_value(self, namespace, key, expected, new)
    }

    fn claim_holder(&self, name: &str) -> Result<Option<String>> {
        let rows = self.query(
            "cannot read a claim",
            "SELECT holder, until FROM claims WHERE name = $1",
            vec![t(name)],
        )?;
        let now = millis(Timestamp::now());
        match rows.first() {
            Some(row) => {
                let (holder, until): (String, i64) = (get(row, 0)?, get(row, 1)?);
                Ok((until >= now && !super::sqlite::holder_dead(&holder)).then_some(holder))
            }
            None => Ok(None),
        }
    }

    fn schedule_overrides(&self) -> Result<BTreeMap<String, ScheduleOverride>> {
        let rows = self.query(
            "cannot read the schedule overrides",
            "SELECT job, value FROM schedule_overrides",
            vec![],
        )?;
        let mut overrides = BTreeMap::new();
        for row in &rows {
            if let Ok(value) = serde_json::from_str(&get::<String>(row, 1)?) {
                overrides.insert(get(row, 0)?, value);
            }
        }
        Ok(overrides)
    }
}
