//! The one table of who may do what. The API, the UI and the CLI ask
//! [`Principal::may`]; no other code compares roles.

use serde::Serialize;

use crate::state::Role;

/// How a principal authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A browser session; state-changing requests must carry this CSRF token.
    Session { csrf: String },
    /// An API token (`Authorization: Bearer`).
    Token { name: String },
}

/// Someone authenticated: a signed-in user or an API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's name, or the token's.
    pub name: String,
    pub role: Role,
    pub via: Via,
    /// The jobs a limited token may act on; `None`: every job.
    pub jobs: Option<Vec<String>>,
}

/// Everything the UI, the API or the CLI lets someone do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Jobs, runs, artifacts, checks, notifications, metrics: everything but secrets.
    View,
    RunBackup,
    RunVerify,
    RunDrill,
    /// A prune that only shows what it would delete.
    PruneDryRun,
    /// A prune that deletes.
    PruneApply,
    RunCheck,
    Pause,
    Resume,
    ScheduleSet,
    ScheduleClear,
    NotifyTest,
    /// An artifact's bytes (stored or plaintext).
    Download,
    Restore,
    ManageUsers,
    ManageTokens,
    ReadAudit,
}

impl Action {
    pub const ALL: [Action; 17] = [
        Action::View,
        Action::RunBackup,
        Action::RunVerify,
        Action::RunDrill,
        Action::PruneDryRun,
        Action::PruneApply,
        Action::RunCheck,
        Action::Pause,
        Action::Resume,
        Action::ScheduleSet,
        Action::ScheduleClear,
        Action::NotifyTest,
        Action::Download,
        Action::Restore,
        Action::ManageUsers,
        Action::ManageTokens,
        Action::ReadAudit,
    ];

    /// The lowest role that may do this.
    pub fn min_role(self) -> Role {
        match self {
            Action::View => Role::Viewer,
            Action::RunBackup
            | Action::RunVerify
            | Action::RunDrill
            | Action::PruneDryRun
            | Action::RunCheck
            | Action::Pause
            | Action::Resume
            | Action::ScheduleSet
            | Action::ScheduleClear
            | Action::NotifyTest => Role::Operator,
            Action::PruneApply
            | Action::Download
            | Action::Restore
            | Action::ManageUsers
            | Action::ManageTokens
            | Action::ReadAudit => Role::Admin,
        }
    }

    /// Whether the action is about one job, so that a token limited to some
    /// jobs may do it on those (and only those).
    pub fn is_per_job(self) -> bool {
        matches!(
            self,
            Action::View
                | Action::RunBackup
                | Action::RunVerify
                | Action::RunDrill
                | Action::PruneDryRun
                | Action::PruneApply
                | Action::Pause
                | Action::Resume
                | Action::ScheduleSet
                | Action::ScheduleClear
                | Action::Download
                | Action::Restore
        )
    }

    /// The audit log's name for it (`area.verb`); `None` for reading.
    pub fn audit_name(self) -> Option<&'static str> {
        Some(match self {
            Action::View => return None,
            Action::RunBackup => "run.backup",
            Action::RunVerify => "run.verify",
            Action::RunDrill => "run.drill",
            Action::PruneDryRun | Action::PruneApply => "run.prune",
            Action::RunCheck => "check.run",
            Action::Pause => "job.pause",
            Action::Resume => "job.resume",
            Action::ScheduleSet => "schedule.set",
            Action::ScheduleClear => "schedule.clear",
            Action::NotifyTest => "notify.test",
            Action::Download => "download",
            Action::Restore => "restore",
            Action::ManageUsers | Action::ManageTokens | Action::ReadAudit => return None,
        })
    }
}

impl Principal {
    /// The audit log's actor: `user:NAME` or `token:NAME`.
    pub fn actor(&self) -> String {
        match &self.via {
            Via::Session { .. } => format!("user:{}", self.name),
            Via::Token { name } => format!("token:{name}"),
        }
    }

