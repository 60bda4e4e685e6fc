//! Email over SMTP (lettre): STARTTLS, implicit TLS or, for a local relay,
//! none; optional authentication; several recipients; a plain-text body.

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};

use super::{AttemptError, Event, with_retries};
use crate::config::{ChannelConfig, Delivery, SmtpTls};

/// The message for `event`, or why it cannot be built.
pub fn message(from: &str, to: &[String], event: &Event) -> Result<Message, String> {
    let from: Mailbox = from
        .parse()
        .map_err(|e| format!("`from` is not an address: {e}"))?;
    let mut builder = Message::builder().from(from).subject(event.title());
    for address in to {
        let mailbox: Mailbox = address
            .parse()
            .map_err(|e| format!("`{address}` is not an address: {e}"))?;
        builder = builder.to(mailbox);
    }
    let mut body = event.text();
    body.push_str("\n\n-- \nSent by cairn ");
    body.push_str(crate::VERSION);
    body.push('\n');
    builder
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| format!("cannot build the message: {e}"))
}

/// The server name to verify and the roots to trust (the system's, plus
/// `ca_file` when set).
fn tls_parameters(host: &str, ca_file: Option<&std::path::Path>) -> Result<TlsParameters, String> {
    let mut builder = TlsParameters::builder(host.to_string());
    if let Some(file) = ca_file {
        let pem = std::fs::read(file)
            .map_err(|e| format!("cannot read ca_file {}: {e}", file.display()))?;
        let certificate = Certificate::from_pem(&pem)
            .map_err(|e| format!("ca_file {} is not a PEM certificate: {e}", file.display()))?;
        builder = builder.add_root_certificate(certificate);
    }
    builder
        .build_rustls()
        .map_err(|e| format!("TLS for SMTP {host}: {e}"))
}

pub fn send(
    config: &ChannelConfig,
    event: &Event,
    delivery: &Delivery,
) -> (u32, Result<(), String>) {
    let ChannelConfig::Email {
        smtp_host,
        smtp_port,
        tls,
        ca_file,
        username,
        password_env,
        from,
        to,
        ..
    } = config
    else {
        return (0, Err("not an email channel".into()));
    };
    let message = match message(from, to, event) {
        Ok(m) => m,
        Err(e) => return (0, Err(e)),
    };
    let password = match password_env {
        Some(var) => match std::env::var(var) {
            Ok(p) => Some(p),
            Err(_) => {
                return (
                    0,
                    Err(format!(
                        "the password variable `{var}` (password_env) is not set"
                    )),
                );
            }
        },
        None => None,
    };
    let port = smtp_port.unwrap_or(match tls {
        SmtpTls::Starttls => 587,
        SmtpTls::Implicit => 465,
        SmtpTls::None => 25,
    });
    let parameters = match tls_parameters(smtp_host, ca_file.as_deref()) {
        Ok(p) => p,
        Err(e) => return (0, Err(e)),
    };
    with_retries(delivery, |timeout| {
        let builder = SmtpTransport::builder_dangerous(smtp_host).tls(match tls {
            SmtpTls::Starttls => Tls::Required(parameters.clone()),
            SmtpTls::Implicit => Tls::Wrapper(parameters.clone()),
            SmtpTls::None => Tls::None,
        });
        let mut builder = builder.port(port).timeout(Some(timeout));
        if let Some(user) = username {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.clone().unwrap_or_default(),
            ));
        }
        let transport = builder.build();
        transport.send(&message).map(|_| ()).map_err(|e| {
            let mut text = format!("SMTP {smtp_host}:{port}: {e}");
            if let Some(p) = password.as_deref().filter(|p| p.len() >= 4) {
                text = text.replace(p, "***");
            }
            // 5xx answers are final (bad address, refused auth).
            if e.is_permanent() {
                AttemptError::fatal(text)
            } else {
                AttemptError::retry(text)
            }
        })
    })
}
