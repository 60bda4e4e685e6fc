//! A local cache of manifests read from destinations, so that `list`, prune
//! plans and `/metrics` do not fetch every manifest on every call.
//!
//! An entry is used only while the listed object still has the size and
//! modification time it had when it was read; anything else is read again.
//! The cache is a separate SQLite file beside the state store
//! (`<state path>.manifest-cache`): deleting it loses nothing but time, and a
//! cache that cannot be opened or written is skipped with a log line.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, params};

use super::ObjectInfo;
use crate::config::Config;

/// More entries than this and the cache starts over (it only ever holds the
/// manifests of listed job folders, so this is far beyond normal use).
const MAX_ENTRIES: i64 = 500_000;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS manifests (
    destination TEXT NOT NULL, key TEXT NOT NULL, size INTEGER NOT NULL,
    modified INTEGER NOT NULL, bytes BLOB NOT NULL,
    PRIMARY KEY (destination, key)
)";

pub struct ManifestCache {
    path: PathBuf,
    conn: Connection,
}

/// A cached manifest and the object facts it was read with.
pub struct Cached {
    pub size: u64,
    pub modified: Option<jiff::Timestamp>,
    pub bytes: Vec<u8>,
}

impl ManifestCache {
    /// The cache file of `config`'s state store.
    pub fn path_for(config: &Config) -> PathBuf {
        let mut name = config.state_path.as_os_str().to_owned();
        name.push(".manifest-cache");
        PathBuf::from(name)
    }

    /// Opens the cache of `config`, or `None` (logged) when it cannot be used.
    pub fn for_config(config: &Config) -> Option<ManifestCache> {
        let path = Self::path_for(config);
        match Self::open(&path) {
            Ok(cache) => Some(cache),
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "manifest cache not used");
                None
            }
        }
    }

    pub fn open(path: &Path) -> rusqlite::Result<ManifestCache> {
        // Only beside an existing state folder: the cache never creates folders.
        if path
            .parent()
            .is_some_and(|p| !p.as_os_str().is_empty() && !p.is_dir())
        {
            return Err(rusqlite::Error::InvalidPath(path.to_path_buf()));
        }
        let new = !path.exists();
        let conn = Connection::open(path)?;
        if new {
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(ManifestCache {
            path: path.to_path_buf(),
            conn,
        })
    }

    /// Every cached manifest under `prefix` of `destination`, by key.
    pub fn load(&self, destination: &str, prefix: &str) -> HashMap<String, Cached> {
        let result = (|| {
            let mut stmt = self.conn.prepare(
                "SELECT key, size, modified, bytes FROM manifests
                 WHERE destination = ?1 AND substr(key, 1, length(?2)) = ?2",
            )?;
            stmt.query_map(params![destination, prefix], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Cached {
                        size: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(u64::MAX),
                        modified: jiff::Timestamp::from_nanosecond(i128::from(r.get::<_, i64>(2)?))
                            .ok(),
                        bytes: r.get(3)?,
                    },
                ))
            })?
            .collect::<rusqlite::Result<HashMap<_, _>>>()
        })();
        result.unwrap_or_else(|e| {
            tracing::debug!(path = %self.path.display(), error = %e, "manifest cache not read");
            HashMap::new()
        })
    }

    /// Stores the manifests just read and forgets those under `prefix` that
    /// are no longer listed.
    pub fn update(
        &self,
        destination: &str,
        prefix: &str,
        fresh: &[(ObjectInfo, Vec<u8>)],
        listed: &[&str],
    ) {
        let result = (|| -> rusqlite::Result<()> {
            let tx = self.conn.unchecked_transaction()?;
            let count: i64 = tx.query_row("SELECT count(*) FROM manifests", [], |r| r.get(0))?;
            if count > MAX_ENTRIES {
                tx.execute("DELETE FROM manifests", [])?;
            }
            {
                let mut insert = tx.prepare(
                    "INSERT OR REPLACE INTO manifests (destination, key, size, modified, bytes)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for (object, bytes) in fresh {
                    let (Some(modified), Ok(size)) = (object.modified, i64::try_from(object.size))
                    else {
                        continue;
                    };
                    let Ok(nanos) = i64::try_from(modified.as_nanosecond()) else {
                        continue;
                    };
                    insert.execute(params![destination, object.key, size, nanos, bytes])?;
                }
                let listed: std::collections::HashSet<&str> = listed.iter().copied().collect();
                let mut keys = tx.prepare(
                    "SELECT key FROM manifests
                     WHERE destination = ?1 AND substr(key, 1, length(?2)) = ?2",
                )?;
                let gone: Vec<String> = keys
                    .query_map(params![destination, prefix], |r| r.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?
                    .into_iter()
                    .filter(|k| !listed.contains(k.as_str()))
                    .collect();
                let mut delete =
                    tx.prepare("DELETE FROM manifests WHERE destination = ?1 AND key = ?2")?;
                for key in gone {
                    delete.execute(params![destination, key])?;
                }
            }
            tx.commit()
        })();
        if let Err(e) = result {
            tracing::debug!(path = %self.path.display(), error = %e, "manifest cache not written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str, size: u64, secs: i64) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size,
            modified: Some(jiff::Timestamp::from_second(secs).unwrap()),
        }
    }

    #[test]
    fn keeps_listed_entries_and_forgets_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ManifestCache::open(&dir.path().join("c")).unwrap();
        let a = object("app/app-1.manifest.json", 10, 100);
        let b = object("app/app-2.manifest.json", 11, 100);
        cache.update(
            "d",
            "app/",
            &[(a.clone(), b"A".to_vec()), (b.clone(), b"B".to_vec())],
            &[&a.key, &b.key],
        );
        let loaded = cache.load("d", "app/");
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[&a.key].bytes, b"A");
        assert_eq!(loaded[&a.key].modified, a.modified);
        assert!(cache.load("other", "app/").is_empty());
        assert!(cache.load("d", "ap_/").is_empty());
        cache.update("d", "app/", &[], &[&a.key]);
        let loaded = cache.load("d", "app/");
        assert_eq!(loaded.keys().collect::<Vec<_>>(), vec![&a.key]);
    }
}
