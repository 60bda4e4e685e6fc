//! Who is looking at a page: the signed-in user of the session cookie, or
//! nobody (the page then sends the browser to `/login`, or to the setup page
//! while no user exists).

use axum::http::HeaderMap;
use axum::http::header::COOKIE;

use crate::auth::{Action, Lifetimes, Principal};
use crate::config::Config;
use crate::state::{Role, StateStore};

/// The session cookie the API sets at `POST /api/v1/session`.
pub const SESSION_COOKIE: &str = "cairn_session";

/// The signed-in user a page is rendered for.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub name: String,
    pub role: Role,
    /// The session's anti-CSRF token: the page carries it in a meta tag and
    /// the script sends it back as `X-CSRF-Token`.
    pub csrf: String,
    principal: Principal,
}

impl Viewer {
    /// Whether the viewer may do `action` (an [`Action`] by its snake_case
    /// name, e.g. `run_backup`) on `job` (empty: no job), by auth's one role
    /// table. An unknown name is refused, so a typo in a template hides a
    /// button instead of showing it.
    pub fn may(&self, action: &str, job: &str) -> bool {
        Action::ALL
            .iter()
            .find(|a| {
                serde_json::to_value(a)
                    .ok()
                    .as_ref()
                    .and_then(|v| v.as_str())
                    == Some(action)
            })
            .is_some_and(|a| self.principal.may(*a, (!job.is_empty()).then_some(job)))
    }

    /// May run actions on jobs (the job page shows its action buttons).
    pub fn operates(&self, job: &str) -> bool {
        self.may("run_backup", job)
    }
}

/// What a request for a page finds.
pub enum Visit {
    /// No user exists yet: only the setup page is shown.
    Setup,
    /// Nobody signed in (or the session ended).
    Anonymous,
    Signed(Viewer),
}

/// The session cookie's value, if the request carries one.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Who `headers` belong to (blocking: reads the store), with the session's
/// idle and absolute lifetimes enforced by `auth`.
pub fn visit(config: &Config, store: &dyn StateStore, headers: &HeaderMap) -> crate::Result<Visit> {
    if store.users()?.is_empty() {
        return Ok(Visit::Setup);
    }
    let Some(cookie) = session_cookie(headers) else {
        return Ok(Visit::Anonymous);
    };
    let now = jiff::Timestamp::now();
    let principal =
        crate::auth::session::principal_from_session(store, &cookie, now, Lifetimes::of(config))?;
    Ok(match principal {
        Some(principal) => match principal.csrf() {
            Some(csrf) => Visit::Signed(Viewer {
                name: principal.name.clone(),
                role: principal.role,
                csrf: csrf.to_string(),
                principal,
            }),
            None => Visit::Anonymous,
        },
        None => Visit::Anonymous,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Via;

    fn viewer(role: Role) -> Viewer {
        Viewer {
            name: "u".into(),
            role,
            csrf: "c".into(),
            principal: Principal {
                name: "u".into(),
                role,
                via: Via::Session { csrf: "c".into() },
                jobs: None,
            },
        }
    }

    #[test]
    fn buttons_follow_the_role_table_and_unknown_actions_are_refused() {
        let v = viewer(Role::Viewer);
        assert!(v.may("view", "app"));
        assert!(!v.may("run_backup", "app") && !v.operates("app"));
        let o = viewer(Role::Operator);
        assert!(o.operates("app") && o.may("schedule_set", "app") && o.may("prune_dry_run", "app"));
        assert!(
            !o.may("download", "app") && !o.may("prune_apply", "app") && !o.may("read_audit", "")
        );
        let a = viewer(Role::Admin);
        assert!(a.may("download", "app") && a.may("read_audit", ""));
        assert!(
            !a.may("run-backup", "app"),
            "a misspelt action hides the button"
        );
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, "a=1; cairn_session=abc ; b=2".parse().unwrap());
        assert_eq!(session_cookie(&headers).as_deref(), Some("abc"));
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, "cairn_sessionx=abc".parse().unwrap());
        assert_eq!(session_cookie(&headers), None);
    }
}
