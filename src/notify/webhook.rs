//! Webhooks: cairn's JSON event schema, Slack, Discord, Microsoft Teams and
//! ntfy bodies, POSTed with optional headers.

use std::time::Duration;

use indexmap::IndexMap;
use serde_json::json;

use super::{AttemptError, Event, with_retries};
use crate::config::{Delivery, Secret, WebhookFormat};

/// The `schema` field of the JSON format; bumped only on incompatible changes.
pub const SCHEMA: &str = "cairn.event/1";

/// The request body and its content type for `format`.
pub fn body(format: WebhookFormat, event: &Event) -> (String, &'static str) {
    let text = format!("{}\n{}", event.title(), event.text());
    let value = match format {
        WebhookFormat::Json => {
            let mut value = serde_json::to_value(event).unwrap_or_default();
            if let Some(map) = value.as_object_mut() {
                map.insert("schema".into(), json!(SCHEMA));
                map.insert("title".into(), json!(event.title()));
                map.insert(
                    "severity".into(),
                    json!(if event.kind.is_failure() {
                        "failure"
                    } else {
                        "ok"
                    }),
                );
            }
            value
        }
        WebhookFormat::Slack => json!({
            "text": text,
            "blocks": [
                { "type": "header", "text": { "type": "plain_text", "text": truncate(&event.title(), 150) } },
                { "type": "section", "text": { "type": "mrkdwn", "text": truncate(&event.text(), 2900) } }
            ]
        }),
        // Discord refuses content longer than 2000 characters.
        WebhookFormat::Discord => json!({ "username": "cairn", "content": truncate(&text, 2000) }),
        WebhookFormat::Teams => json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        { "type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true, "text": event.title() },
                        { "type": "TextBlock", "wrap": true, "text": event.text() }
                    ]
                }
            }]
        }),
        WebhookFormat::Ntfy => return (event.text(), "text/plain; charset=utf-8"),
    };
    (value.to_string(), "application/json")
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

pub fn send(
    url: &Secret,
    format: WebhookFormat,
    headers: &IndexMap<String, Secret>,
    event: &Event,
    delivery: &Delivery,
) -> (u32, Result<(), String>) {
    let (body, content_type) = body(format, event);
    let mut all_headers: Vec<(String, String)> = vec![("Content-Type".into(), content_type.into())];
    if format == WebhookFormat::Ntfy {
        all_headers.push(("Title".into(), event.title()));
        all_headers.push((
            "Priority".into(),
            if event.kind.is_failure() {
                "high"
            } else {
                "default"
            }
            .into(),
        ));
        all_headers.push((
            "Tags".into(),
            if event.kind.is_failure() {
                "warning"
            } else {
                "white_check_mark"
            }
            .into(),
        ));
    }
    all_headers.extend(
        headers
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_string())),
    );
    let secrets: Vec<&str> = std::iter::once(url.expose())
        .chain(headers.values().map(Secret::expose))
        .collect();
    with_retries(delivery, |timeout| {
        post(
            url.expose(),
            &all_headers,
            body.clone().into_bytes(),
            timeout,
        )
        .map_err(|e| AttemptError {
            message: redact(&e.message, &secrets),
            retry: e.retry,
        })
    })
}

/// Replaces every secret in `text`: the given ones and every secret the
/// process knows.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(secret, "***");
    }
    crate::redact::redact(&out)
}

/// One POST on a small runtime of its own: 2xx is success, 429 and 5xx and
/// network errors may be retried, other statuses are final. Messages never
/// contain the URL.
pub fn post(
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(), AttemptError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AttemptError::fatal(format!("cannot start the HTTP runtime: {e}")))?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AttemptError::fatal(format!("HTTP client: {}", e.without_url())))?;
        let mut request = client.post(url).body(body);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().await.map_err(|e| {
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "cannot connect"
            } else {
                "request failed"
            };
            AttemptError::retry(format!("{kind}: {}", error_chain(&e.without_url())))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // Servers echo the request (its URL, a header) in error bodies: mask
        // the secrets before cutting, so that no partial token survives.
        let text = crate::redact::redact(&response.text().await.unwrap_or_default());
        let message = format!("HTTP {status}: {}", truncate(text.trim(), 200));
        if status.as_u16() == 429 || status.is_server_error() {
            Err(AttemptError::retry(message))
        } else {
            Err(AttemptError::fatal(message))
        }
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::EventKind;

    #[test]
    fn json_body_has_the_schema_fields() {
        let event = Event::new(EventKind::BackupFailed, "it broke")
            .job("app")
            .error(Some("disk full".into()));
        let (body, content_type) = body(WebhookFormat::Json, &event);
        assert_eq!(content_type, "application/json");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["kind"], "backup_failed");
        assert_eq!(v["job"], "app");
        assert_eq!(v["error"], "disk full");
        assert_eq!(v["severity"], "failure");
        assert_eq!(v["recovery"], false);
    }

    #[test]
    fn discord_content_is_cut_at_2000_characters() {
        let event = Event::new(EventKind::BackupFailed, "x".repeat(5000)).job("app");
        let (body, _) = body(WebhookFormat::Discord, &event);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["content"].as_str().unwrap().chars().count(), 2000);
    }

    #[test]
    fn redaction_hides_tokens() {
        assert_eq!(
            redact("POST https://h/T0KEN failed", &["https://h/T0KEN"]),
            "POST *** failed"
        );
    }
}
