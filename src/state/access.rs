//! What the web UI and the API keep in the state store: users, sessions, API
//! tokens, the audit log and schedule overrides. Only hashes of passwords,
//! session ids and tokens are stored; the secrets themselves never are.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a user or token may do, lowest first: each role may do everything the
/// roles before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees everything except secrets; changes nothing.
    Viewer,
    /// Also runs backups, verifies, drills, checks and prune dry-runs; pauses,
    /// resumes and overrides schedules.
    Operator,
    /// Also downloads, restores, applies prunes, manages users and tokens and
    /// reads the audit log.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<Role, String> {
        match text {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "`{other}` is not a role: use admin, operator or viewer"
            )),
        }
    }
}

/// A person who signs in to the UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// An argon2id PHC string; never shown.
    #[serde(skip)]
    pub password_hash: String,
    pub created_at: Timestamp,
}

/// A signed-in browser. The cookie carries a random id; the store keeps only
/// its SHA-256 (`id_hash`), so a copy of the store signs nobody in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id_hash: String,
    pub user: String,
    /// The anti-CSRF token the pages of this session send back.
    pub csrf: String,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
}

/// A credential for scripts: `Authorization: Bearer …`. Only its SHA-256 is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    pub name: String,
    #[serde(skip)]
    pub hash: String,
    pub role: Role,
    /// The jobs it may act on; empty: all jobs.
    pub jobs: Vec<String>,
    pub created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
}

/// An entry of the audit log as the caller describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAudit {
    pub at: Timestamp,
    /// Who: `user:NAME`, `token:NAME`, `cli:USER@HOST` or `anonymous`.
    pub actor: String,
    /// What, e.g. `login`, `run.backup`, `download`, `user.add`.
    pub action: String,
    /// On what, e.g. a job, `job/artifact`, a user name; may be empty.
    pub target: String,
    /// The client's address; empty for the CLI.
    pub address: String,
    /// `ok`, `denied`, `failed` or a short reason.
    pub result: String,
}

/// An entry as stored: numbered, and chained to the one before it by hash, so
/// that a removed or edited entry shows (`cairn audit --verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    #[serde(flatten)]
    pub entry: NewAudit,
    pub prev_hash: String,
    pub hash: String,
}

/// The `prev_hash` of the first entry.
pub const AUDIT_GENESIS: &str = "";

/// The hash of an entry: SHA-256 over its number, the previous hash and its
/// fields, each length-prefixed so that no two entries share an encoding. Both
/// store kinds call this, so a log copied between them still verifies.
pub fn audit_hash(seq: i64, prev_hash: &str, entry: &NewAudit) -> String {
    let mut hasher = Sha256::new();
    let at = entry.at.as_millisecond().to_string();
    let seq = seq.to_string();
    for field in [
        seq.as_str(),
        prev_hash,
        at.as_str(),
        entry.actor.as_str(),
        entry.action.as_str(),
        entry.target.as_str(),
        entry.address.as_str(),
        entry.result.as_str(),
    ] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// A job's schedule as changed in the UI or by `cairn schedule`, over the config's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum ScheduleOverride {
    /// The job's schedules do not fire (manual runs still work).
    Disabled,
    /// This cron expression replaces the job's schedules.
    Cron { cron: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(actor: &str) -> NewAudit {
        NewAudit {
            at: Timestamp::from_second(1_800_000_000).unwrap(),
            actor: actor.into(),
            action: "login".into(),
            target: String::new(),
            address: "127.0.0.1".into(),
            result: "ok".into(),
        }
    }

    #[test]
    fn audit_hash_changes_with_every_field_and_the_chain() {
        let base = audit_hash(1, AUDIT_GENESIS, &entry("user:ann"));
        assert_eq!(base, audit_hash(1, AUDIT_GENESIS, &entry("user:ann")));
        assert_ne!(base, audit_hash(2, AUDIT_GENESIS, &entry("user:ann")));
        assert_ne!(base, audit_hash(1, "x", &entry("user:ann")));
        assert_ne!(base, audit_hash(1, AUDIT_GENESIS, &entry("user:bob")));
        // Length prefixes: moving a character between fields changes the hash.
        let mut shifted = entry("user:an");
        shifted.action = "nlogin".into();
        assert_ne!(base, audit_hash(1, AUDIT_GENESIS, &shifted));
    }

    #[test]
    fn roles_order_and_parse() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        for role in [Role::Viewer, Role::Operator, Role::Admin] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!(
            "root"
                .parse::<Role>()
                .unwrap_err()
                .contains("admin, operator or viewer")
        );
    }
}
