//! API tokens: `cairn_…` secrets shown once; the store keeps their SHA-256.
//! A token has a role, may be limited to some jobs, may expire, records its
//! last use and can be revoked.

use std::time::Duration;

use jiff::Timestamp;

use super::role::{Principal, Via};
use super::{names, secret};
use crate::state::{ApiToken, Role, StateStore};
use crate::{Error, Result};

/// Tokens created without `--expires` expire after this.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(90 * 86_400);

/// `last_used_at` is written at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Reads `--expires`: a duration such as `90d`, `12h` or `2w`, or `never`.
pub fn parse_expiry(text: &str) -> std::result::Result<Option<Duration>, String> {
    if text.trim().eq_ignore_ascii_case("never") {
        return Ok(None);
    }
    let duration = crate::time::parse_duration(text)?;
    if duration < Duration::from_secs(60) {
        return Err(format!(
            "`{text}` is too short for a token's lifetime: use e.g. 1h, 90d or never"
        ));
    }
    Ok(Some(duration))
}

/// Creates the token `name` and returns it with its secret, which is not kept
/// anywhere: the caller shows it once.
pub fn create(
    store: &dyn StateStore,
    name: &str,
    role: Role,
    expires: Option<Duration>,
    jobs: Vec<String>,
    now: Timestamp,
) -> Result<(ApiToken, String)> {
    names::check("token", name)?;
    let expires_at = expires
        .map(|d| {
            jiff::SignedDuration::try_from(d)
                .ok()
                .and_then(|d| now.checked_add(d).ok())
                .ok_or_else(|| Error::Usage("the token's lifetime is too long".into()))
        })
        .transpose()?;
    let secret = secret::new_token();
    let token = ApiToken {
        name: name.to_string(),
        hash: secret::sha256_hex(&secret),
        role,
        jobs,
        created_at: now,
        expires_at,
        last_used_at: None,
        revoked_at: None,
    };
    if !store.add_token(&token)? {
        return Err(Error::Usage(format!(
            "a token named `{name}` exists already (revoked tokens keep their names): choose another name"
        )));
    }
    Ok((token, secret))
}

/// The principal of an `Authorization: Bearer` secret, or `None` when no live
/// token has it (unknown, expired or revoked). Records the use (at most once a minute).
pub fn principal_from_bearer(
    store: &dyn StateStore,
    secret_text: &str,
    now: Timestamp,
) -> Result<Option<Principal>> {
    if !secret_text.starts_with(secret::TOKEN_PREFIX) || secret_text.len() > 256 {
        return Ok(None);
    }
    let Some(token) = store.token_by_hash(&secret::sha256_hex(secret_text))? else {
        return Ok(None);
    };
    if !is_live(&token, now) {
        return Ok(None);
    }
    let stale = token
        .last_used_at
        .is_none_or(|at| now.duration_since(at).unsigned_abs() >= TOUCH_EVERY);
    if stale {
        store.touch_token(&token.name, now)?;
    }
    Ok(Some(Principal {
        name: token.name.clone(),
        role: token.role,
        via: Via::Token { name: token.name },
        jobs: (!token.jobs.is_empty()).then_some(token.jobs),
    }))
}

/// Not revoked and not expired at `now`.
pub fn is_live(token: &ApiToken, now: Timestamp) -> bool {
    token.revoked_at.is_none() && token.expires_at.is_none_or(|at| at > now)
}

/// `active`, `expired` or `revoked`, for listings.
pub fn state(token: &ApiToken, now: Timestamp) -> &'static str {
    if token.revoked_at.is_some() {
        "revoked"
    } else if !is_live(token, now) {
        "expired"
    } else {
        "active"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::sqlite::SqliteState;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn store() -> (tempfile::TempDir, SqliteState) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteState::open(&dir.path().join("state.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn a_token_works_until_it_expires_and_records_its_use() {
        let (_dir, store) = store();
        let (token, secret) = create(
            &store,
            "ci",
            Role::Operator,
            Some(Duration::from_secs(3600)),
            vec!["app".into()],
            at(0),
        )
        .unwrap();
        assert!(secret.starts_with("cairn_"));
        assert_eq!(token.hash, secret::sha256_hex(&secret));
        assert_eq!(token.expires_at, Some(at(3600)));
        let principal = principal_from_bearer(&store, &secret, at(10))
            .unwrap()
            .unwrap();
        assert_eq!(principal.actor(), "token:ci");
        assert_eq!(principal.role, Role::Operator);
        assert_eq!(principal.jobs, Some(vec!["app".to_string()]));
        let listed = &store.tokens().unwrap()[0];
        assert_eq!(listed.last_used_at, Some(at(10)));
        // Within a minute the use is not written again; after it, it is.
        principal_from_bearer(&store, &secret, at(30))
            .unwrap()
            .unwrap();
        assert_eq!(store.tokens().unwrap()[0].last_used_at, Some(at(10)));
        principal_from_bearer(&store, &secret, at(80))
            .unwrap()
            .unwrap();
        assert_eq!(store.tokens().unwrap()[0].last_used_at, Some(at(80)));
        // Expired.
        assert!(
            principal_from_bearer(&store, &secret, at(3600))
                .unwrap()
                .is_none()
        );
        assert_eq!(state(&store.tokens().unwrap()[0], at(3600)), "expired");
        // Wrong or malformed secrets.
        assert!(
            principal_from_bearer(&store, "cairn_nope", at(10))
                .unwrap()
                .is_none()
        );
        assert!(
            principal_from_bearer(&store, &secret[6..], at(10))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn revoked_tokens_fail_and_keep_their_name() {
        let (_dir, store) = store();
        let (_, secret) = create(&store, "ci", Role::Admin, None, vec![], at(0)).unwrap();
        let principal = principal_from_bearer(&store, &secret, at(1))
            .unwrap()
            .unwrap();
        assert_eq!(principal.jobs, None, "no --jobs: every job");
        assert!(store.revoke_token("ci", at(2)).unwrap());
        assert!(
            principal_from_bearer(&store, &secret, at(3))
                .unwrap()
                .is_none()
        );
        assert_eq!(state(&store.tokens().unwrap()[0], at(3)), "revoked");
        let again = create(&store, "ci", Role::Admin, None, vec![], at(4)).unwrap_err();
        assert!(again.to_string().contains("exists already"), "{again}");
        assert!(create(&store, "bad name", Role::Admin, None, vec![], at(4)).is_err());
    }

    #[test]
    fn expiry_durations() {
        assert_eq!(
            parse_expiry("90d").unwrap(),
            Some(Duration::from_secs(90 * 86_400))
        );
        assert_eq!(parse_expiry("never").unwrap(), None);
        assert!(parse_expiry("10s").unwrap_err().contains("too short"));
        assert!(parse_expiry("soon").is_err());
    }
}
