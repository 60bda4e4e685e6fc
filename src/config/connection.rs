//! Database connections as the config names them (`postgres://`, `mysql://`
//! URLs): parsed and checked here, where the config is validated; what runs the
//! tools against them is in `source::postgres` and `source::mysql`.

use crate::redact::url_decode;
use crate::{Error, Result};

/// A connection: URL without password, plus the password if known.
#[derive(Clone)]
pub struct PgConn {
    pub(crate) url: url::Url,
    pub(crate) password: Option<String>,
    /// The client key's passphrase (`?sslpassword=`), which libpq reads from
    /// no environment variable: it reaches the tools in a 0600 service file.
    pub(crate) ssl_password: Option<String>,
}

impl PgConn {
    pub fn parse(url: &str, password: Option<String>) -> Result<Self> {
        crate::redact::register_url(url);
        let mut parsed = url::Url::parse(url).map_err(|e| {
            Error::Usage(format!(
                "`{}` is not a PostgreSQL URL: {e}",
                crate::redact::display_url(url)
            ))
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(Error::Usage(format!(
                "`{}` is not a postgres:// URL",
                crate::redact::display_url(url)
            )));
        }
        let in_url = parsed.password().map(url_decode);
        let _ = parsed.set_password(None);
        let (in_query, ssl_password) = take_password_parameters(&mut parsed);
        Ok(PgConn {
            url: parsed,
            password: in_url.or(in_query).or(password),
            ssl_password,
        })
    }

    pub fn database(&self) -> String {
        url_decode(self.url.path().trim_start_matches('/'))
    }

    /// The same server, another database.
    pub fn with_database(&self, name: &str) -> PgConn {
        let mut other = self.clone();
        other.url.set_path(&format!("/{name}"));
        other
    }

    /// The URL for messages: never a password.
    pub fn display(&self) -> String {
        self.url.to_string()
    }
}

/// Removes libpq's `password` and `sslpassword` query parameters from `url`
/// (they would be shown and passed on command lines) and returns them.
fn take_password_parameters(url: &mut url::Url) -> (Option<String>, Option<String>) {
    let (mut password, mut ssl_password) = (None, None);
    let mut kept = Vec::new();
    for (key, value) in url.query_pairs() {
        if key.eq_ignore_ascii_case("password") {
            password = Some(value.into_owned());
        } else if key.eq_ignore_ascii_case("sslpassword") {
            ssl_password = Some(value.into_owned());
        } else {
            kept.push((key.into_owned(), value.into_owned()));
        }
    }
    if password.is_some() || ssl_password.is_some() {
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
    }
    (password, ssl_password)
}

#[derive(Clone)]
pub struct MyConn {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
    pub(crate) display: String,
}

impl MyConn {
    pub fn parse(url: &str, password: Option<String>) -> Result<Self> {
        crate::redact::register_url(url);
        let parsed = url::Url::parse(url).map_err(|e| {
            Error::Usage(format!(
                "`{}` is not a MySQL URL: {e}",
                crate::redact::display_url(url)
            ))
        })?;
        if !matches!(parsed.scheme(), "mysql" | "mariadb") {
            return Err(Error::Usage(format!(
                "`{}` is not a mysql:// URL",
                crate::redact::display_url(url)
            )));
        }
        Ok(MyConn {
            host: parsed.host_str().unwrap_or("127.0.0.1").to_string(),
            port: parsed.port().unwrap_or(3306),
            user: url_decode(parsed.username()),
            password: parsed.password().map(url_decode).or(password),
            database: url_decode(parsed.path().trim_start_matches('/')),
            display: crate::redact::display_url(url),
        })
    }

    pub fn display(&self) -> String {
        self.display.clone()
    }

    pub fn with_database(&self, name: &str) -> MyConn {
        let mut other = self.clone();
        other.database = name.to_string();
        other.display = match self.display.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => self.display.clone(),
        };
        other
    }
}
