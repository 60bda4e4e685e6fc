//! minisign keys: the public key a job trusts (`signing.public_key`), the
//! unencrypted secret key a backup signs with, and `keygen --signing`. Which
//! stored objects are signatures, and what a signature says about an artifact,
//! is `store::signature`.

use std::io::Cursor;
use std::path::Path;

use crate::{Error, Result};

/// A minisign public key (`RW…`), as written in the config.
#[derive(Clone)]
pub struct PublicKey {
    text: String,
    key: minisign::PublicKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.text)
    }
}

impl PublicKey {
    /// Reads the base64 line of a minisign public key; the two-line `.pub`
    /// file content (comment line first) is accepted too.
    pub fn parse(text: &str) -> std::result::Result<PublicKey, String> {
        let line = text
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .unwrap_or_default();
        let key = minisign::PublicKey::from_base64(line).map_err(|e| {
            format!("`{line}` is not a minisign public key (an `RW…` line, as `cairn keygen --signing` prints): {e}")
        })?;
        Ok(PublicKey {
            text: line.to_string(),
            key,
        })
    }

    /// The `RW…` base64 line.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Checks `signature` (the `.minisig` file's content) over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> std::result::Result<(), String> {
        let text = std::str::from_utf8(signature)
            .map_err(|_| "the signature file is not text".to_string())?;
        let signature = minisign::SignatureBox::from_string(text)
            .map_err(|e| format!("the signature file cannot be read: {e}"))?;
        if signature.keynum() != self.key.keynum() {
            return Err(format!(
                "it is signed by another key (key id {}, the job trusts {})",
                key_id(signature.keynum()),
                key_id(self.key.keynum())
            ));
        }
        minisign::verify(
            &self.key,
            &signature,
            Cursor::new(message),
            true,
            false,
            false,
        )
        .map_err(|e| format!("its signature does not verify: {e}"))
    }
}

/// minisign's key id: the 8 key-number bytes, shown as a little-endian hex number.
fn key_id(keynum: &[u8]) -> String {
    keynum.iter().rev().map(|b| format!("{b:02X}")).collect()
}

/// An unencrypted minisign secret key, loaded for a backup.
pub struct SigningKey {
    secret: minisign::SecretKey,
    public: minisign::PublicKey,
}

/// Bytes of a decoded minisign secret key: algorithm ids and KDF parameters
/// (54), key number (8), Ed25519 secret key (64), checksum (32).
const SECRET_KEY_LEN: usize = 158;
const CHECKSUM_AT: usize = 126;

impl SigningKey {
    /// Loads the key file `path`.
    pub fn load(path: &Path) -> Result<SigningKey> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Crypto(format!(
                "cannot read the signing key {}: {e}",
                path.display()
            ))
        })?;
        warn_if_readable_by_others(path);
        Self::from_text(&text)
            .map_err(|e| Error::Crypto(format!("signing key {}: {e}", path.display())))
    }

    /// Reads a key file's text (the comment line, then the base64 key).
    pub fn from_text(text: &str) -> std::result::Result<SigningKey, String> {
        let encoded = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .ok_or("no key in the file")?;
        let bytes = base64_decode(encoded)
            .filter(|b| b.len() == SECRET_KEY_LEN)
            .ok_or("not a minisign secret key")?;
        let secret = minisign::SecretKey::from_bytes(&bytes).map_err(|e| e.to_string())?;
        if secret.is_encrypted() {
            return Err("the key is protected by a password; cairn signs unattended and needs an unencrypted key: make one with `cairn keygen --signing` (or `minisign -G -W`)".into());
        }
        let secret = match minisign::SecretKeyBox::from_string(text)
            .and_then(minisign::SecretKeyBox::into_unencrypted_secret_key)
        {
            Ok(checked) => checked,
            // `minisign -G -W` leaves the checksum of unencrypted keys zero; the
            // self-test below is what catches a damaged key then.
            Err(_) if bytes[CHECKSUM_AT..].iter().all(|&b| b == 0) => secret,
            Err(e) => return Err(format!("the key is damaged: {e}")),
        };
        let public = minisign::PublicKey::from_secret_key(&secret).map_err(|e| e.to_string())?;
        let key = SigningKey { secret, public };
        key.sign(b"cairn signing key self-test", "self-test")
            .map_err(|e| format!("the key is damaged: {e}"))?;
        Ok(key)
    }

    /// The public key that checks this key's signatures, as an `RW…` line.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            text: self.public.to_base64(),
            key: self.public.clone(),
        }
    }

    /// The `.minisig` file content for `message`; `file_name` goes into the
    /// trusted comment, as minisign does.
    pub fn sign(&self, message: &[u8], file_name: &str) -> std::result::Result<Vec<u8>, String> {
        let trusted = format!(
            "timestamp:{}\tfile:{file_name}\thashed",
            jiff::Timestamp::now().as_second()
        );
        // Passing the public key makes minisign check the new signature with it.
        let signature = minisign::sign(
            Some(&self.public),
            &self.secret,
            Cursor::new(message),
            Some(&trusted),
            Some("signature from cairn secret key"),
        )
        .map_err(|e| e.to_string())?;
        Ok(signature.into_string().into_bytes())
    }
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "the signing key {} can be read by other users (mode {:o}): chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
}