    /// Whether this principal may do `action`, on `job` when the action is
    /// about one. A token limited to jobs may act only on those: on other
    /// jobs, on no job in particular (`None` for a per-job action) and on
    /// anything that is not about a job (users, tokens, the audit log,
    /// checks, notifications) it is refused; it may still view the listings
    /// (which show it only its jobs: [`Principal::sees_job`]).
    pub fn may(&self, action: Action, job: Option<&str>) -> bool {
        if self.role < action.min_role() {
            return false;
        }
        let Some(allowed) = &self.jobs else {
            return true;
        };
        match job {
            Some(job) => action.is_per_job() && allowed.iter().any(|j| j == job),
            None => action == Action::View,
        }
    }

    /// Whether listings show `job` to this principal.
    pub fn sees_job(&self, job: &str) -> bool {
        self.jobs
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|j| j == job))
    }

    /// The CSRF token a state-changing request of this principal must carry,
    /// if it came through a session (bearer requests need none).
    pub fn csrf(&self) -> Option<&str> {
        match &self.via {
            Via::Session { csrf } => Some(csrf),
            Via::Token { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role) -> Principal {
        Principal {
            name: "ann".into(),
            role,
            via: Via::Session { csrf: "c".into() },
            jobs: None,
        }
    }

    #[test]
    fn the_roles_table_of_the_issue() {
        use Action::*;
        let viewer = [View];
        let operator = [
            View,
            RunBackup,
            RunVerify,
            RunDrill,
            PruneDryRun,
            RunCheck,
            Pause,
            Resume,
            ScheduleSet,
            ScheduleClear,
            NotifyTest,
        ];
        for action in Action::ALL {
            assert_eq!(
                user(Role::Viewer).may(action, Some("app")),
                viewer.contains(&action),
                "viewer {action:?}"
            );
            assert_eq!(
                user(Role::Operator).may(action, Some("app")),
                operator.contains(&action),
                "operator {action:?}"
            );
            assert!(
                user(Role::Admin).may(action, Some("app")),
                "admin {action:?}"
            );
            assert!(user(Role::Admin).may(action, None), "admin {action:?}");
        }
        // The issue's examples, spelled out.
        assert_eq!(RunBackup.min_role(), Role::Operator);
        assert_eq!(Download.min_role(), Role::Admin);
        assert_eq!(Restore.min_role(), Role::Admin);
        assert_eq!(PruneApply.min_role(), Role::Admin);
        assert_eq!(PruneDryRun.min_role(), Role::Operator);
        assert_eq!(ReadAudit.min_role(), Role::Admin);
    }

    #[test]
    fn a_token_limited_to_jobs_is_refused_others() {
        let token = Principal {
            name: "ci".into(),
            role: Role::Admin,
            via: Via::Token { name: "ci".into() },
            jobs: Some(vec!["app".into()]),
        };
        assert!(token.may(Action::RunBackup, Some("app")));
        assert!(token.may(Action::Download, Some("app")));
        assert!(!token.may(Action::RunBackup, Some("other")));
        assert!(!token.may(Action::View, Some("other")));
        assert!(!token.may(Action::RunBackup, None));
        assert!(!token.may(Action::ManageUsers, None));
        assert!(!token.may(Action::ReadAudit, None));
        assert!(!token.may(Action::RunCheck, None));
        assert!(token.may(Action::View, None));
        assert!(token.sees_job("app") && !token.sees_job("other"));
        assert_eq!(token.actor(), "token:ci");
        assert_eq!(token.csrf(), None);
        assert_eq!(user(Role::Viewer).actor(), "user:ann");
        assert_eq!(user(Role::Viewer).csrf(), Some("c"));
        // The role still applies within the token's jobs.
        let viewer_token = Principal {
            role: Role::Viewer,
            ..token
        };
        assert!(!viewer_token.may(Action::RunBackup, Some("app")));
    }

    #[test]
    fn every_changing_action_has_an_audit_name() {
        for action in Action::ALL {
            let named = action.audit_name().is_some();
            let exempt = matches!(
                action,
                Action::View | Action::ManageUsers | Action::ManageTokens | Action::ReadAudit
            );
            assert!(named != exempt, "{action:?}");
        }
    }
}
