//! `${VAR}` substitution from the environment, done while the TOML is deserialized
//! so that a missing variable is reported at the line and column where it is used,
//! and so that error messages quote the config text, never a substituted secret.
//!
//! Syntax: `${NAME}` is replaced by the variable's value, `${NAME:-fallback}` uses
//! `fallback` when the variable is unset or empty, and `$$` is a literal `$`.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer, de::Error as _};

/// Copies `text`, turning `$$` into `$` and each `${EXPR}` into what
/// `reference(EXPR)` gives; any other `$` stays.
fn scan(
    text: &str,
    mut reference: impl FnMut(&str) -> Result<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unterminated `${{` in {text:?}: add the closing `}}`"))?;
            out.push_str(&reference(&body[..end])?);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Substitutes every `${NAME}` in `text` using `lookup`.
pub fn substitute(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    scan(text, |expr| {
        let (name, fallback) = match expr.split_once(":-") {
            Some((name, fallback)) => (name, Some(fallback)),
            None => (expr, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`${{{expr}}}` is not a valid variable reference (use letters, digits and _)"
            ));
        }
        match (lookup(name).filter(|v| !v.is_empty()), fallback) {
            (Some(value), _) => Ok(value),
            (None, Some(fallback)) => Ok(fallback.to_string()),
            (None, None) => Err(format!(
                "environment variable `{name}` is not set (export it, or write `${{{name}:-default}}`)"
            )),
        }
    })
}

fn from_env(text: &str) -> Result<String, String> {
    substitute(text, |name| std::env::var(name).ok())
}

pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let raw = String::deserialize(d)?;
    from_env(&raw).map_err(D::Error::custom)
}

pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw = Option::<String>::deserialize(d)?;
    raw.map(|s| from_env(&s).map_err(D::Error::custom))
        .transpose()
}

pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let raw = Vec::<String>::deserialize(d)?;
    raw.iter()
        .map(|s| from_env(s).map_err(D::Error::custom))
        .collect()
}

pub fn opt_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let raw = Option::<Vec<String>>::deserialize(d)?;
    raw.map(|list| {
        list.iter()
            .map(|s| from_env(s).map_err(D::Error::custom))
            .collect()
    })
    .transpose()
}

/// Shell command strings (hooks): checked like any other string (a missing
/// variable is an error at load), but kept as written. At run time
/// [`for_shell`] turns one into the text given to `sh -c`, and the variables
/// it names are put into the child's environment, so the shell expands them:
/// a value is never parsed as shell code.
pub fn shell_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let raw = Vec::<String>::deserialize(d)?;
    for s in &raw {
        from_env(s).map_err(D::Error::custom)?;
    }
    Ok(raw)
}

/// A hook as `sh -c` gets it, plus the variables its `${NAME}`s refer to.
/// `${NAME}` and `${NAME:-fallback}` mean the same to POSIX sh as to cairn,
/// so they stay; cairn's `$$` (a literal `$`) becomes `$`.
pub fn for_shell(text: &str) -> (String, Vec<String>) {
    let mut names: Vec<String> = Vec::new();
    let shell = scan(text, |expr| {
        let name = expr.split(":-").next().unwrap_or_default();
        if !name.is_empty() && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
        Ok(format!("${{{expr}}}"))
    })
    // The config loader already refused an unterminated `${`; should one get
    // here, the shell sees the text as written.
    .unwrap_or_else(|_| text.replace("$$", "$"));
    (shell, names)
}

pub fn path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    string(d).map(PathBuf::from)
}

pub fn opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    opt_string(d).map(|p| p.map(PathBuf::from))
}

/// A duration such as `90s`, `30m`, `24h`, `7d`, `2w` or `1h30m`.
pub fn opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<std::time::Duration>, D::Error> {
    opt_string(d)?
        .map(|text| crate::time::parse_duration(&text).map_err(D::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::substitute;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/a".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_variables_and_keeps_the_rest() {
        assert_eq!(substitute("${HOME}/x", env).unwrap(), "/home/a/x");
        assert_eq!(substitute("a$b", env).unwrap(), "a$b");
        assert_eq!(substitute("cost $$5", env).unwrap(), "cost $5");
        assert_eq!(substitute("${NOPE:-/tmp}", env).unwrap(), "/tmp");
        assert_eq!(substitute("${EMPTY:-d}", env).unwrap(), "d");
    }

    #[test]
    fn hooks_keep_their_references_for_the_shell() {
        use super::for_shell;
        assert_eq!(
            for_shell("echo \"${TOKEN}\" ${DIR:-/tmp} $$HOME $${X} $1"),
            (
                "echo \"${TOKEN}\" ${DIR:-/tmp} $HOME ${X} $1".to_string(),
                vec!["TOKEN".to_string(), "DIR".to_string()]
            )
        );
    }

    #[test]
    fn unset_and_malformed_references_are_errors() {
        let err = substitute("${NOPE}", env).unwrap_err();
        assert!(err.contains("`NOPE` is not set"), "{err}");
        assert!(substitute("${HOME", env).is_err());
        assert!(substitute("${A B}", env).is_err());
    }
}
