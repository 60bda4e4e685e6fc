//! `cairn state copy`: an existing SQLite store's history into PostgreSQL,
//! table by table, a page of rows at a time (never the whole history in
//! memory). Run ids and audit sequence numbers and hashes are kept, so links
//! to runs and the audit chain stay valid. Sessions, claims, fire claims and
//! replica heartbeats are not copied: they belong to the processes of the old store.

use std::path::Path;

use rusqlite::types::ValueRef;

use super::{Param, PostgresState, in_transaction, typed};
use crate::{Error, Result};

/// Rows per page read from SQLite and written to PostgreSQL in one statement.
const PAGE: usize = 500;

/// A column and its type in PostgreSQL: `i` bigint, `t` text, `b` boolean.
struct Table {
    name: &'static str,
    /// SQLite column names, in order; `as` renames for PostgreSQL.
    columns: &'static [(&'static str, &'static str, char)],
}

const TABLES: &[Table] = &[
    Table {
        name: "runs",
        columns: &[
            ("id", "id", 'i'),
            ("job", "job", 't'),
            ("kind", "kind", 't'),
            ("trigger", "trigger", 't'),
            ("status", "status", 't'),
            ("started_at", "started_at", 'i'),
            ("finished_at", "finished_at", 'i'),
            ("bytes", "bytes", 'i'),
            ("artifact_id", "artifact_id", 't'),
            ("error", "error", 't'),
            ("details", "details", 't'),
            ("log", "log", 't'),
            ("host", "host", 't'),
            ("pid", "pid", 'i'),
            ("replica", "replica", 't'),
            ("scheduled_for", "scheduled_for", 'i'),
            ("claim", "claim", 'i'),
        ],
    },
    Table {
        name: "paused",
        columns: &[("job", "job", 't'), ("since", "since", 'i')],
    },
    Table {
        name: "schedule_marks",
        columns: &[("schedule", "schedule", 't'), ("at", "at", 'i')],
    },
    Table {
        name: "artifact_marks",
        columns: &[
            ("job", "job", 't'),
            ("id", "id", 't'),
            ("destination", "destination", 't'),
            ("bad", "bad", 'b'),
            ("reason", "reason", 't'),
            ("at", "at", 'i'),
        ],
    },
    Table {
        name: "kv",
        columns: &[
            ("namespace", "namespace", 't'),
            ("key", "key", 't'),
            ("value", "value", 't'),
            ("updated_at", "updated_at", 'i'),
        ],
    },
    Table {
        name: "users",
        columns: &[
            ("name", "name", 't'),
            ("role", "role", 't'),
            ("password_hash", "password_hash", 't'),
            ("created_at", "created_at", 'i'),
        ],
    },
    Table {
        name: "tokens",
        columns: &[
            ("name", "name", 't'),
            ("hash", "hash", 't'),
            ("role", "role", 't'),
            ("jobs", "jobs", 't'),
            ("created_at", "created_at", 'i'),
            ("expires_at", "expires_at", 'i'),
            ("last_used_at", "last_used_at", 'i'),
            ("revoked_at", "revoked_at", 'i'),
        ],
    },
    Table {
        name: "audit",
        columns: &[
            ("seq", "seq", 'i'),
            ("at", "at", 'i'),
            ("actor", "actor", 't'),
            ("action", "action", 't'),
            ("target", "target", 't'),
            ("address", "address", 't'),
            ("result", "result", 't'),
            ("prev_hash", "prev_hash", 't'),
            ("hash", "hash", 't'),
        ],
    },
    Table {
        name: "schedule_overrides",
        columns: &[
            ("job", "job", 't'),
            ("value", "value", 't'),
            ("updated_at", "updated_at", 'i'),
        ],
    },
];

/// The tables whose rows make a target "not empty".
const CONTENT: &str = "SELECT (SELECT count(*) FROM runs) + (SELECT count(*) FROM paused)
    + (SELECT count(*) FROM schedule_marks) + (SELECT count(*) FROM artifact_marks)
    + (SELECT count(*) FROM kv) + (SELECT count(*) FROM users) + (SELECT count(*) FROM tokens)
    + (SELECT count(*) FROM audit) + (SELECT count(*) FROM schedule_overrides)";

