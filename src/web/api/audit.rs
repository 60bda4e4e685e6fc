//! The audit log (admins): newest first, or paged oldest first after a seq.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::access::Caller;
use super::error::{ApiResult, ErrorBody, blocking};
use crate::auth::Action;
use crate::web::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entries after this seq, oldest first (without it: the newest, newest first).
    pub after: Option<i64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    pub seq: i64,
    #[schema(format = DateTime)]
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub address: String,
    pub result: String,
    pub prev_hash: String,
    pub hash: String,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = [AuditView]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    super::Query(query): super::Query<AuditQuery>,
) -> ApiResult<Json<Vec<AuditView>>> {
    caller.require(Action::ReadAudit, None)?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    blocking(move || {
        let store = state.store()?;
        let entries = match query.after {
            Some(after) => store.audit_after(after, limit)?,
            None => store.audit_newest(limit)?,
        };
        Ok(Json(
            entries
                .into_iter()
                .map(|e| AuditView {
                    seq: e.seq,
                    at: e.entry.at.to_string(),
                    actor: e.entry.actor,
                    action: e.entry.action,
                    target: e.entry.target,
                    address: e.entry.address,
                    result: e.entry.result,
                    prev_hash: e.prev_hash,
                    hash: e.hash,
                })
                .collect(),
        ))
    })
    .await
}
