//! Who is looking at a page: the signed-in user of the session cookie, or
//! nobody (the page then sends the browser to `/login`, or to the setup page
//! while no user exists).

use axum::http::HeaderMap;
use axum::http::header::COOKIE;

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
}

impl Viewer {
    /// May run backups, verifies, drills, checks and prune dry-runs, pause,
    /// resume and override schedules.
    pub fn operates(&self) -> bool {
        self.role >= Role::Operator
    }

    /// May download, restore, apply prunes and read the audit log.
    pub fn administers(&self) -> bool {
        self.role >= Role::Admin
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

/// Who `headers` belong to (blocking: reads the store).
pub fn visit(store: &dyn StateStore, headers: &HeaderMap) -> crate::Result<Visit> {
    if store.users()?.is_empty() {
        return Ok(Visit::Setup);
    }
    let Some(cookie) = session_cookie(headers) else {
        return Ok(Visit::Anonymous);
    };
    Ok(match signed_in(store, &cookie)? {
        Some(viewer) => Visit::Signed(viewer),
        None => Visit::Anonymous,
    })
}

fn signed_in(store: &dyn StateStore, cookie: &str) -> crate::Result<Option<Viewer>> {
    use sha2::{Digest, Sha256};
    let hash = hex::encode(Sha256::digest(cookie.as_bytes()));
    let Some(session) = store.session(&hash)? else {
        return Ok(None);
    };
    let Some(user) = store.user(&session.user)? else {
        return Ok(None);
    };
    Ok(Some(Viewer {
        name: user.name,
        role: user.role,
        csrf: session.csrf,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

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
