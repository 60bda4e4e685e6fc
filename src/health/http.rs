//! `http`: a request that must answer with the expected status, optionally a
//! body containing a text, within a latency limit.

use std::time::Instant;

use super::Finding;
use crate::config::{Check, CheckConfig};

pub fn run(check: &Check) -> Finding {
    let CheckConfig::Http {
        url,
        method,
        expect_status,
        body_contains,
        max_latency,
        headers,
        ..
    } = &check.config
    else {
        return Finding::failing("not an http check");
    };
    let shown = shown_url(url);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return Finding::failing(format!("cannot start the HTTP runtime: {e}")),
    };
    let method = method
        .as_deref()
        .and_then(|m| reqwest::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
        .unwrap_or(reqwest::Method::GET);
    let timeout = check.timeout;
    let start = Instant::now();
    let result = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let mut request = client.request(method.clone(), url.as_str());
        for (k, v) in headers {
            request = request.header(k.as_str(), v.expose());
        }
        let response = request.send().await?;
        let status = response.status();
        let latency = start.elapsed();
        let body = if body_contains.is_some() {
            response.text().await?
        } else {
            String::new()
        };
        Ok::<_, reqwest::Error>((status, latency, body))
    });
    let (status, latency, body) = match result {
        Ok(v) => v,
        Err(e) => {
            let what = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "cannot connect"
            } else {
                "request failed"
            };
            return Finding::failing(format!("{method} {shown}: {what}: {}", e.without_url()));
        }
    };
    let ms = latency.as_secs_f64() * 1000.0;
    let details = serde_json::json!({ "status": status.as_u16(), "latency_ms": ms });
    let status_ok = match expect_status {
        Some(code) => status.as_u16() == *code,
        None => status.is_success(),
    };
    if !status_ok {
        return Finding::failing(format!(
            "{method} {shown} answered {status}, expected {}",
            expect_status.map_or("2xx".to_string(), |c| c.to_string())
        ))
        .with(details);
    }
    if let Some(needle) = body_contains
        && !body.contains(needle.as_str())
    {
        return Finding::failing(format!(
            "{method} {shown}: the body does not contain {needle:?}"
        ))
        .with(details);
    }
    if let Some(limit) = max_latency
        && latency > *limit
    {
        return Finding::failing(format!(
            "{method} {shown} took {ms:.0} ms, more than {} ms",
            limit.as_millis()
        ))
        .with(details);
    }
    Finding::ok(format!("{method} {shown}: {status} in {ms:.0} ms")).with(details)
}

/// The URL without user info or query (which may hold tokens).
fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "(url)".to_string(),
    }
}
