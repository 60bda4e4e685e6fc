//! The secrets this process knows, and the one place that hides them.
//!
//! The config loader registers every secret it meets (keys, tokens, passwords,
//! webhook URLs and headers, URL passwords, the values of `*_env` variables);
//! code that reads a secret later (key files, passphrase files) registers it
//! there. Everything that leaves the process as text — stderr log lines (a
//! dependency's debug line included), run logs and errors in the state store,
//! error messages — goes through [`redact`]. A process-global registry is what
//! makes that possible for lines written by dependencies that know nothing of
//! cairn's config.

use std::sync::{OnceLock, RwLock};

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Shorter values are not treated as secrets: masking them would garble
/// ordinary text, and they protect nothing.
const MIN_LEN: usize = 4;

fn registry() -> &'static RwLock<Vec<String>> {
    static SECRETS: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(Default::default)
}

/// Adds `secret` (and the forms in which it shows up escaped: JSON / Rust
/// debug strings, percent-encoding) to the registry. URLs also register their
/// password and, for http(s), their path and query (webhook tokens live there).
pub fn register(secret: &str) {
    let secret = secret.trim();
    if secret.len() < MIN_LEN {
        return;
    }
    // A database URL (`drill.url`) is secret for its password only: shown
    // without it, it says which server is meant.
    if let Ok(url) = url::Url::parse(secret)
        && !matches!(url.scheme(), "http" | "https")
        && url.has_host()
    {
        url_secrets(secret).iter().for_each(|s| register(s));
        return;
    }
    let mut forms = vec![secret.to_string()];
    let debug = format!("{secret:?}");
    forms.push(debug[1..debug.len() - 1].to_string());
    let json = serde_json::to_string(secret).unwrap_or_default();
    if json.len() >= 2 {
        forms.push(json[1..json.len() - 1].to_string());
    }
    forms.push(url::form_urlencoded::byte_serialize(secret.as_bytes()).collect());
    forms.extend(url_secrets(secret));
    let mut list = registry().write().unwrap_or_else(|p| p.into_inner());
    for form in forms {
        if form.len() >= MIN_LEN && !list.contains(&form) {
            list.push(form);
        }
    }
    // Longest first, so that a secret containing another is masked whole.
    list.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// Registers the password parts of a URL that is not itself a secret (a
/// database URL, an endpoint).
pub fn register_url(url: &str) {
    for part in url_secrets(url) {
        register(&part);
    }
}

/// The parts of `url` that are secret: the userinfo password, libpq's
/// `password`/`sslpassword` parameters, and for http(s) URLs the path and query
/// when they are long enough to hold a token.
fn url_secrets(text: &str) -> Vec<String> {
    let Ok(url) = url::Url::parse(text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(password) = url.password() {
        out.push(password.to_string());
        out.push(url_decode(password));
    }
    for (key, value) in url.query_pairs() {
        if is_password_parameter(&key) {
            out.push(value.into_owned());
        }
    }
    if matches!(url.scheme(), "http" | "https") {
        let path = url.path();
        if path.len() >= 8 {
            out.push(path.to_string());
        }
        if let Some(query) = url.query().filter(|q| q.len() >= 8) {
            out.push(query.to_string());
        }
        for (_, value) in url.query_pairs() {
            if value.len() >= 8 {
                out.push(value.into_owned());
            }
        }
    }
    out
}

/// libpq's connection parameters that carry a password.
pub fn is_password_parameter(key: &str) -> bool {
    key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("sslpassword")
}

/// Replaces every secret in `text` with `***`: the caller's and every secret
/// the process knows.
pub fn redact_with(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 3) {
        out = out.replace(secret.as_str(), "***");
    }
    redact(&out)
}

/// Decodes a percent-encoded URL component (`%40` → `@`; `+` stays `+`).
pub fn url_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// `text` with every registered secret masked, and the password of any URL
/// in it removed (also of URLs whose password nobody registered).
pub fn redact(text: &str) -> String {
    let mut out = scrub_url_passwords(text);
    let list = registry().read().unwrap_or_else(|p| p.into_inner());
    for secret in list.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), MASK);
        }
    }
    out
}

