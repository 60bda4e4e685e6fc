//! Loading encryption keys and passphrases, and generating age identities.
//!
//! Secrets are held in `SecretString` and never formatted into messages.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use age::secrecy::{ExposeSecret, SecretString};

use crate::{Error, Result};

pub mod signing;

/// Where a job's encryption keys come from, as its configuration says.
/// `config` describes this for each job (`keys` stays below `config`).
pub enum KeySource<'a> {
    None,
    Age {
        recipients: &'a [String],
        recipients_file: Option<&'a Path>,
        identity_file: Option<&'a Path>,
    },
    AgePassphrase(Passphrase<'a>),
    OpenPgp(Passphrase<'a>),
}

/// Where a passphrase is read from: an environment variable or a file's first line.
pub struct Passphrase<'a> {
    pub env: Option<&'a str>,
    pub file: Option<&'a Path>,
}

/// A job as keys see it: its name (for messages) and where its keys come from.
pub trait JobKeys {
    fn job_name(&self) -> &str;
    fn key_source(&self) -> KeySource<'_>;
}

/// What the pipeline needs to encrypt one job's backups.
pub enum EncryptKey {
    None,
    AgeRecipients(Vec<age::x25519::Recipient>),
    AgePassphrase(SecretString),
    OpenPgp(SecretString),
}

/// What the pipeline needs to decrypt one job's artifacts.
pub enum DecryptKey {
    None,
    AgeIdentities(Vec<Box<dyn age::Identity + Send + Sync>>),
    AgePassphrase(SecretString),
    OpenPgp(SecretString),
}

pub fn parse_recipient(text: &str) -> Result<age::x25519::Recipient> {
    age::x25519::Recipient::from_str(text.trim()).map_err(|e| {
        Error::Crypto(format!(
            "`{}` is not an age X25519 recipient ({e}); it should look like age1… (see `cairn keygen`)",
            text.trim()
        ))
    })
}

fn read_recipients_file(path: &Path) -> Result<Vec<age::x25519::Recipient>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Crypto(format!(
            "cannot read recipients file {}: {e}",
            path.display()
        ))
    })?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(parse_recipient)
        .collect()
}

fn read_passphrase(job: &str, source: &Passphrase) -> Result<SecretString> {
    let secret = match (source.env, source.file) {
        (Some(var), _) => std::env::var(var).map_err(|_| {
            Error::Usage(format!(
                "job `{job}`: the passphrase variable `{var}` (encryption.passphrase_env) is not set in the environment"
            ))
        })?,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::Crypto(format!(
                    "job `{job}`: cannot read the passphrase file {}: {e}",
                    path.display()
                ))
            })?;
            text.lines().next().unwrap_or_default().to_string()
        }
        (None, None) => String::new(),
    };
    if secret.is_empty() {
        return Err(Error::Crypto(format!(
            "job `{job}`: the passphrase is empty; refusing to encrypt or decrypt with it"
        )));
    }
    crate::redact::register(&secret);
    Ok(SecretString::from(secret))
}

/// Keys to encrypt `job`'s backups. Fails (closed) when any key cannot be loaded.
pub fn encrypt_key(job: &impl JobKeys) -> Result<EncryptKey> {
    let name = job.job_name();
    Ok(match job.key_source() {
        KeySource::None => EncryptKey::None,
        KeySource::Age {
            recipients,
            recipients_file,
            ..
        } => {
            let mut all = recipients
                .iter()
                .map(|r| parse_recipient(r))
                .collect::<Result<Vec<_>>>()?;
            if let Some(path) = recipients_file {
                all.extend(read_recipients_file(path)?);
            }
            if all.is_empty() {
                return Err(Error::Crypto(format!(
                    "job `{}`: no age recipients to encrypt to",
                    name
                )));
            }
            EncryptKey::AgeRecipients(all)
        }
        KeySource::AgePassphrase(source) => {
            EncryptKey::AgePassphrase(read_passphrase(name, &source)?)
        }
        KeySource::OpenPgp(source) => EncryptKey::OpenPgp(read_passphrase(name, &source)?),
    })
}

/// Keys to decrypt `job`'s artifacts.
pub fn decrypt_key(job: &impl JobKeys) -> Result<DecryptKey> {
    let name = job.job_name();
    Ok(match job.key_source() {
        KeySource::None => DecryptKey::None,
        KeySource::Age { identity_file, .. } => {
            let path = identity_file.as_ref().ok_or_else(|| {
                Error::Crypto(format!(
                    "job `{}` is encrypted to age recipients; decrypting needs the matching identity: set encryption.identity_file",
                    name
                ))
            })?;
            DecryptKey::AgeIdentities(load_identities(path)?)
        }
        KeySource::AgePassphrase(source) => {
            DecryptKey::AgePassphrase(read_passphrase(name, &source)?)
        }
        KeySource::OpenPgp(source) => DecryptKey::OpenPgp(read_passphrase(name, &source)?),
    })
}

pub fn load_identities(path: &Path) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>> {
    let file = age::IdentityFile::from_file(path.to_string_lossy().into_owned()).map_err(|e| {
        Error::Crypto(format!(
            "cannot read age identity file {}: {e}",
            path.display()
        ))
    })?;
    let identities = file.into_identities().map_err(|e| {
        Error::Crypto(format!(
            "age identity file {} is not usable: {e}",
            path.display()
        ))
    })?;
    if identities.is_empty() {
        return Err(Error::Crypto(format!(
            "age identity file {} holds no identity",
            path.display()
        )));
    }
    Ok(identities)
}

/// A new X25519 identity: the file text (secret) and its public recipient.
pub struct GeneratedKey {
    pub file_text: SecretString,
    pub recipient: String,
}

pub fn generate() -> GeneratedKey {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let created = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ");
    let file_text = format!(
        "# created: {created}\n# public key: {recipient}\n{}\n",
        identity.to_string().expose_secret()
    );
    GeneratedKey {
        file_text: SecretString::from(file_text),
        recipient,
    }
}

/// Writes a new identity to `path` with mode 0600, refusing to replace a file.
pub fn write_identity(path: &Path, key: &GeneratedKey) -> Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Usage(format!(
                    "{} already exists; refusing to overwrite a key (choose another --output)",
                    path.display()
                ))
            } else {
                Error::Run(format!("cannot create {}: {e}", path.display()))
            }
        })?;
    file.write_all(key.file_text.expose_secret().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::Run(format!("cannot write {}: {e}", path.display())))?;
    Ok(path.to_path_buf())
}
