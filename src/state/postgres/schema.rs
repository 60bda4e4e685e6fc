//! The PostgreSQL schema as numbered migrations, applied at open in one
//! transaction under a transaction-scoped advisory lock, so that replicas
//! starting at once wait for each other instead of racing (a session lock
//! would not survive PgBouncer's transaction mode).

use tokio_postgres::Client;

/// Any number that is cairn's own: the key of the migration lock.
const MIGRATION_LOCK: i64 = 0x6361_6972_6e00_0001;

/// Entry `n` brings the schema from version `n` to `n + 1`. Version 1 is the
/// SQLite store's schema 1–3 in one step. Times are milliseconds since the
/// epoch, as in the SQLite store.
pub const MIGRATIONS: &[&str] = &[
    "CREATE TABLE runs (
        id BIGSERIAL PRIMARY KEY,
        job TEXT NOT NULL,
        kind TEXT NOT NULL,
        trigger TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at BIGINT NOT NULL,
        finished_at BIGINT,
        bytes BIGINT,
        artifact_id TEXT,
        error TEXT,
        details TEXT,
        log TEXT,
        host TEXT NOT NULL,
        pid BIGINT NOT NULL
     );
     CREATE INDEX runs_by_job ON runs (job, kind, id);
     CREATE INDEX runs_running ON runs (host) WHERE status = 'running';
     CREATE TABLE paused (job TEXT PRIMARY KEY, since BIGINT NOT NULL);
     CREATE TABLE schedule_marks (schedule TEXT PRIMARY KEY, at BIGINT NOT NULL);
     CREATE TABLE artifact_marks (
        job TEXT NOT NULL, id TEXT NOT NULL, destination TEXT NOT NULL,
        bad BOOLEAN NOT NULL, reason TEXT NOT NULL, at BIGINT NOT NULL,
        PRIMARY KEY (job, id, destination)
     );
     CREATE TABLE claims (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until BIGINT NOT NULL);
     CREATE TABLE kv (
        namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (namespace, key)
     );
     CREATE TABLE users (
        name TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT NULL,
        created_at BIGINT NOT NULL
     );
     CREATE TABLE sessions (
        id_hash TEXT PRIMARY KEY, user_name TEXT NOT NULL, csrf TEXT NOT NULL,
        created_at BIGINT NOT NULL, last_seen_at BIGINT NOT NULL
     );
     CREATE INDEX sessions_by_user ON sessions (user_name);
     CREATE TABLE tokens (
        name TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, role TEXT NOT NULL,
        jobs TEXT NOT NULL, created_at BIGINT NOT NULL, expires_at BIGINT,
        last_used_at BIGINT, revoked_at BIGINT
     );
     CREATE TABLE audit (
        seq BIGINT PRIMARY KEY, at BIGINT NOT NULL, actor TEXT NOT NULL,
        action TEXT NOT NULL, target TEXT NOT NULL, address TEXT NOT NULL,
        result TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL
     );
     CREATE TABLE schedule_overrides (
        job TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at BIGINT NOT NULL
     );",
    // Several replicas: fire claims with leases, heartbeats, runs' replica and fire.
    "CREATE TABLE fire_claims (
        id BIGSERIAL PRIMARY KEY,
        job TEXT NOT NULL, kind TEXT NOT NULL, scheduled_for BIGINT NOT NULL,
        replica TEXT NOT NULL, attempt BIGINT NOT NULL, claimed_at BIGINT NOT NULL,
        until BIGINT NOT NULL, finished_at BIGINT,
        UNIQUE (job, kind, scheduled_for)
     );
     CREATE INDEX fire_claims_open ON fire_claims (until) WHERE finished_at IS NULL;
     CREATE TABLE replicas (
        id TEXT PRIMARY KEY, host TEXT NOT NULL, pid BIGINT NOT NULL,
        version TEXT NOT NULL, started_at BIGINT NOT NULL, last_heartbeat BIGINT NOT NULL,
        runs_in_progress BIGINT NOT NULL, config_fingerprint TEXT NOT NULL,
        stopped_at BIGINT
     );
     ALTER TABLE runs ADD COLUMN replica TEXT, ADD COLUMN scheduled_for BIGINT,
        ADD COLUMN claim BIGINT;
     CREATE INDEX runs_by_claim ON runs (claim) WHERE claim IS NOT NULL;",
];

pub enum Outcome {
    Current,
    Newer(i64),
}

/// Brings the schema up to date; `Newer` when the database was migrated by a
/// newer cairn. Every process opens the store (each scheduled run is one), so
/// a current schema costs one statement; only an older or missing one takes
/// the lock.
pub async fn migrate(client: &Client) -> Result<Outcome, tokio_postgres::Error> {
    let known = MIGRATIONS.len() as i64;
    if let Ok(row) = client
        .query_typed_one("SELECT coalesce(max(version), 0) FROM cairn_schema", &[])
        .await
    {
        let version: i64 = row.try_get(0)?;
        if version == known {
            return Ok(Outcome::Current);
        }
        if version > known {
            return Ok(Outcome::Newer(version));
        }
    }
    super::in_transaction(client, async {
        client
            .batch_execute(&format!(
                "SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
                 CREATE TABLE IF NOT EXISTS cairn_schema (version BIGINT NOT NULL)"
            ))
            .await?;
        let version: i64 = client
            .query_typed_one("SELECT coalesce(max(version), 0) FROM cairn_schema", &[])
            .await?
            .try_get(0)?;
        if version > known {
            return Ok(Outcome::Newer(version));
        }
        for (n, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            client.batch_execute(sql).await?;
            client
                .batch_execute(&format!(
                    "DELETE FROM cairn_schema; INSERT INTO cairn_schema (version) VALUES ({})",
                    n + 1
                ))
                .await?;
        }
        Ok(Outcome::Current)
    })
    .await
}
