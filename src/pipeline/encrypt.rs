//! age (X25519 recipients or scrypt passphrase) and OpenPGP (symmetric,
//! SEIPDv1 + AES-256 + iterated-salted SHA-256 S2K, readable by GnuPG 2.2) stages.
//!
//! Encryption fails closed: a key that cannot be used is an error, never a
//! fallback to plaintext.

use std::io::{self, BufReader, Read, Write};
use std::thread::JoinHandle;

use age::secrecy::{ExposeSecret, SecretString};

use super::pipe::{PipeWriter, pipe};
use super::{EncryptionKind, Sink, Source};
use crate::keys::{DecryptKey, EncryptKey};
use crate::{Error, Result};

impl Sink for age::stream::StreamWriter<Box<dyn Sink>> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        age::stream::StreamWriter::finish(*self)?.finish()
    }
}

pub fn encryptor(key: &EncryptKey, out: Box<dyn Sink>) -> io::Result<Box<dyn Sink>> {
    Ok(match key {
        EncryptKey::None => out,
        EncryptKey::AgeRecipients(recipients) => {
            let encryptor = age::Encryptor::with_recipients(
                recipients.iter().map(|r| r as &dyn age::Recipient),
            )
            .map_err(|e| io::Error::other(format!("age: {e}")))?;
            Box::new(encryptor.wrap_output(out)?)
        }
        EncryptKey::AgePassphrase(passphrase) => {
            let encryptor = age::Encryptor::with_user_passphrase(passphrase.clone());
            Box::new(encryptor.wrap_output(out)?)
        }
        EncryptKey::OpenPgp(passphrase) => Box::new(OpenPgpWriter::start(passphrase.clone(), out)),
    })
}

/// rpgp's message builder pulls its input from a `Read`; this stage runs it on
/// its own thread and feeds it through a bounded pipe, so it can sit in a chain
/// of writers.
struct OpenPgpWriter {
    input: Option<PipeWriter>,
    worker: Option<JoinHandle<io::Result<()>>>,
}

impl OpenPgpWriter {
    fn start(passphrase: SecretString, mut out: Box<dyn Sink>) -> Self {
        let (input, reader) = pipe(4);
        let worker = std::thread::spawn(move || -> io::Result<()> {
            use pgp::composed::MessageBuilder;
            use pgp::crypto::{hash::HashAlgorithm, sym::SymmetricKeyAlgorithm};
            use pgp::types::{Password, StringToKey};

            let mut rng = rand::thread_rng();
            let mut builder = MessageBuilder::from_reader("", reader)
                .seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
            let s2k = StringToKey::new_iterated(&mut rng, HashAlgorithm::Sha256, 0xff);
            let password = Password::from(passphrase.expose_secret());
            builder
                .encrypt_with_password(s2k, &password)
                .map_err(|e| io::Error::other(format!("openpgp: {e}")))?;
            builder
                .to_writer(&mut rng, &mut out)
                .map_err(|e| io::Error::other(format!("openpgp: {e}")))?;
            out.finish()
        });
        OpenPgpWriter {
            input: Some(input),
            worker: Some(worker),
        }
    }

    /// The worker's own error explains a broken pipe better than the pipe does.
    fn worker_error(&mut self, fallback: io::Error) -> io::Error {
        self.input = None;
        match self.worker.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            Some(Err(_)) => io::Error::other("openpgp encryption thread panicked"),
            _ => fallback,
        }
    }
}

impl Write for OpenPgpWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = match &mut self.input {
            Some(input) => input.write(buf),
            None => return Err(io::Error::other("openpgp stage already failed")),
        };
        result.map_err(|e| self.worker_error(e))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink for OpenPgpWriter {
    fn finish(mut self: Box<Self>) -> io::Result<()> {
        if let Some(input) = self.input.take()
            && let Err(e) = input.close()
        {
            return Err(self.worker_error(e));
        }
        match self.worker.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("openpgp encryption thread panicked")),
            None => Err(io::Error::other("openpgp stage already failed")),
        }
    }
}