/// Rows copied per table.
pub type Copied = Vec<(&'static str, u64)>;

impl PostgresState {
    /// Copies the SQLite store at `source` into this (empty, unless `force`:
    /// then emptied first) store.
    pub fn copy_from_sqlite(&self, source: &Path, force: bool) -> Result<Copied> {
        // Opening it also brings an old file's schema up to date.
        drop(super::super::sqlite::SqliteState::open(source)?);
        let sqlite = rusqlite::Connection::open_with_flags(
            source,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .map_err(|e| {
            Error::Run(format!(
                "state store {}: cannot open: {e}",
                source.display()
            ))
        })?;
        let rows: i64 = self.call("cannot read the target", |c| async move {
            c.query_typed_one(CONTENT, &[]).await?.try_get(0)
        })?;
        if rows > 0 && !force {
            return Err(Error::Usage(format!(
                "{} is not empty ({rows} rows): nothing copied; pass --force to replace what it holds",
                self.location
            )));
        }
        if rows > 0 {
            let names: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
            let sql = format!("TRUNCATE {}", names.join(", "));
            self.call("cannot empty the target", move |c| async move {
                c.batch_execute(&sql).await
            })?;
        }
        let mut copied = Vec::new();
        for table in TABLES {
            copied.push((table.name, self.copy_table(&sqlite, source, table)?));
        }
        // New runs continue after the copied ids.
        self.call("cannot move the run id sequence", |c| async move {
            c.batch_execute(
                "SELECT setval(pg_get_serial_sequence('runs', 'id'), coalesce((SELECT max(id) FROM runs), 0) + 1, false)",
            )
            .await
        })?;
        Ok(copied)
    }

    fn copy_table(
        &self,
        sqlite: &rusqlite::Connection,
        source: &Path,
        table: &Table,
    ) -> Result<u64> {
        let read_error = |e: rusqlite::Error| {
            Error::Run(format!(
                "state store {}: cannot read {}: {e}",
                source.display(),
                table.name
            ))
        };
        let select = format!(
            "SELECT rowid, {} FROM {} WHERE rowid > ?1 ORDER BY rowid LIMIT {PAGE}",
            table
                .columns
                .iter()
                .map(|(c, _, _)| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", "),
            table.name
        );
        let mut statement = sqlite.prepare(&select).map_err(read_error)?;
        let mut after = 0i64;
        let mut total = 0u64;
        loop {
            let mut page: Vec<Param> = Vec::new();
            let mut count = 0usize;
            let mut rows = statement.query([after]).map_err(read_error)?;
            while let Some(row) = rows.next().map_err(read_error)? {
                after = row.get(0).map_err(read_error)?;
                for (n, (_, _, kind)) in table.columns.iter().enumerate() {
                    page.push(param(row.get_ref(n + 1).map_err(read_error)?, *kind));
                }
                count += 1;
            }
            if count == 0 {
                return Ok(total);
            }
            let width = table.columns.len();
            let values: Vec<String> = (0..count)
                .map(|r| {
                    let cells: Vec<String> =
                        (1..=width).map(|c| format!("${}", r * width + c)).collect();
                    format!("({})", cells.join(", "))
                })
                .collect();
            let insert = format!(
                "INSERT INTO {} ({}) VALUES {}",
                table.name,
                table
                    .columns
                    .iter()
                    .map(|(_, c, _)| *c)
                    .collect::<Vec<_>>()
                    .join(", "),
                values.join(", ")
            );
            self.call(
                &format!("cannot copy {}", table.name),
                move |c| async move {
                    in_transaction(&c, async { c.query_typed(&insert, &typed(&page)).await }).await
                },
            )?;
            total += count as u64;
        }
    }
}

fn param(value: ValueRef<'_>, kind: char) -> Param {
    let text = |v: ValueRef<'_>| match v {
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(super::text(&String::from_utf8_lossy(t))),
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(r) => Some(r.to_string()),
        ValueRef::Null => None,
    };
    let int = |v: ValueRef<'_>| match v {
        ValueRef::Integer(i) => Some(i),
        ValueRef::Real(r) => Some(r as i64),
        ValueRef::Text(t) => String::from_utf8_lossy(t).trim().parse().ok(),
        _ => None,
    };
    match kind {
        'i' => Param::OptInt(int(value)),
        'b' => Param::Bool(int(value).unwrap_or(0) != 0),
        _ => Param::OptText(text(value)),
    }
}
