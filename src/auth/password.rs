//! Passwords: argon2id PHC strings, verified in constant time by argon2.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::{Error, Result};

/// Shorter passwords are refused.
pub const MIN_LENGTH: usize = 12;
/// Longer ones too: hashing megabytes on every login attempt is a denial of service.
pub const MAX_LENGTH: usize = 1024;

/// Why `password` may not be used, if it may not.
pub fn problem(password: &str) -> Option<String> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        Some(format!(
            "the password is {length} characters long: use at least {MIN_LENGTH}"
        ))
    } else if password.len() > MAX_LENGTH {
        Some(format!("the password is longer than {MAX_LENGTH} bytes"))
    } else {
        None
    }
}

/// The argon2id PHC string (`$argon2id$v=19$…`) of a new password, with a random salt.
pub fn hash(password: &str) -> Result<String> {
    if let Some(problem) = problem(password) {
        return Err(Error::Usage(problem));
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| Error::Run(format!("cannot hash the password: {e}")))
}

/// Whether `password` matches the PHC string `phc`. A malformed `phc` matches nothing.
pub fn verify(password: &str, phc: &str) -> bool {
    password.len() <= MAX_LENGTH
        && Argon2::default()
            .verify_password(password.as_bytes(), phc)
            .is_ok()
}

/// Spends the time of a verification when there is no user to verify against,
/// so that response times do not tell which user names exist.
pub fn verify_nobody(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let phc = DUMMY.get_or_init(|| {
        Argon2::default()
            .hash_password(b"no such user, no such password")
            .map(|h| h.to_string())
            .unwrap_or_default()
    });
    let _ = verify(password, phc);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let first = hash("correct horse battery").unwrap();
        let second = hash("correct horse battery").unwrap();
        assert!(first.starts_with("$argon2id$v=19$"), "{first}");
        assert_ne!(first, second, "a random salt each time");
        assert!(!first.contains("correct horse"));
        assert!(verify("correct horse battery", &first));
        assert!(verify("correct horse battery", &second));
        assert!(!verify("correct horse batterY", &first));
        assert!(!verify("correct horse battery", "not a phc string"));
    }

    #[test]
    fn short_and_huge_passwords_are_refused_with_a_reason() {
        let message = hash("short").unwrap_err().to_string();
        assert!(message.contains("at least 12"), "{message}");
        assert!(problem(&"x".repeat(MAX_LENGTH + 1)).is_some());
        assert!(problem("twelve chars").is_none());
    }
}