/// Wraps `stored` so that reading it yields the plaintext of the encrypted layer.
pub fn decryptor(stored: Source, kind: EncryptionKind, key: &DecryptKey) -> Result<Source> {
    match (kind, key) {
        (EncryptionKind::None, DecryptKey::None) => Ok(stored),
        // Fail closed: an unencrypted artifact in an encrypted job may have been
        // planted by someone who can write to the storage but holds no key.
        (EncryptionKind::None, _) => Err(Error::Crypto(
            "this artifact is stored unencrypted, but the job is configured with encryption: refusing it (it may not be yours); to restore an artifact made before encryption was turned on, use a config with encryption = { kind = \"none\" }".into(),
        )),
        (EncryptionKind::Age, DecryptKey::AgeIdentities(identities)) => {
            let decryptor = age_header(stored)?;
            if decryptor.is_scrypt() {
                return Err(Error::Crypto(
                    "this artifact is encrypted with a passphrase, but the job is configured with an age identity".into(),
                ));
            }
            decryptor
                .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
                .map(|r| Box::new(r) as Source)
                .map_err(|e| match e {
                    age::DecryptError::NoMatchingKeys => Error::Crypto(
                        "none of the identities in encryption.identity_file can decrypt this artifact (wrong key?)".into(),
                    ),
                    other => Error::Crypto(format!("age decryption failed: {other}")),
                })
        }
        (EncryptionKind::AgePassphrase, DecryptKey::AgePassphrase(passphrase)) => {
            let decryptor = age_header(stored)?;
            if !decryptor.is_scrypt() {
                return Err(Error::Crypto(
                    "this artifact is encrypted to age recipients, but the job is configured with a passphrase".into(),
                ));
            }
            let identity = age::scrypt::Identity::new(passphrase.clone());
            decryptor
                .decrypt(std::iter::once(&identity as &dyn age::Identity))
                .map(|r| Box::new(r) as Source)
                .map_err(|e| match e {
                    age::DecryptError::DecryptionFailed
                    | age::DecryptError::KeyDecryptionFailed
                    | age::DecryptError::NoMatchingKeys => Error::Crypto(
                        "wrong passphrase: the artifact's header does not open with it".into(),
                    ),
                    other => Error::Crypto(format!("age decryption failed: {other}")),
                })
        }
        (EncryptionKind::Openpgp, DecryptKey::OpenPgp(passphrase)) => {
            let (message, _) =
                pgp::composed::Message::from_reader(BufReader::new(DebugRead(stored)))
                    .map_err(|e| Error::Crypto(format!("not a readable OpenPGP message: {e}")))?;
            let password = pgp::types::Password::from(passphrase.expose_secret());
            let mut message = message.decrypt_with_password(&password).map_err(|_| {
                Error::Crypto(
                    "wrong passphrase: the OpenPGP session key does not open with it".into(),
                )
            })?;
            if message.is_compressed() {
                message = message
                    .decompress()
                    .map_err(|e| Error::Crypto(format!("OpenPGP decompression failed: {e}")))?;
            }
            Ok(Box::new(message))
        }
        (kind, _) => Err(Error::Crypto(format!(
            "this artifact was encrypted with {kind:?}, which the job's current encryption settings cannot decrypt; restore with the settings it was made with"
        ))),
    }
}

fn age_header(stored: Source) -> Result<age::Decryptor<BufReader<Source>>> {
    age::Decryptor::new_buffered(BufReader::new(stored)).map_err(|e| match e {
        age::DecryptError::Io(io) => Error::Crypto(format!("cannot read the age header: {io}")),
        other => Error::Crypto(format!("not a readable age file: {other}")),
    })
}

/// rpgp wants `Debug` on its input.
struct DebugRead(Source);

impl Read for DebugRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl std::fmt::Debug for DebugRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stored artifact")
    }
}
