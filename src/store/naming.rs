//! Artifact ids and object keys.
//!
//! `<job>/<job>-<id>.<ext…>` is a data object and `<job>/<job>-<id>.manifest.json`
//! its manifest, where the id is `YYYYMMDDTHHMMSSmmmZ-xxxx` (UTC to the
//! millisecond, then random hex; earlier builds wrote whole seconds,
//! `YYYYMMDDTHHMMSSZ-xxxx`, and both are read), so that names sort by time,
//! two backups a second apart get ids in their order, and a name tells a human
//! which tool undoes each layer.

use rand::Rng;

use super::Manifest;

pub const MANIFEST_SUFFIX: &str = ".manifest.json";

pub fn new_id(at: jiff::Timestamp) -> String {
    let suffix: u16 = rand::thread_rng().r#gen();
    format!("{}-{suffix:04x}", at.strftime("%Y%m%dT%H%M%S%3fZ"))
}

pub fn job_prefix(job: &str) -> String {
    format!("{job}/")
}

pub fn data_key(job: &str, id: &str, extensions: &[&str]) -> String {
    let mut key = format!("{job}/{job}-{id}");
    for ext in extensions {
        key.push('.');
        key.push_str(ext);
    }
    key
}

/// Refuses a key that could name something outside a destination's own tree:
/// empty, or with an empty, `.` or `..` part.
pub fn check_key(destination: &str, key: &str) -> crate::Result<()> {
    let valid = !key.is_empty()
        && key
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if valid {
        Ok(())
    } else {
        Err(crate::Error::destination(
            destination,
            format!("invalid object key {key:?}"),
        ))
    }
}

pub fn manifest_key(job: &str, id: &str) -> String {
    format!("{job}/{job}-{id}{MANIFEST_SUFFIX}")
}

/// Whether `id` has the shape [`new_id`] gives, `YYYYMMDDTHHMMSSmmmZ-xxxx`,
/// or the whole-second one of earlier versions, `YYYYMMDDTHHMMSSZ-xxxx`.
pub fn is_id(id: &str) -> bool {
    let b = id.as_bytes();
    let time_digits = match b.len() {
        ID_LEN => 9,
        SECONDS_ID_LEN => 6,
        _ => return false,
    };
    let (time, rest) = b[9..].split_at(time_digits);
    b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && time.iter().all(u8::is_ascii_digit)
        && rest[..2] == *b"Z-"
        && rest[2..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

const ID_LEN: usize = 24;
const SECONDS_ID_LEN: usize = 21;

/// The id at the start of `name`, in either shape [`is_id`] takes.
fn leading_id(name: &str) -> Option<&str> {
    [ID_LEN, SECONDS_ID_LEN]
        .into_iter()
        .filter_map(|len| name.get(..len))
        .find(|id| is_id(id))
}

/// Extensions a data object can carry outside its source's own one.
const LAYER_EXTENSIONS: [&str; 4] = ["zst", "gz", "age", "gpg"];

/// Source extensions cairn writes (a command source names its own).
const SOURCE_EXTENSIONS: [&str; 4] = ["sqlite", "tar", "sql", "pgdump"];

fn is_extension(ext: &str) -> bool {
    !ext.is_empty()
        && ext
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
        && !ext.starts_with('.')
        && !ext.ends_with('.')
}

/// The manifest and data keys that cairn may delete for one artifact: exactly
/// the keys its naming produces for the manifest's job, id and layers. A
/// manifest found in storage can say anything; one whose keys do not follow
/// the naming (a data key in another folder, through a sub-folder, or with
/// another job's or id's name) is reported, never followed.
pub fn owned_keys(
    job: &str,
    manifest_key: &str,
    manifest: &Manifest,
) -> Result<(String, String), String> {
    let id = &manifest.id;
    if !is_id(id) {
        return Err(format!("its id {id:?} is not one cairn makes"));
    }
    if manifest.job != job {
        return Err(format!("it belongs to job {:?}", manifest.job));
    }
    let expected_manifest = self::manifest_key(job, id);
    if manifest_key != expected_manifest {
        return Err(format!(
            "its key {manifest_key:?} is not {expected_manifest:?}"
        ));
    }
    let data = &manifest.data.key;
    let stem = format!("{job}/{job}-{id}.");
    let layers: String = [
        crate::pipeline::compression_extension(manifest.compression.kind),
        manifest.encryption.kind.extension(),
    ]
    .into_iter()
    .flatten()
    .map(|ext| format!(".{ext}"))
    .collect();
    let source_ext = data
        .strip_prefix(&stem)
        .and_then(|rest| rest.strip_suffix(layers.as_str()));
    match source_ext {
        Some(ext) if is_extension(ext) && !ext.contains("manifest") => {
            Ok((expected_manifest, data.clone()))
        }
        _ => Err(format!(
            "its data key {data:?} is not a name cairn gives to artifact {id} of job `{job}`"
        )),
    }
}

/// The id of a data object named by cairn's naming for `job`
/// (`<job>/<job>-<id>.<source>[.zst|.gz][.age|.gpg]`), where the source
/// extension is one cairn writes or the job's own (`own_extension`).
pub fn data_object_id<'k>(job: &str, key: &'k str, own_extension: Option<&str>) -> Option<&'k str> {
    let rest = key.strip_prefix(&format!("{job}/{job}-"))?;
    let id = leading_id(rest)?;
    let mut exts = rest[id.len()..].strip_prefix('.')?;
    for layer in LAYER_EXTENSIONS.iter().rev() {
        if let Some(inner) = exts.strip_suffix(&format!(".{layer}")) {
            // At most one compression and one encryption layer, in that order.
            exts = inner;
        }
    }
    let known = SOURCE_EXTENSIONS.contains(&exts) || own_extension == Some(exts);
    known.then_some(id)
}

