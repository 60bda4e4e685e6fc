//! "Send test" (operators and admins): a test event through one configured
//! channel, with its retries, by `notify::send` — what `cairn notify test
//! CHANNEL` calls. The answer says whether it was delivered, never the
//! channel's URL or headers.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::access::Caller;
use super::error::{ApiError, ApiResult, ErrorBody, blocking};
use crate::auth::Action;
use crate::notify::{self, Event, EventKind};
use crate::web::AppState;

/// How a test message went.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotifyTestResult {
    pub channel: String,
    /// The channel's kind (`webhook`, `email`, `ping`, …).
    pub kind: String,
    pub delivered: bool,
    pub attempts: u32,
    /// Why it was not delivered (secrets masked).
    pub error: Option<String>,
}

/// Sends a test message through the channel now.
#[utoipa::path(post, path = "/api/v1/notifications/{channel}/test", tag = "notifications",
    params(("channel" = String, Path, description = "the channel, as in `[notify.NAME]`")),
    responses(
        (status = 200, description = "tried: `delivered` says how it went", body = NotifyTestResult),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn send_test(
    State(state): State<Arc<AppState>>,
    Path(channel): Path<String>,
    caller: Caller,
) -> ApiResult<Json<NotifyTestResult>> {
    caller.require(Action::NotifyTest, None)?;
    blocking(move || {
        let config = state.config();
        let Some(target) = config.notify.get(&channel) else {
            return Err(ApiError::not_found(format!(
                "there is no notification channel `{channel}` in the config"
            )));
        };
        let event = Event::new(
            EventKind::Test,
            format!("this is a test of the notification channel `{channel}`, sent from the web UI by {}", caller.actor()),
        )
        .next_step("nothing: if you read this, the channel works");
        let (attempts, outcome) = notify::send(target, &event);
        let store = state.store()?;
        let result = match &outcome {
            Ok(()) => "ok".to_string(),
            Err(_) => "failed".to_string(),
        };
        caller.audit(store.as_ref(), "notify.test", &channel, &result);
        Ok(Json(NotifyTestResult {
            kind: target.config.kind().to_string(),
            channel,
            delivered: outcome.is_ok(),
            attempts,
            error: outcome.err().map(|e| crate::redact::redact(&e)),
        }))
    })
    .await
}
