//! Queries that must not change what they read: health checks (`sql`) and
//! validation rules. Each is one statement (a `;` that would start another is
//! refused before anything connects), runs in a read-only transaction
//! (PostgreSQL `BEGIN READ ONLY`, MySQL `START TRANSACTION READ ONLY`, SQLite
//! opened with `PRAGMA query_only`), and its callers bound the rows it returns.

use crate::{Error, Result};

/// Whose lexical rules decide where strings, identifiers and comments end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    Mysql,
}

/// `sql` without trailing `;`s and trailing comments, if it is one statement.
///
/// The scan is conservative: backslashes never escape (a server that reads
/// one as an escape sees a longer string, so the scan can only over-refuse),
/// and block comments do not nest. MySQL's executable comments (`/*! … */`)
/// are refused, since the server runs what they hold.
pub fn single_statement(sql: &str, dialect: Dialect) -> Result<&str> {
    let bytes = sql.as_bytes();
    let mut i = 0;
    let mut end = None;
    let second = || {
        refused("it holds more than one statement: give one query, without `;` between statements")
    };
    while i < bytes.len() {
        let rest = &sql[i..];
        let c = bytes[i];
        let comment = rest.starts_with("/*") || is_line_comment(rest, dialect);
        if end.is_some() && !comment && c != b';' && !c.is_ascii_whitespace() {
            return Err(second());
        }
        if let Some(close) = closing_quote(c, dialect) {
            i = skip_quoted(bytes, i, close)?;
            continue;
        }
        if rest.starts_with("/*") {
            if dialect == Dialect::Mysql && (rest.starts_with("/*!") || rest.starts_with("/*M!")) {
                return Err(refused("it holds a MySQL executable comment (`/*! … */`)"));
            }
            i += rest.find("*/").map_or(rest.len(), |e| e + 2);
            continue;
        }
        if is_line_comment(rest, dialect) {
            i += rest.find('\n').map_or(rest.len(), |e| e + 1);
            continue;
        }
        if dialect == Dialect::Postgres
            && c == b'$'
            && let Some(tag) = dollar_tag(sql, i)
        {
            let body = i + tag.len();
            i = sql[body..]
                .find(tag)
                .map(|e| body + e + tag.len())
                .ok_or_else(|| refused("a dollar-quoted string is not closed"))?;
            continue;
        }
        if c == b';' {
            end.get_or_insert(i);
        }
        i += 1;
    }
    Ok(sql[..end.unwrap_or(sql.len())].trim_end())
}

fn refused(why: &str) -> Error {
    Error::Usage(format!(
        "the query is refused: {why} (checks and validation rules only read)"
    ))
}

fn closing_quote(c: u8, dialect: Dialect) -> Option<u8> {
    match (c, dialect) {
        (b'\'', _) | (b'"', _) => Some(c),
        (b'`', Dialect::Mysql | Dialect::Sqlite) => Some(c),
        (b'[', Dialect::Sqlite) => Some(b']'),
        _ => None,
    }
}

/// The index after the quoted run starting at `start`; a doubled closing
/// quote stays inside.
fn skip_quoted(bytes: &[u8], start: usize, close: u8) -> Result<usize> {
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == close {
            if close != b']' && bytes.get(i + 1) == Some(&close) {
                i += 2;
                continue;
            }
            return Ok(i + 1);
        }
        i += 1;
    }
    Err(refused("a quoted string or name is not closed"))
}

/// `--` comments; MySQL needs a space (or control character) after them,
/// else `--x` is two minus signs, and also knows `#` comments.
fn is_line_comment(rest: &str, dialect: Dialect) -> bool {
    if let Some(after) = rest.strip_prefix("--") {
        return dialect != Dialect::Mysql
            || after.is_empty()
            || after.starts_with(|c: char| c.is_ascii_whitespace() || c.is_ascii_control());
    }
    dialect == Dialect::Mysql && rest.starts_with('#')
}

/// `$tag$` (or `$$`) opening a PostgreSQL dollar-quoted string at `i`; a `$`
/// inside an identifier or a parameter (`$1`) opens nothing.
fn dollar_tag(sql: &str, i: usize) -> Option<&str> {
    let before = sql[..i].chars().next_back();
    if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
        return None;
    }
    let rest = &sql[i + 1..];
    let len = rest.find('$')?;
    let tag = &rest[..len];
    let valid = tag.chars().all(|c| c.is_alphanumeric() || c == '_')
        && !tag.starts_with(|c: char| c.is_ascii_digit());
    valid.then(|| &sql[i..i + len + 2])
}

/// A SQLite connection that cannot write: opened read-only when the file
/// allows nothing else, else read-write (so WAL databases open without a
/// `-shm`) with `PRAGMA query_only`, which refuses every change.
pub fn open_sqlite(path: &std::path::Path) -> Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    if !path.is_file() {
        return Err(Error::Run(format!(
            "SQLite database {} does not exist (check source.path)",
            path.display()
        )));
    }
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .or_else(|_| {
        rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
    })
    .map_err(|e| {
        Error::Run(format!(
            "cannot open SQLite database {}: {e}",
            path.display()
        ))
    })?;
    conn.pragma_update(None, "query_only", true)
        .map_err(|e| Error::Run(format!("cannot make {} read-only: {e}", path.display())))?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::Dialect::{Mysql, Postgres, Sqlite};
    use super::*;

    #[test]
    fn one_statement_passes_with_its_trailing_semicolon_and_comment() {
        for dialect in [Sqlite, Postgres, Mysql] {
            assert_eq!(
                single_statement("SELECT 1 ;  -- done\n", dialect).unwrap(),
                "SELECT 1"
            );
            assert_eq!(
                single_statement("SELECT ';' AS \"a;b\" FROM t", dialect).unwrap(),
                "SELECT ';' AS \"a;b\" FROM t"
            );
            assert_eq!(
                single_statement("SELECT 1 /* ; */", dialect).unwrap(),
                "SELECT 1 /* ; */"
            );
        }
        assert!(single_statement("SELECT $x$;$x$, a$b$", Postgres).is_ok());
        assert!(single_statement("SELECT `a;b` FROM t # ;", Mysql).is_ok());
    }

    #[test]
    fn a_second_statement_is_refused_however_it_hides() {
        let attempts: &[(&str, &[Dialect])] = &[
            ("SELECT 1; DELETE FROM t", &[Sqlite, Postgres, Mysql]),
            (
                "SELECT 1) q; DELETE FROM t; SELECT (1",
                &[Sqlite, Postgres, Mysql],
            ),
            // MySQL reads `\'` as an escaped quote; PostgreSQL ends the string there.
            (r"SELECT 'a\'; DELETE FROM t; SELECT '", &[Postgres, Mysql]),
            // Not a comment in MySQL: two minus signs.
            ("SELECT 1 --x; DELETE FROM t", &[Mysql]),
            ("SELECT 1 /*! ; DELETE FROM t */", &[Mysql]),
            // `$$` is an identifier in MySQL, not a quote.
            ("SELECT 1 $$; DELETE FROM t; $$", &[Mysql]),
            ("SELECT 1 AS a$b$; DELETE FROM t; SELECT $b$", &[Postgres]),
            ("SELECT 'open", &[Sqlite, Postgres, Mysql]),
            ("SELECT 1; 'x'", &[Sqlite, Postgres, Mysql]),
        ];
        for (sql, dialects) in attempts {
            for dialect in *dialects {
                let err = single_statement(sql, *dialect).unwrap_err().to_string();
                assert!(err.contains("refused"), "{dialect:?} {sql}: {err}");
            }
        }
    }
}
