//! The manifest: a small, versioned JSON object written after the data object.
//! It is immutable and holds everything needed to check and restore the artifact
//! (never a secret).

use serde::{Deserialize, Serialize};

use crate::config::CompressionKind;
use crate::pipeline::{Digest, EncryptionKind};

pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    pub job: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub created_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
    pub source: SourceInfo,
    /// Layers from the inside out, e.g. `["sqlite", "zstd", "age"]`.
    pub codecs: Vec<String>,
    pub compression: CompressionInfo,
    pub encryption: EncryptionInfo,
    /// The stored object: its key in the destination, size and SHA-256.
    pub data: StoredObject,
    /// The plaintext stream before compression and encryption.
    pub plaintext: Digest,
    pub cairn_version: String,
    pub host: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceInfo {
    pub kind: String,
    /// Kind-specific facts: SQLite version and table row counts, file counts, …
    #[serde(default)]
    pub facts: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompressionInfo {
    pub kind: CompressionKind,
    pub level: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EncryptionInfo {
    pub kind: EncryptionKind,
    /// Public age recipients; empty for passphrases and for none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredObject {
    pub key: String,
    pub size: u64,
    pub sha256: String,
}

impl Manifest {
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Parses a manifest, refusing formats this version does not know.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, String> {
        #[derive(Deserialize)]
        struct Probe {
            format: u32,
        }
        let probe: Probe =
            serde_json::from_slice(bytes).map_err(|e| format!("not a cairn manifest: {e}"))?;
        if probe.format != FORMAT {
            return Err(format!(
                "manifest format {} is not known to cairn {} (it reads format {FORMAT}); upgrade cairn",
                probe.format,
                crate::VERSION
            ));
        }
        serde_json::from_slice(bytes).map_err(|e| format!("damaged manifest: {e}"))
    }
}
