//! The names users and tokens may have: they appear in the audit log, in
//! `user:NAME` actors and in URLs, so a small safe character set.

use crate::{Error, Result};

pub const MAX_LEN: usize = 64;

/// Checks a user or token name (`what` is "user" or "token", for the message).
pub fn check(what: &str, name: &str) -> Result<()> {
    let ok = name.len() <= MAX_LEN
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        let shown: String = name
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_LEN)
            .collect();
        Err(Error::Usage(format!(
            "`{shown}` cannot name a {what}: use at most {MAX_LEN} letters, digits, `_`, `-`, `.` and `@`, starting with a letter or digit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_names_only() {
        for good in ["ann", "ci-deploy", "a.b_c@example.org", "9"] {
            assert!(check("user", good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "a b", "a/b", "ann\n", "x;rm", &"a".repeat(65)] {
            assert!(check("user", bad).is_err(), "{bad:?}");
        }
        let message = check("token", "a b").unwrap_err().to_string();
        assert!(message.contains("cannot name a token"), "{message}");
    }
}
