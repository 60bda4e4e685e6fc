//! Fire claims with leases, take-over of lapsed claims, heartbeats and
//! compare-and-set values on PostgreSQL. Lease times are the database
//! server's clock (`clock_timestamp()`), so replicas on hosts whose clocks
//! differ still agree on when a lease lapsed. Each call is one statement
//! except the take-over (one transaction).

use std::time::Duration;

use tokio_postgres::types::Type;

use super::{PostgresState, from_millis, get, i, in_transaction, millis, run_record, t, text};
use super::{RUN_COLUMNS, oi};
use crate::Result;
use crate::state::{AbandonedFire, ClaimOutcome, ClaimToken, FireKey, ReplicaInfo};

/// The server's clock in milliseconds since the epoch.
const NOW: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub fn claim_fire(
    store: &PostgresState,
    fire: &FireKey,
    replica: &str,
    lease: Duration,
) -> Result<ClaimOutcome> {
    let what = "cannot claim a fire";
    let key = || vec![t(&fire.job), t(&fire.kind), i(millis(fire.scheduled_for))];
    let mut params = key();
    params.extend([t(replica), i(ms(lease))]);
    // The insert and, when it lost, who holds the row: one round trip.
    let rows = store.query(
        what,
        format!(
            "WITH won AS (
                INSERT INTO fire_claims (job, kind, scheduled_for, replica, attempt, claimed_at, until)
                VALUES ($1, $2, $3, $4, 1, {NOW}, {NOW} + $5)
                ON CONFLICT (job, kind, scheduled_for) DO NOTHING RETURNING id)
             SELECT id, NULL::text FROM won
             UNION ALL
             SELECT NULL::bigint, replica FROM fire_claims
             WHERE job = $1 AND kind = $2 AND scheduled_for = $3 AND NOT EXISTS (SELECT 1 FROM won)"
        ),
        params,
    )?;
    if let Some(row) = rows.first() {
        if let Some(id) = get::<Option<i64>>(row, 0)? {
            return Ok(ClaimOutcome::Won(ClaimToken { id, attempt: 1 }));
        }
        return Ok(ClaimOutcome::Lost {
            by: get::<Option<String>>(row, 1)?.unwrap_or_default(),
        });
    }
    // Lost to a row committed after this statement's snapshot: read it now.
    let rows = store.query(
        what,
        "SELECT replica FROM fire_claims WHERE job = $1 AND kind = $2 AND scheduled_for = $3",
        key(),
    )?;
    Ok(ClaimOutcome::Lost {
        by: match rows.first() {
            Some(row) => get(row, 0)?,
            None => String::new(),
        },
    })
}

pub fn renew_lease(
    store: &PostgresState,
    token: &ClaimToken,
    replica: &str,
    lease: Duration,
) -> Result<bool> {
    // A lapsed lease is not renewed: another replica may be taking it over.
    Ok(store.changed(
        "cannot renew a lease",
        &format!(
            "UPDATE fire_claims SET until = {NOW} + $4
             WHERE id = $1 AND attempt = $2 AND replica = $3 AND finished_at IS NULL
             AND until >= {NOW} RETURNING 1"
        ),
        vec![
            i(token.id),
            i(token.attempt.into()),
            t(replica),
            i(ms(lease)),
        ],
    )? == 1)
}

pub fn lease_valid(
    store: &PostgresState,
    token: &ClaimToken,
    replica: &str,
    margin: Duration,
) -> Result<bool> {
    Ok(store.changed(
        "cannot check a lease",
        &format!(
            "SELECT 1 FROM fire_claims
             WHERE id = $1 AND attempt = $2 AND replica = $3 AND finished_at IS NULL
             AND until > {NOW} + $4"
        ),
        vec![
            i(token.id),
            i(token.attempt.into()),
            t(replica),
            i(ms(margin)),
        ],
    )? == 1)
}

pub fn finish_claim(store: &PostgresState, token: &ClaimToken, replica: &str) -> Result<()> {
    store
        .query(
            "cannot finish a claim",
            format!(
                "UPDATE fire_claims SET finished_at = {NOW}
                 WHERE id = $1 AND attempt = $2 AND replica = $3 AND finished_at IS NULL"
            ),
            vec![i(token.id), i(token.attempt.into()), t(replica)],
        )
        .map(|_| ())
}