/// Whether `key` is an unfinished upload that cairn itself wrote for `job`:
/// `<job>/.partial/<job>-<id>….cairn-<pid>-<nonce>[-<host>]`.
pub fn is_partial_upload(job: &str, key: &str) -> bool {
    let Some(name) = key.strip_prefix(&format!("{job}/.partial/{job}-")) else {
        return false;
    };
    if name.contains('/') || leading_id(name).is_none() {
        return false;
    }
    let Some((_, owner)) = name.rsplit_once(".cairn-") else {
        return false;
    };
    let mut parts = owner.splitn(3, '-');
    let pid_ok = parts
        .next()
        .is_some_and(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()));
    let nonce_ok = parts
        .next()
        .is_some_and(|n| n.len() == 8 && n.bytes().all(|c| c.is_ascii_hexdigit()));
    pid_ok && nonce_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_carry_the_job() {
        let a = new_id("2026-11-22T02:00:00.5Z".parse().unwrap());
        let b = new_id("2026-11-22T02:00:00.501Z".parse().unwrap());
        assert!(a.starts_with("20261122T020000500Z-"), "{a}");
        assert!(is_id(&a) && a < b, "{a} {b}");
        assert!(data_key("inv", &a, &["sqlite", "zst", "age"]) < data_key("inv", &b, &["sqlite"]));
        assert_eq!(
            data_key("inv", "X", &["sqlite", "zst", "age"]),
            "inv/inv-X.sqlite.zst.age"
        );
        assert_eq!(manifest_key("inv", "X"), "inv/inv-X.manifest.json");
    }

    fn manifest(id: &str, data_key: &str) -> Manifest {
        let json = serde_json::json!({
            "format": 1, "id": id, "job": "inv",
            "created_at": "2026-11-22T02:00:00Z", "finished_at": "2026-11-22T02:00:01Z",
            "source": { "kind": "sqlite" }, "codecs": ["sqlite", "zstd", "age"],
            "compression": { "kind": "zstd", "level": 3 },
            "encryption": { "kind": "age" },
            "data": { "key": data_key, "size": 1, "sha256": "00" },
            "plaintext": { "size": 1, "sha256": "00" },
            "cairn_version": "0", "host": "h"
        });
        Manifest::from_json(json.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn ids_of_whole_seconds_from_earlier_builds_are_still_cairns() {
        for id in ["20261122T020000Z-00af", "20261122T020000123Z-00af"] {
            assert!(is_id(id), "{id}");
            let key = data_key("inv", id, &["sqlite", "zst"]);
            assert_eq!(data_object_id("inv", &key, None), Some(id));
            assert!(is_partial_upload(
                "inv",
                &format!("inv/.partial/inv-{id}.sqlite.zst.cairn-12-0000abcd")
            ));
        }
        for not in [
            "20261122T020000Z",
            "20261122T02000012Z-00af",
            "20261122T020000123Y-00af",
            "20261122T020000123Z-00ag",
            "20261122X020000123Z-00af",
        ] {
            assert!(!is_id(not), "{not}");
        }
    }

    #[test]
    fn only_keys_of_cairns_naming_may_be_deleted() {
        let id = "20261122T020000Z-00af";
        let key = manifest_key("inv", id);
        let good = manifest(id, &format!("inv/inv-{id}.sqlite.zst.age"));
        assert_eq!(
            owned_keys("inv", &key, &good).unwrap(),
            (key.clone(), format!("inv/inv-{id}.sqlite.zst.age"))
        );
        for data in [
            "inv/link/important.txt".to_string(),
            "inv/notes.txt".to_string(),
            format!("other/other-{id}.sqlite.zst.age"),
            format!("inv/inv-{id}.sqlite"),
            format!("inv/inv-{id}.manifest.json"),
            format!("inv/inv-{id}.sqlite.zst.age/x"),
            "inv/inv-20261122T020000Z-0000.sqlite.zst.age".to_string(),
        ] {
            assert!(
                owned_keys("inv", &key, &manifest(id, &data)).is_err(),
                "{data}"
            );
        }
        let bad_id = manifest("../../victim", "inv/inv-../../victim.sqlite.zst.age");
        assert!(owned_keys("inv", &manifest_key("inv", "../../victim"), &bad_id).is_err());
        assert!(owned_keys("inv", "inv/elsewhere.manifest.json", &good).is_err());
        assert!(owned_keys("other", &key, &good).is_err());
    }

    #[test]
    fn gc_recognises_its_own_leftovers_only() {
        let id = "20261122T020000Z-00af";
        for key in [
            format!("inv/inv-{id}.sqlite.zst.age"),
            format!("inv/inv-{id}.tar"),
            format!("inv/inv-{id}.pgdump.gz.gpg"),
        ] {
            assert_eq!(data_object_id("inv", &key, None), Some(id), "{key}");
        }
        for key in [
            "inv/notes.txt".to_string(),
            format!("inv/inv-{id}.manifest.json.minisig"),
            format!("inv/inv-{id}.txt"),
            format!("inv/inv-{id}"),
            "inv/inv-20261122T020000Z-xyzw.tar".to_string(),
        ] {
            assert_eq!(data_object_id("inv", &key, None), None, "{key}");
        }
        assert_eq!(
            data_object_id("inv", &format!("inv/inv-{id}.txt"), Some("txt")),
            Some(id)
        );
        assert!(is_partial_upload(
            "inv",
            &format!("inv/.partial/inv-{id}.sqlite.zst.age.cairn-42-0badf00d-host")
        ));
        assert!(is_partial_upload(
            "inv",
            &format!("inv/.partial/inv-{id}.manifest.json.cairn-42-0badf00d")
        ));
        assert!(!is_partial_upload("inv", "inv/.partial/notes.txt"));
        assert!(!is_partial_upload(
            "inv",
            &format!("inv/.partial/inv-{id}.tar")
        ));
    }
}