/// A new key pair: (secret key file text, public key file text, public key).
pub struct GeneratedSigningKey {
    pub secret_file: zeroize::Zeroizing<String>,
    pub public_file: String,
    pub public_key: String,
}

pub fn generate() -> Result<GeneratedSigningKey> {
    let pair = minisign::KeyPair::generate_unencrypted_keypair()
        .map_err(|e| Error::Crypto(format!("cannot generate a signing key: {e}")))?;
    let secret_file = pair
        .sk
        .to_box(Some("cairn signing key (unencrypted minisign secret key)"))
        .map_err(|e| Error::Crypto(e.to_string()))?
        .into_string();
    let public_file = pair
        .pk
        .to_box()
        .map_err(|e| Error::Crypto(e.to_string()))?
        .into_string();
    Ok(GeneratedSigningKey {
        secret_file: zeroize::Zeroizing::new(secret_file),
        public_file,
        public_key: pair.pk.to_base64(),
    })
}

/// Where the public key of the secret key file `path` goes: `x.key` → `x.pub`,
/// else `path` + `.pub`.
pub fn public_key_path(path: &Path) -> std::path::PathBuf {
    match path.extension() {
        Some(ext) if ext == "key" => path.with_extension("pub"),
        _ => {
            let mut name = path.as_os_str().to_owned();
            name.push(".pub");
            name.into()
        }
    }
}

/// Writes the secret key to `path` (0600) and the public key beside it (0644);
/// neither may exist already. Returns the public key's path.
pub fn write_key_files(path: &Path, key: &GeneratedSigningKey) -> Result<std::path::PathBuf> {
    let public_path = public_key_path(path);
    for existing in [path, public_path.as_path()] {
        if existing.symlink_metadata().is_ok() {
            return Err(Error::Usage(format!(
                "{} already exists; refusing to overwrite a key (choose another --output)",
                existing.display()
            )));
        }
    }
    write_new(path, key.secret_file.as_bytes(), 0o600)?;
    write_new(&public_path, key.public_file.as_bytes(), 0o644)?;
    Ok(public_path)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::Run(format!("cannot create {}: {e}", path.display())))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::Run(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_file_is_minisigns_prehashed_format() {
        let key = SigningKey::from_text(&generate().unwrap().secret_file).unwrap();
        let text = String::from_utf8(key.sign(b"m", "f.manifest.json").unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("untrusted comment: "));
        // "RU" is base64 of "ED…": the BLAKE2b-prehashed algorithm.
        assert!(lines[1].starts_with("RU"), "{}", lines[1]);
        assert!(lines[2].starts_with("trusted comment: timestamp:"));
        assert!(lines[2].ends_with("\tfile:f.manifest.json\thashed"));
    }

    #[test]
    fn the_public_key_parses_as_a_line_or_as_a_pub_file() {
        let generated = generate().unwrap();
        assert!(generated.public_key.starts_with("RW"));
        let from_line = PublicKey::parse(&generated.public_key).unwrap();
        let from_file = PublicKey::parse(&generated.public_file).unwrap();
        assert_eq!(from_line.as_str(), from_file.as_str());
        let key = SigningKey::from_text(&generated.secret_file).unwrap();
        assert_eq!(key.public_key().as_str(), generated.public_key);
        assert!(PublicKey::parse("RWnotakey").is_err());
    }

    #[test]
    fn password_protected_and_damaged_keys_are_refused() {
        let protected = minisign::KeyPair::generate_encrypted_keypair(Some("pw".into()))
            .unwrap()
            .sk
            .to_box(None)
            .unwrap()
            .into_string();
        let Err(why) = SigningKey::from_text(&protected) else {
            panic!("a password-protected key must be refused");
        };
        assert!(why.contains("password"), "{why}");
        let generated = generate().unwrap();
        let damaged = generated.secret_file.replace("RW", "RX");
        assert!(SigningKey::from_text(&damaged).is_err());
        assert!(SigningKey::from_text("untrusted comment: x\n").is_err());
    }
}
