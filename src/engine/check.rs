//! `check`: is the configuration usable on this host? Sources readable,
//! destinations writable, keys loadable.

use std::io::Write;
use std::time::Instant;

use serde::Serialize;

use crate::config::{Config, EncryptionConfig, Job};
use crate::keys;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub subject: String,
    pub level: Level,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub millis: Option<u64>,
}

fn finding(subject: String, level: Level, message: impl Into<String>) -> Finding {
    Finding {
        subject,
        level,
        message: message.into(),
        millis: None,
    }
}

/// What a job's drill table needs on this host, asked of the drill module
/// (which sits above the engine): `None` when the job has no drill.
pub type DrillReadiness = dyn Fn(&Job) -> Option<(bool, String)>;

/// The destinations `jobs` use, in the config's order: what [`check`] probes.
pub fn destinations_used<'a>(config: &'a Config, jobs: &[&Job]) -> Vec<&'a String> {
    config
        .destinations
        .keys()
        .filter(|name| jobs.iter().any(|j| j.destinations.contains(name)))
        .collect()
}

/// Checks `jobs` on this host, probing `destinations` (those of
/// [`destinations_used`], opened).
pub fn check(
    config: &Config,
    jobs: &[&Job],
    destinations: &[super::Opened],
    drill_readiness: &DrillReadiness,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for opened in destinations {
        findings.push(check_destination(opened));
    }
    for job in jobs {
        findings.push(check_source(job));
        findings.extend(check_keys(job));
        findings.extend(check_signing(job));
        findings.extend(drill_readiness(job).map(|(ok, message)| {
            finding(
                format!("job `{}` drill", job.name),
                if ok { Level::Ok } else { Level::Fail },
                message,
            )
        }));
    }
    for (subject, problem) in crate::notify::channel_problems(config) {
        findings.push(finding(subject, Level::Fail, problem));
    }
    findings
}

/// The signing key loads and matches `signing.public_key`.
fn check_signing(job: &Job) -> Option<Finding> {
    let subject = format!("job `{}` signing", job.name);
    // A key that does not match public_key is an error of `signing_key`.
    let checks = |what: &str| match &job.signing.public_key {
        Some(_) => format!("{what}, the key public_key trusts"),
        None => format!("{what}; signatures are not checked (no public_key)"),
    };
    Some(match crate::engine::backup::signing_key(job) {
        Ok(None) => return None,
        Ok(Some(key)) => finding(
            subject,
            Level::Ok,
            checks(&format!("signs with {}", key.public_key().as_str())),
        ),
        // A restore-only host may hold the public key alone.
        Err(e) if job.signing.key_file.is_none() => finding(subject, Level::Warn, e.to_string()),
        Err(e) => finding(subject, Level::Fail, e.to_string()),
    })
}

/// Probes one destination and says how long it took.
fn check_destination(opened: &super::Opened) -> Finding {
    let subject = format!("destination `{}`", opened.name);
    let started = Instant::now();
    let result = match &opened.destination {
        Ok(dest) => probe(dest.as_ref()).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let mut f = match result {
        Ok(message) => finding(subject, Level::Ok, message),
        Err(e) => finding(subject, Level::Fail, e),
    };
    f.millis = Some(started.elapsed().as_millis() as u64);
    f
}

/// Writes, reads back, lists and deletes a small probe object.
fn probe(dest: &dyn crate::store::Destination) -> crate::Result<String> {
    let name = dest.name();
    let nonce: u64 = rand::random();
    let key = format!(".cairn-check/probe-{nonce:016x}");
    let body = format!("cairn check {nonce}");
    dest.put_atomic(&key, body.as_bytes())?;
    let read = dest.get(&key);
    let listed = dest.list(".cairn-check/");
    let deleted = dest.delete(&key);
    // Leave nothing of the probe behind, its folders included.
    let _ = dest.remove_empty_folder(".cairn-check/.partial");
    let _ = dest.remove_empty_folder(".cairn-check");
    if read? != body.as_bytes() {
        return Err(crate::Error::destination(
            name,
            "the probe object read back differs from what was written",
        ));
    }
    if !listed?.iter().any(|o| o.key == key) {
        return Err(crate::Error::destination(
            name,
            "the probe object does not appear in listings",
        ));
    }
    deleted?;
    Ok(format!(
        "{}: write, read, list and delete work",
        dest.location()
    ))
}

fn check_source(job: &Job) -> Finding {
    let subject = format!("job `{}` source", job.name);
    match crate::source::kind::of(job).probe() {
        Ok(message) => finding(subject, Level::Ok, message),
        Err(e) => finding(subject, Level::Fail, e.to_string()),
    }
}

fn check_keys(job: &Job) -> Vec<Finding> {
    let subject = format!("job `{}` encryption", job.name);
    let mut out = Vec::new();
    match keys::encrypt_key(job) {
        Err(e) => out.push(finding(subject.clone(), Level::Fail, e.to_string())),
        Ok(keys::EncryptKey::None) => out.push(finding(
            subject.clone(),
            Level::Warn,
            "encryption is off (kind = \"none\"): anyone who can read the destination can read the backups",
        )),
        Ok(keys::EncryptKey::AgeRecipients(recipients)) => {
            out.push(finding(subject.clone(), Level::Ok, format!("encrypts to {} age {}", recipients.len(), if recipients.len() == 1 { "recipient" } else { "recipients" })));
            if let EncryptionConfig::Age { identity_file, .. } = &job.encryption {
                out.push(check_identity(&subject, identity_file.as_deref(), &recipients));
            }
        }
        Ok(_) => out.push(finding(subject.clone(), Level::Ok, "passphrase is available")),
    }
    out
}

fn check_identity(
    subject: &str,
    identity_file: Option<&std::path::Path>,
    recipients: &[age::x25519::Recipient],
) -> Finding {
    let subject = subject.to_string();
    let Some(path) = identity_file else {
        return finding(
            subject,
            Level::Ok,
            "no identity_file: this host can back up but not decrypt (restore, cat and full verify need the identity)",
        );
    };
    if let Err(e) = keys::load_identities(path) {
        return finding(subject, Level::Fail, e.to_string());
    }
    // Encrypt a probe to the configured recipients and decrypt it with the identity:
    // proves the pair matches without parsing key internals.
    let probe = (|| -> Option<bool> {
        let identities = keys::load_identities(path).ok()?;
        let encryptor =
            age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
                .ok()?;
        let mut sealed = Vec::new();
        let mut w = encryptor.wrap_output(&mut sealed).ok()?;
        w.write_all(b"probe").ok()?;
        w.finish().ok()?;
        let decryptor = age::Decryptor::new_buffered(&sealed[..]).ok()?;
        Some(
            decryptor
                .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
                .is_ok(),
        )
    })();
    use std::os::unix::fs::PermissionsExt;
    let loose = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o077 != 0)
        .unwrap_or(false);
    match (probe, loose) {
        (Some(false), _) => finding(
            subject,
            Level::Fail,
            format!(
                "{} matches none of the recipients: restores would fail",
                path.display()
            ),
        ),
        (_, true) => finding(
            subject,
            Level::Warn,
            format!(
                "{} is readable by other users: chmod 600 it",
                path.display()
            ),
        ),
        _ => finding(
            subject,
            Level::Ok,
            format!(
                "identity {} decrypts what the recipients encrypt",
                path.display()
            ),
        ),
    }
}
