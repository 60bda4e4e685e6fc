//! Detached manifest signatures in minisign's formats, so that stock
//! `minisign -Vm <manifest> -P <public key>` verifies an artifact without cairn.
//!
//! The signature covers the exact manifest bytes (prehashed with BLAKE2b-512,
//! minisign's default `ED` algorithm) and is stored beside the manifest as
//! `<manifest key>.minisig`. It is written before the manifest, because the
//! manifest is the commit. Keys are unencrypted minisign secret keys: cairn signs
//! unattended, so there is nobody to type a password. The signing key is not a
//! decryption key, so a host that holds only age recipients can sign.

use serde::Serialize;

use crate::Result;

// The keys themselves live in `keys`, below `config`, which parses the public key.
pub use crate::keys::signing::{
    GeneratedSigningKey, PublicKey, SigningKey, generate, public_key_path, write_key_files,
};

/// What follows a manifest's key to name its signature.
pub const SIGNATURE_SUFFIX: &str = ".minisig";

/// A minisign signature file is a few hundred bytes; larger objects are not read.
pub const MAX_SIGNATURE_BYTES: u64 = 4096;

/// The key of the signature of the manifest at `manifest_key`.
pub fn signature_key(manifest_key: &str) -> String {
    format!("{manifest_key}{SIGNATURE_SUFFIX}")
}

/// Whether an artifact's manifest is signed by the key the job trusts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "trust", content = "trust_problem", rename_all = "kebab-case")]
pub enum Trust {
    /// The job sets no `signing.public_key`: signatures are not checked.
    Unchecked,
    /// The signature verifies with the job's public key.
    Signed,
    /// Unsigned, or the signature does not verify: the manifest may have been
    /// written by anyone who can write to storage.
    Untrusted(String),
}

impl Trust {
    pub fn is_untrusted(&self) -> bool {
        matches!(self, Trust::Untrusted(_))
    }
}

/// Decides whether `manifest` (the exact bytes read) is trusted, given the
/// signature object's content if there is one.
pub fn assess(public: &PublicKey, manifest: &[u8], signature: Option<Result<Vec<u8>>>) -> Trust {
    match signature {
        None => Trust::Untrusted("it is not signed (no .minisig beside its manifest)".into()),
        Some(Err(e)) => Trust::Untrusted(format!("its signature cannot be read: {e}")),
        Some(Ok(bytes)) => match public.verify(manifest, &bytes) {
            Ok(()) => Trust::Signed,
            Err(problem) => Trust::Untrusted(problem),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_key() -> (SigningKey, PublicKey) {
        let generated = generate().unwrap();
        let key = SigningKey::from_text(&generated.secret_file).unwrap();
        let public = PublicKey::parse(&generated.public_key).unwrap();
        (key, public)
    }

    #[test]
    fn a_signature_verifies_only_over_the_same_bytes_and_key() {
        let (key, public) = new_key();
        let message = br#"{"format":1,"id":"x"}"#;
        let signature = key.sign(message, "app-x.manifest.json").unwrap();
        assert_eq!(
            assess(&public, message, Some(Ok(signature.clone()))),
            Trust::Signed
        );
        let mut tampered = message.to_vec();
        tampered[3] ^= 1;
        assert!(assess(&public, &tampered, Some(Ok(signature.clone()))).is_untrusted());
        let (_, other) = new_key();
        let Trust::Untrusted(why) = assess(&other, message, Some(Ok(signature))) else {
            panic!("another key must not verify");
        };
        assert!(why.contains("another key"), "{why}");
        assert!(assess(&public, message, None).is_untrusted());
        assert!(assess(&public, message, Some(Ok(b"garbage".to_vec()))).is_untrusted());
    }

    /// A key pair and signature made by the reference `minisign` 0.11 program
    /// (`minisign -G -W`, then `minisign -S -m` on a file holding "hello\n"). Its
    /// unencrypted secret key has a zero checksum, which cairn accepts.
    const MINISIGN_SECRET: &str = "untrusted comment: minisign encrypted secret key\nRWQAAEIyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAARLhA32+W0hCmC6R8DDWbOK/J1hHIOZzVhBlpZsogCUFwrzqQdDx64nRnSBqLwrP4o5fpG2T/ggYkp4H/zCU169KMCSQ99YTAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
    const MINISIGN_PUBLIC: &str = "RWQBEuEDfb5bSInRnSBqLwrP4o5fpG2T/ggYkp4H/zCU169KMCSQ99YT";
    const MINISIGN_SIGNATURE: &str = "untrusted comment: signature from minisign secret key\nRUQBEuEDfb5bSOSE6NPC0m/MWhk4lGt/+mwOv93i4JQyEzU7643MME48/L1bS4XKyUVzaIGHYiPPaQT8VYAZvASze6IImgFjPA8=\ntrusted comment: timestamp:1796136039\tfile:f\thashed\nd10/K0M6L5IqYZUU9vWu760z/hMTYU5EFyAD1j5KrH9tThdZ9wqwYfr7xAQqZeC9dX3+ftmR6mogB/KnPT3oCA==\n";

    #[test]
    fn test_vector_from_the_minisign_program() {
        let public = PublicKey::parse(MINISIGN_PUBLIC).unwrap();
        assert_eq!(
            assess(
                &public,
                b"hello\n",
                Some(Ok(MINISIGN_SIGNATURE.as_bytes().to_vec()))
            ),
            Trust::Signed
        );
        assert!(
            assess(
                &public,
                b"hello!\n",
                Some(Ok(MINISIGN_SIGNATURE.as_bytes().to_vec()))
            )
            .is_untrusted()
        );
        let key = SigningKey::from_text(MINISIGN_SECRET).unwrap();
        assert_eq!(key.public_key().as_str(), MINISIGN_PUBLIC);
        let ours = key.sign(b"hello\n", "f").unwrap();
        assert_eq!(assess(&public, b"hello\n", Some(Ok(ours))), Trust::Signed);
    }
}
