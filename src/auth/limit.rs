//! The login rate limit: failures per user name and per client address in a
//! sliding window; too many lock that key for a while. In memory (a restart
//! forgets it) and bounded in size; the clock is the caller's `now`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

/// How many failures lock, within which window, for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failures of one user name (from anywhere) that lock it.
    pub per_user: usize,
    /// Failures from one address (for any names) that lock it.
    pub per_address: usize,
    pub window: Duration,
    pub lockout: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            per_user: 5,
            per_address: 20,
            window: Duration::from_secs(15 * 60),
            lockout: Duration::from_secs(15 * 60),
        }
    }
}

/// Keys kept at most; beyond it the stalest are forgotten (a flood of
/// invented names must not exhaust memory).
const MAX_KEYS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Address(String),
}

#[derive(Debug, Default)]
struct Failures {
    at: VecDeque<Timestamp>,
    locked_until: Option<Timestamp>,
}

pub struct LoginLimiter {
    limits: LoginLimits,
    keys: Mutex<HashMap<Key, Failures>>,
}

impl LoginLimiter {
    pub fn new(limits: LoginLimits) -> Self {
        LoginLimiter {
            limits,
            keys: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> LoginLimits {
        self.limits
    }

    /// `Err(retry_after)` while the user or the address is locked.
    pub fn check(&self, user: &str, address: &str, now: Timestamp) -> Result<(), Duration> {
        let keys = self.lock();
        let wait = Self::keys_of(user, address)
            .filter_map(|key| keys.get(&key)?.locked_until)
            .filter(|until| *until > now)
            .max();
        match wait {
            Some(until) => Err(until
                .duration_since(now)
                .unsigned_abs()
                .max(Duration::from_secs(1))),
            None => Ok(()),
        }
    }

    /// Counts a failed login of `user` from `address`.
    pub fn failed(&self, user: &str, address: &str, now: Timestamp) {
        let mut keys = self.lock();
        if keys.len() >= MAX_KEYS {
            self.forget_stale(&mut keys, now);
        }
        for key in Self::keys_of(user, address) {
            let limit = match key {
                Key::User(_) => self.limits.per_user,
                Key::Address(_) => self.limits.per_address,
            };
            let failures = keys.entry(key).or_default();
            let window_start = now - self.limits.window;
            while failures.at.front().is_some_and(|at| *at <= window_start) {
                failures.at.pop_front();
            }
            failures.at.push_back(now);
            if failures.at.len() >= limit {
                failures.locked_until = Some(now + self.limits.lockout);
                failures.at.clear();
            }
        }
    }

    /// A successful login forgets the user's failures (not the address's:
    /// one known account must not reset an address that guesses others).
    pub fn succeeded(&self, user: &str) {
        self.lock().remove(&Key::User(user.to_string()));
    }

    fn keys_of(user: &str, address: &str) -> impl Iterator<Item = Key> {
        let user = Some(Key::User(user.to_string()));
        let address = (!address.is_empty()).then(|| Key::Address(address.to_string()));
        user.into_iter().chain(address)
    }

    fn forget_stale(&self, keys: &mut HashMap<Key, Failures>, now: Timestamp) {
        let window_start = now - self.limits.window;
        keys.retain(|_, f| {
            f.locked_until.is_some_and(|until| until > now)
                || f.at.back().is_some_and(|at| *at > window_start)
        });
        // Still full: drop the keys whose last failure is oldest.
        if keys.len() >= MAX_KEYS {
            let mut newest: Vec<(Key, Timestamp)> = keys
                .iter()
                .map(|(k, f)| {
                    let last = f.at.back().copied().or(f.locked_until).unwrap_or(now);
                    (k.clone(), last)
                })
                .collect();
            newest.sort_by_key(|(_, at)| *at);
            for (key, _) in newest.into_iter().take(MAX_KEYS / 10) {
                keys.remove(&key);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Failures>> {
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter::new(LoginLimits::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn five_failures_in_the_window_lock_the_user_for_the_lockout() {
        let limiter = LoginLimiter::default();
        for i in 0..4 {
            limiter.failed("ann", "10.0.0.1", at(i * 60));
            assert!(limiter.check("ann", "10.0.0.1", at(i * 60)).is_ok());
        }
        limiter.failed("ann", "10.0.0.2", at(240));
        // Locked from any address, with the time left.
        let wait = limiter.check("ann", "10.0.0.9", at(300)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(15 * 60 - 60));
        // Other users from the same addresses are not locked.
        assert!(limiter.check("bob", "10.0.0.1", at(300)).is_ok());
        // The lock ends after 15 minutes.
        assert!(
            limiter
                .check("ann", "10.0.0.1", at(240 + 15 * 60 - 1))
                .is_err()
        );
        assert!(limiter.check("ann", "10.0.0.1", at(240 + 15 * 60)).is_ok());
    }

    #[test]
    fn the_window_slides() {
        let limiter = LoginLimiter::default();
        // Four failures, then a pause longer than the window: they no longer count.
        for i in 0..4 {
            limiter.failed("ann", "", at(i));
        }
        limiter.failed("ann", "", at(3 + 15 * 60 + 1));
        assert!(limiter.check("ann", "", at(3 + 15 * 60 + 1)).is_ok());
        // Failures spread over less than the window do.
        let limiter = LoginLimiter::default();
        for i in 0..5 {
            limiter.failed("ann", "", at(i * 200));
        }
        assert!(limiter.check("ann", "", at(800)).is_err());
    }

    #[test]
    fn an_address_guessing_many_names_is_locked_and_success_clears_only_the_user() {
        let limiter = LoginLimiter::default();
        for i in 0..20 {
            limiter.failed(&format!("user{i}"), "10.0.0.1", at(i));
        }
        assert!(limiter.check("someone-else", "10.0.0.1", at(30)).is_err());
        assert!(limiter.check("someone-else", "10.0.0.2", at(30)).is_ok());
        limiter.succeeded("user1");
        assert!(limiter.check("user1", "10.0.0.1", at(31)).is_err());

        let limiter = LoginLimiter::default();
        for i in 0..4 {
            limiter.failed("ann", "10.0.0.1", at(i));
        }
        limiter.succeeded("ann");
        limiter.failed("ann", "10.0.0.1", at(10));
        assert!(limiter.check("ann", "10.0.0.1", at(10)).is_ok());
    }

    #[test]
    fn memory_stays_bounded() {
        let limiter = LoginLimiter::default();
        for i in 0..(MAX_KEYS as i64 + 500) {
            limiter.failed(&format!("u{i}"), "", at(i));
        }
        assert!(limiter.lock().len() <= MAX_KEYS);
    }
}
