//! Browser sessions kept on the server: the cookie carries a random id, the
//! store its SHA-256. A session ends at logout, after `idle` without a request,
//! `absolute` after login, and when its user is removed or changes password.

use std::time::Duration;

use jiff::Timestamp;

use super::limit::LoginLimiter;
use super::role::{Principal, Via};
use super::{audit, password, secret};
use crate::state::{Session, StateStore};

/// How long a session lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Without a request for this long, the session ends.
    pub idle: Duration,
    /// This long after login, the session ends whatever happens.
    pub absolute: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            idle: DEFAULT_IDLE,
            absolute: DEFAULT_ABSOLUTE,
        }
    }
}

pub const DEFAULT_IDLE: Duration = Duration::from_secs(30 * 60);
pub const DEFAULT_ABSOLUTE: Duration = Duration::from_secs(12 * 3600);

impl Lifetimes {
    /// `[daemon] session_idle` and `session_lifetime` of the config.
    pub fn of(config: &crate::config::Config) -> Lifetimes {
        Lifetimes {
            idle: config.daemon.session_idle,
            absolute: config.daemon.session_lifetime,
        }
    }
}

/// A session's last-seen time is written at most this often (not on every request).
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// A successful login.
#[derive(Debug, Clone)]
pub struct Login {
    /// The cookie's value: the session id. Shown to the browser only.
    pub cookie: String,
    /// The anti-CSRF token of the session (also in `principal`).
    pub csrf: String,
    pub principal: Principal,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The user does not exist or the password is wrong (deliberately not saying which).
    #[error("wrong user name or password")]
    Invalid,
    /// Too many failures for this user or from this address.
    #[error("too many failed logins: try again in {} s", retry_after.as_secs())]
    Limited { retry_after: Duration },
    #[error(transparent)]
    Store(#[from] crate::Error),
}

/// Checks `user`'s password and opens a session. Every attempt is audited
/// (`login` with result `ok`, `failed` or `locked`) and counts toward the
/// rate limit of the user and of `address`.
pub fn login(
    store: &dyn StateStore,
    limiter: &LoginLimiter,
    user: &str,
    password_text: &str,
    address: &str,
    now: Timestamp,
) -> Result<Login, LoginError> {
    let actor = format!("user:{}", printable(user));
    if let Err(retry_after) = limiter.check(user, address, now) {
        audit::record(store, now, &actor, "login", "", address, "locked")?;
        return Err(LoginError::Limited { retry_after });
    }
    let found = store.user(user)?;
    let ok = match &found {
        Some(found) => password::verify(password_text, &found.password_hash),
        None => {
            password::verify_nobody(password_text);
            false
        }
    };
    let Some(found) = found.filter(|_| ok) else {
        limiter.failed(user, address, now);
        audit::record(store, now, &actor, "login", "", address, "failed")?;
        return Err(LoginError::Invalid);
    };
    limiter.succeeded(user);
    let cookie = secret::random_secret();
    let csrf = secret::random_secret();
    store.create_session(&Session {
        id_hash: secret::sha256_hex(&cookie),
        user: found.name.clone(),
        csrf: csrf.clone(),
        created_at: now,
        last_seen_at: now,
    })?;
    audit::record(store, now, &actor, "login", "", address, "ok")?;
    Ok(Login {
        cookie,
        csrf: csrf.clone(),
        principal: Principal {
            name: found.name,
            role: found.role,
            via: Via::Session { csrf },
            jobs: None,
        },
    })
}

/// The signed-in user of a session cookie, or `None` when the session does not
/// exist, has ended, or outlived `lifetimes` (it is then ended in the store).
/// The role is the user's current one.
pub fn principal_from_session(
    store: &dyn StateStore,
    cookie: &str,
    now: Timestamp,
    lifetimes: Lifetimes,
) -> crate::Result<Option<Principal>> {
    if cookie.is_empty() || cookie.len() > 256 {
        return Ok(None);
    }
    let id_hash = secret::sha256_hex(cookie);
    let Some(session) = store.session(&id_hash)? else {
        return Ok(None);
    };
    if expired(&session, now, lifetimes) {
        store.end_session(&id_hash)?;
        return Ok(None);
    }
    let Some(user) = store.user(&session.user)? else {
        store.end_session(&id_hash)?;
        return Ok(None);
    };
    if now.duration_since(session.last_seen_at).unsigned_abs() >= TOUCH_EVERY {
        store.touch_session(&id_hash, now)?;
    }
    Ok(Some(Principal {
        name: user.name,
        role: user.role,
        via: Via::Session { csrf: session.csrf },
        jobs: None,
    }))
}

fn expired(session: &Session, now: Timestamp, lifetimes: Lifetimes) -> bool {
    let age = now.duration_since(session.created_at);
    let idle = now.duration_since(session.last_seen_at);
    age.is_negative()
        || age.unsigned_abs() >= lifetimes.absolute
        || idle.unsigned_abs() >= lifetimes.idle
}

/// Ends the session of `cookie` (audited as `logout` when there was one);
/// returns the user it belonged to.
pub fn logout(
    store: &dyn StateStore,
    cookie: &str,
    address: &str,
    now: Timestamp,
) -> crate::Result<Option<String>> {
    let id_hash = secret::sha256_hex(cookie);
    let Some(session) = store.session(&id_hash)? else {
        return Ok(None);
    };
    store.end_session(&id_hash)?;
    let actor = format!("user:{}", session.user);
    audit::record(store, now, &actor, "logout", "", address, "ok")?;
    Ok(Some(session.user))
}

/// Removes sessions that outlived `lifetimes` (the daemon calls this now and then).
pub fn end_stale(
    store: &dyn StateStore,
    now: Timestamp,
    lifetimes: Lifetimes,
) -> crate::Result<usize> {
    store.end_stale_sessions(now - lifetimes.absolute, now - lifetimes.idle)
}

/// A user name as typed into a login form, safe to put in the audit log.
fn printable(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control())
        .take(super::names::MAX_LEN)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::sqlite::SqliteState;
    use crate::state::{Role, User};

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn store_with_ann() -> (tempfile::TempDir, SqliteState) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteState::open(&dir.path().join("state.db")).unwrap();
        store
            .add_user(&User {
                name: "ann".into(),
                role: Role::Operator,
                password_hash: password::hash("correct horse battery").unwrap(),
                created_at: at(0),
            })
            .unwrap();
        (dir, store)
    }

    #[test]
    fn login_opens_a_session_stored_only_as_a_hash_and_logout_ends_it() {
        let (_dir, store) = store_with_ann();
        let limiter = LoginLimiter::default();
        let login = login(
            &store,
            &limiter,
            "ann",
            "correct horse battery",
            "10.0.0.1",
            at(0),
        )
        .unwrap();
        assert_eq!(login.principal.role, Role::Operator);
        assert_eq!(login.principal.actor(), "user:ann");
        assert_eq!(login.principal.csrf(), Some(login.csrf.as_str()));
        assert!(
            store.session(&login.cookie).unwrap().is_none(),
            "the id itself is not a key"
        );
        assert!(
            store
                .session(&secret::sha256_hex(&login.cookie))
                .unwrap()
                .is_some()
        );
        let lifetimes = Lifetimes::default();
        let found = principal_from_session(&store, &login.cookie, at(10), lifetimes).unwrap();
        assert_eq!(found, Some(login.principal.clone()));
        assert_eq!(
            logout(&store, &login.cookie, "10.0.0.1", at(20))
                .unwrap()
                .as_deref(),
            Some("ann")
        );
        assert_eq!(
            principal_from_session(&store, &login.cookie, at(21), lifetimes).unwrap(),
            None
        );
        let actions: Vec<_> = store
            .audit_after(0, 10)
            .unwrap()
            .into_iter()
            .map(|e| {
                (
                    e.entry.actor,
                    e.entry.action,
                    e.entry.result,
                    e.entry.address,
                )
            })
            .collect();
        assert_eq!(
            actions,
            [
                (
                    "user:ann".into(),
                    "login".into(),
                    "ok".into(),
                    "10.0.0.1".into()
                ),
                (
                    "user:ann".into(),
                    "logout".into(),
                    "ok".into(),
                    "10.0.0.1".into()
                ),
            ]
        );
    }

    #[test]
    fn wrong_passwords_and_unknown_users_fail_alike_are_audited_and_rate_limited() {
        let (_dir, store) = store_with_ann();
        let limiter = LoginLimiter::default();
        let unknown = login(
            &store,
            &limiter,
            "nobody",
            "correct horse battery",
            "a",
            at(0),
        );
        assert!(matches!(unknown, Err(LoginError::Invalid)));
        for i in 0..5 {
            let wrong = login(&store, &limiter, "ann", "wrong password!!", "b", at(i));
            assert!(matches!(wrong, Err(LoginError::Invalid)), "{i}");
        }
        // Locked now, even with the right password.
        match login(
            &store,
            &limiter,
            "ann",
            "correct horse battery",
            "c",
            at(10),
        ) {
            Err(LoginError::Limited { retry_after }) => {
                assert!(
                    retry_after > Duration::from_secs(14 * 60),
                    "{retry_after:?}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(
            login(
                &store,
                &limiter,
                "ann",
                "correct horse battery",
                "c",
                at(4 + 15 * 60)
            )
            .is_ok()
        );
        let results: Vec<String> = store
            .audit_after(0, 100)
            .unwrap()
            .into_iter()
            .map(|e| format!("{} {}", e.entry.actor, e.entry.result))
            .collect();
        assert_eq!(results[0], "user:nobody failed");
        assert_eq!(results[1..6], ["user:ann failed"; 5]);
        assert_eq!(results[6], "user:ann locked");
        assert_eq!(results[7], "user:ann ok");
        for entry in store.audit_after(0, 100).unwrap() {
            assert!(!format!("{entry:?}").contains("correct horse"));
        }
    }

    #[test]
    fn sessions_end_after_the_idle_and_the_absolute_lifetime() {
        let (_dir, store) = store_with_ann();
        let limiter = LoginLimiter::default();
        let lifetimes = Lifetimes {
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(2 * 3600),
        };
        // Idle: a request every 20 minutes keeps it; 30 minutes of silence ends it.
        let first = login(&store, &limiter, "ann", "correct horse battery", "", at(0)).unwrap();
        for minute in [20, 40, 60, 80, 100] {
            assert!(
                principal_from_session(&store, &first.cookie, at(minute * 60), lifetimes)
                    .unwrap()
                    .is_some(),
                "minute {minute}"
            );
        }
        // Absolute: two hours after login it ends although it was used.
        assert!(
            principal_from_session(&store, &first.cookie, at(120 * 60), lifetimes)
                .unwrap()
                .is_none()
        );
        let ended = store.session(&secret::sha256_hex(&first.cookie)).unwrap();
        assert!(ended.is_none(), "an expired session is removed");

        let second = login(&store, &limiter, "ann", "correct horse battery", "", at(0)).unwrap();
        assert!(
            principal_from_session(&store, &second.cookie, at(29 * 60), lifetimes)
                .unwrap()
                .is_some()
        );
        assert!(
            principal_from_session(&store, &second.cookie, at(59 * 60), lifetimes)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_password_change_or_removal_ends_sessions_and_role_changes_apply() {
        let (_dir, store) = store_with_ann();
        let limiter = LoginLimiter::default();
        let lifetimes = Lifetimes::default();
        let first = login(&store, &limiter, "ann", "correct horse battery", "", at(0)).unwrap();
        store
            .set_password("ann", &password::hash("another long password").unwrap())
            .unwrap();
        assert!(
            principal_from_session(&store, &first.cookie, at(1), lifetimes)
                .unwrap()
                .is_none()
        );
        let second = login(&store, &limiter, "ann", "another long password", "", at(2)).unwrap();
        store.remove_user("ann").unwrap();
        assert!(
            principal_from_session(&store, &second.cookie, at(3), lifetimes)
                .unwrap()
                .is_none()
        );
        assert!(
            principal_from_session(&store, "", at(3), lifetimes)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn end_stale_removes_old_sessions() {
        let (_dir, store) = store_with_ann();
        let limiter = LoginLimiter::default();
        let old = login(&store, &limiter, "ann", "correct horse battery", "", at(0)).unwrap();
        let fresh = login(
            &store,
            &limiter,
            "ann",
            "correct horse battery",
            "",
            at(3000),
        )
        .unwrap();
        assert_eq!(
            end_stale(&store, at(3600), Lifetimes::default()).unwrap(),
            1
        );
        assert!(
            store
                .session(&secret::sha256_hex(&old.cookie))
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .session(&secret::sha256_hex(&fresh.cookie))
                .unwrap()
                .is_some()
        );
    }
}