/// `scheme://user:password@host…` → `scheme://user:***@host…` wherever it
/// appears in free text. The userinfo is what comes before the last `@` of
/// the URL's authority-ish run of characters.
fn scrub_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        // The authority ends at whitespace, a quote or the end: passwords may
        // hold `/`, `?` and `#`, so the last `@` before that ends the userinfo.
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(tail.len());
        let run = &tail[..end];
        match run.rfind('@') {
            Some(at) if run[..at].contains(':') => {
                let user = run[..at].split(':').next().unwrap_or_default();
                out.push_str(user);
                out.push(':');
                out.push_str(MASK);
                rest = &tail[at..];
            }
            _ => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// A URL as cairn shows it: never a password, neither in the userinfo nor in
/// libpq's `password`/`sslpassword` query parameters. The user name stays
/// (it says which account is used). Text that is not a URL is returned as is.
pub fn display_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
    let (rest, trailer) = rest.split_at(end);
    let rest = match rest.rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            if user.is_empty() {
                rest[at + 1..].to_string()
            } else {
                format!("{user}@{}", &rest[at + 1..])
            }
        }
        None => rest.to_string(),
    };
    let rest = match rest.split_once('?') {
        Some((base, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, format!("#{f}")),
                None => (query, String::new()),
            };
            let kept: Vec<&str> = query
                .split('&')
                .filter(|p| !is_password_parameter(p.split('=').next().unwrap_or_default()))
                .collect();
            if kept.is_empty() {
                format!("{base}{fragment}")
            } else {
                format!("{base}?{}{fragment}", kept.join("&"))
            }
        }
        None => rest,
    };
    format!("{scheme}://{rest}{trailer}")
}

/// A writer that masks secrets in what passes through it. Each `write` is
/// redacted on its own: the log formatter writes one whole line per call.
pub struct RedactingWriter<W: std::io::Write>(pub W);

impl<W: std::io::Write> std::io::Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_masked_in_every_form() {
        register("unit-s3cr\"et-value");
        assert_eq!(redact("key=unit-s3cr\"et-value!"), "key=***!");
        assert_eq!(
            redact(r#"StaticCredentialProvider { secret_access_key: "unit-s3cr\"et-value" }"#),
            r#"StaticCredentialProvider { secret_access_key: "***" }"#
        );
        assert_eq!(redact("short abc stays"), "short abc stays");
    }

    #[test]
    fn webhook_tokens_are_masked_even_when_only_the_path_is_echoed() {
        register("https://hooks.example/services/T0KEN-unit-test?sig=abcdefgh123");
        let text = redact("404 no route for /services/T0KEN-unit-test");
        assert_eq!(text, "404 no route for ***");
        assert!(!redact("sig abcdefgh123").contains("abcdefgh123"));
    }

    #[test]
    fn url_passwords_are_removed_from_free_text_and_from_urls_shown() {
        assert_eq!(
            redact("GET http://ak:unregistered-pw@127.0.0.1:9/b failed"),
            "GET http://ak:***@127.0.0.1:9/b failed"
        );
        assert_eq!(
            display_url("postgres://app:s3cret@db:5432/shop?sslmode=require&password=x"),
            "postgres://app@db:5432/shop?sslmode=require"
        );
        assert_eq!(
            display_url("postgres://app@db/shop?sslpassword=k&password=x"),
            "postgres://app@db/shop"
        );
        assert_eq!(
            display_url("http://user:pa/ss@host:8333"),
            "http://user@host:8333"
        );
        assert_eq!(display_url("http://:pw@host/"), "http://host/");
        assert_eq!(display_url("mysql://root@h/db"), "mysql://root@h/db");
    }

    #[test]
    fn database_urls_are_secret_for_their_password_only() {
        register("postgres://drill:unit-drill-pw@scratch:5432/postgres");
        assert_eq!(
            redact("scratch postgres://drill@scratch:5432/postgres, pw unit-drill-pw"),
            "scratch postgres://drill@scratch:5432/postgres, pw ***"
        );
    }

    #[test]
    fn url_parts_register_their_passwords() {
        register_url("postgres://app:unit%40pw-1@db/shop?sslpassword=unit-keypass");
        let text = redact("pw unit@pw-1 and unit%40pw-1 and unit-keypass");
        assert_eq!(text, "pw *** and *** and ***");
    }
}
