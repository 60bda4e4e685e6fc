//! From `[state] url` and its options to a tokio-postgres config: the
//! password from `password_env`, the URL, `PGPASSWORD` or a `.pgpass` file
//! (in libpq's order of preference, `password_env` first), and the TLS mode.

use std::path::PathBuf;
use std::time::Duration;

use super::tls::{self, SslMode, Tls};
use crate::config::StatePostgres;

/// The URL as messages show it: no password.
pub fn location(url: &str) -> String {
    crate::redact::display_url(url)
}

pub fn config(options: &StatePostgres) -> Result<(tokio_postgres::Config, Tls), String> {
    let mut url =
        url::Url::parse(&options.url).map_err(|e| format!("`{}`: {e}", location(&options.url)))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "`{}` is not a postgres:// URL",
            location(&options.url)
        ));
    }
    // sslmode and sslrootcert may be in the URL too; the config keys win.
    let mut sslmode = None;
    let mut sslrootcert = None;
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter_map(|(k, v)| match k.as_ref() {
            "sslmode" => {
                sslmode = Some(v.into_owned());
                None
            }
            "sslrootcert" => {
                sslrootcert = Some(PathBuf::from(v.as_ref()));
                None
            }
            _ => Some((k.into_owned(), v.into_owned())),
        })
        .collect();
    url.set_query(None);
    if !kept.is_empty() {
        url.query_pairs_mut().extend_pairs(kept);
    }
    let mut config: tokio_postgres::Config = url
        .as_str()
        .parse()
        .map_err(|e: tokio_postgres::Error| format!("`{}`: {e}", location(&options.url)))?;
    let mode: SslMode = options
        .sslmode
        .clone()
        .or(sslmode)
        .unwrap_or_else(|| "prefer".into())
        .parse()?;
    let root = options.sslrootcert.clone().or(sslrootcert);
    let (tls, pg_mode) = tls::connector(mode, root.as_deref())?;
    config.ssl_mode(pg_mode);
    if let Some(password) = password(options, &config)? {
        crate::redact::register(&password);
        config.password(password);
    }
    config
        .connect_timeout(super::worker::CONNECT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .tcp_user_timeout(super::worker::CALL_TIMEOUT)
        .application_name("cairn");
    Ok((config, tls))
}

fn password(
    options: &StatePostgres,
    config: &tokio_postgres::Config,
) -> Result<Option<String>, String> {
    if let Some(var) = &options.password_env {
        return match std::env::var(var) {
            Ok(value) if !value.is_empty() => Ok(Some(value)),
            _ => Err(format!(
                "[state] password_env names `{var}`, which is not set"
            )),
        };
    }
    if config.get_password().is_some() {
        return Ok(None);
    }
    if let Ok(value) = std::env::var("PGPASSWORD")
        && !value.is_empty()
    {
        return Ok(Some(value));
    }
    Ok(pgpass(config))
}

/// The first matching line of `PGPASSFILE` or `~/.pgpass`:
/// `host:port:database:user:password`, `*` matching anything.
fn pgpass(config: &tokio_postgres::Config) -> Option<String> {
    let path = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from(std::env::var_os("HOME")?).join(".pgpass")))?;
    let text = std::fs::read_to_string(path).ok()?;
    let host = match config.get_hosts().first()? {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap_or_default().to_string();
    let db = config
        .get_dbname()
        .map(str::to_string)
        .unwrap_or_else(|| user.clone());
    let wanted = [host, port, db, user];
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .find_map(|line| {
            let fields = split_pgpass(line);
            if fields.len() != 5 {
                return None;
            }
            let matches = fields[..4]
                .iter()
                .zip(&wanted)
                .all(|(field, want)| field == "*" || field == want);
            matches.then(|| fields[4].clone())
        })
}

/// Splits on unescaped `:`; `\:` and `\\` are a literal colon and backslash.
fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next()
                    && let Some(field) = fields.last_mut()
                {
                    field.push(next);
                }
            }
            ':' => fields.push(String::new()),
            c => {
                if let Some(field) = fields.last_mut() {
                    field.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_lines_split_on_unescaped_colons() {
        assert_eq!(
            split_pgpass(r"db:5432:*:cairn:pa\:ss\\word"),
            vec!["db", "5432", "*", "cairn", r"pa:ss\word"]
        );
    }

    #[test]
    fn location_hides_the_password() {
        assert_eq!(
            location("postgres://cairn:hunter22@db:5432/cairn"),
            "postgres://cairn@db:5432/cairn"
        );
    }
}