pub fn take_abandoned(
    store: &PostgresState,
    replica: &str,
    lease: Duration,
) -> Result<Vec<AbandonedFire>> {
    let (replica, lease) = (text(replica), ms(lease));
    let taken = store.call("cannot take over abandoned claims", move |c| async move {
        in_transaction(&c, async {
            // SKIP LOCKED: replicas sweeping at once each take different rows.
            let claims = c
                .query_typed(
                    &format!(
                        "UPDATE fire_claims f SET replica = $1, attempt = f.attempt + 1,
                         until = {NOW} + $2
                         FROM (SELECT id, replica AS old FROM fire_claims
                               WHERE finished_at IS NULL AND until < {NOW}
                               FOR UPDATE SKIP LOCKED) o
                         WHERE f.id = o.id
                         RETURNING f.id, f.attempt, f.job, f.kind, f.scheduled_for, o.old"
                    ),
                    &[(&replica, Type::TEXT), (&lease, Type::INT8)],
                )
                .await?;
            let mut taken = Vec::new();
            for claim in claims {
                let id: i64 = claim.try_get(0)?;
                let old: String = claim.try_get(5)?;
                let error =
                    format!("abandoned by replica {old}: its lease lapsed before the run ended");
                let runs = c
                    .query_typed(
                        &format!(
                            "UPDATE runs SET status = 'interrupted', finished_at = {NOW},
                             error = coalesce(error, $2)
                             WHERE claim = $1 AND status = 'running' RETURNING {RUN_COLUMNS}"
                        ),
                        &[(&id, Type::INT8), (&error, Type::TEXT)],
                    )
                    .await?;
                taken.push((claim, runs));
            }
            Ok(taken)
        })
        .await
    })?;
    taken
        .into_iter()
        .map(|(claim, runs)| {
            Ok(AbandonedFire {
                token: ClaimToken {
                    id: get(&claim, 0)?,
                    attempt: u32::try_from(get::<i64>(&claim, 1)?).unwrap_or(u32::MAX),
                },
                fire: FireKey {
                    job: get(&claim, 2)?,
                    kind: get(&claim, 3)?,
                    scheduled_for: from_millis(get(&claim, 4)?),
                },
                abandoned_by: get(&claim, 5)?,
                runs: runs
                    .iter()
                    .map(|row| run_record(row, false))
                    .collect::<Result<_>>()?,
            })
        })
        .collect()
}

pub fn heartbeat(store: &PostgresState, info: &ReplicaInfo) -> Result<()> {
    store
        .query(
            "cannot record the heartbeat",
            "INSERT INTO replicas (id, host, pid, version, started_at, last_heartbeat,
             runs_in_progress, config_fingerprint, stopped_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,
             version = excluded.version, started_at = excluded.started_at,
             last_heartbeat = excluded.last_heartbeat,
             runs_in_progress = excluded.runs_in_progress,
             config_fingerprint = excluded.config_fingerprint,
             stopped_at = excluded.stopped_at",
            vec![
                t(&info.id),
                t(&info.host),
                i(info.pid.into()),
                t(&info.version),
                i(millis(info.started_at)),
                i(millis(info.last_heartbeat)),
                i(info.runs_in_progress.into()),
                t(&info.config_fingerprint),
                oi(info.stopped_at.map(millis)),
            ],
        )
        .map(|_| ())
}

pub fn replicas(store: &PostgresState) -> Result<Vec<ReplicaInfo>> {
    store
        .query(
            "cannot read the replicas",
            "SELECT id, host, pid, version, started_at, last_heartbeat, runs_in_progress,
             config_fingerprint, stopped_at FROM replicas ORDER BY last_heartbeat DESC, id",
            vec![],
        )?
        .iter()
        .map(|row| {
            Ok(ReplicaInfo {
                id: get(row, 0)?,
                host: get(row, 1)?,
                pid: u32::try_from(get::<i64>(row, 2)?).unwrap_or(0),
                version: get(row, 3)?,
                started_at: from_millis(get(row, 4)?),
                last_heartbeat: from_millis(get(row, 5)?),
                runs_in_progress: u32::try_from(get::<i64>(row, 6)?).unwrap_or(0),
                config_fingerprint: get(row, 7)?,
                stopped_at: get::<Option<i64>>(row, 8)?.map(from_millis),
            })
        })
        .collect()
}

/// One statement: an insert when nothing is expected, else an update guarded
/// by the current value (compared as JSON, as the SQLite store does).
pub fn swap_value(
    store: &PostgresState,
    namespace: &str,
    key: &str,
    expected: Option<&serde_json::Value>,
    new: &serde_json::Value,
) -> Result<bool> {
    let what = "cannot write a value";
    let now = i(millis(jiff::Timestamp::now()));
    let changed = match expected {
        None => store.changed(
            what,
            "INSERT INTO kv (namespace, key, value, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (namespace, key) DO NOTHING RETURNING 1",
            vec![t(namespace), t(key), t(&new.to_string()), now],
        )?,
        Some(expected) => store.changed(
            what,
            "UPDATE kv SET value = $3, updated_at = $4
             WHERE namespace = $1 AND key = $2 AND value::jsonb = $5::jsonb RETURNING 1",
            vec![
                t(namespace),
                t(key),
                t(&new.to_string()),
                now,
                t(&expected.to_string()),
            ],
        )?,
    };
    Ok(changed == 1)
}
