//! One contract for every kind of destination: the same test functions run
//! against `fs`, the in-memory destination and each real server of the
//! harness (S3 on SeaweedFS, Azure Blob on Azurite, SFTP on sshd, WebDAV on
//! rclone, GCS on fake-gcs-server), each opened as cairn opens it
//! (`store::open`, with its layers).
//!
//! What every destination promises the commit protocol:
//! - an upload is invisible under its key until `commit`, then whole;
//! - temporary objects (`<folder>/.partial/…`) are never listed by `list`,
//!   and are listed by `list_partial`;
//! - an aborted upload leaves nothing;
//! - a missing key is `StorageKind::NotFound` on `open` and `get`, `None` for
//!   `size`; deleting it (twice) is fine;
//! - large objects stream through in any chunk sizes;
//! - `list` returns the objects whose key starts with the prefix, in key
//!   order, with sizes and modification times;
//! - `put_atomic` replaces an object whole.
//!
//! Listing depth below the prefix's folder is not part of the contract
//! (fs lists one folder, object stores list everything under the prefix):
//! cairn's keys are `JOB/NAME`, one level deep.

mod common;

use std::io::{Read, Write};
use std::path::Path;

use cairn::StorageKind;
use cairn::store::{self, Destination};
use common::objstores::{self, unique_name};
use sha2::{Digest, Sha256};

/// A destination opened for one test, with what must live as long as it.
struct Opened {
    dest: Box<dyn Destination>,
    _keep: Option<tempfile::TempDir>,
}

fn open(toml: &str, keep: Option<tempfile::TempDir>) -> Opened {
    let text = format!("[destinations.contract]\n{toml}\n");
    let config = cairn::config::Config::parse(Path::new("/contract/cairn.toml"), &text)
        .unwrap_or_else(|e| panic!("config: {e}\n{text}"));
    Opened {
        dest: store::open(&config, "contract").expect("open the destination"),
        _keep: keep,
    }
}

fn fs() -> Opened {
    let dir = tempfile::tempdir().expect("temp dir");
    let toml = format!(
        "kind = \"fs\"\npath = \"{}\"",
        dir.path().join("dest").display()
    );
    open(&toml, Some(dir))
}

fn memory() -> Opened {
    Opened {
        dest: Box::new(store::memory::MemoryDestination::new("contract")),
        _keep: None,
    }
}

fn s3() -> Opened {
    let s3 = objstores::s3();
    let bucket = unique_name("contract");
    s3.create_bucket(&bucket);
    open(
        &format!(
            "kind = \"s3\"\nbucket = \"{bucket}\"\nprefix = \"team/cairn\"\nendpoint = \"{}\"\nregion = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\ntransfer = {{ part_size_mib = 5 }}",
            s3.endpoint(),
            s3.region,
            s3.access_key,
            s3.secret_key
        ),
        None,
    )
}

fn azure() -> Opened {
    let az = objstores::azurite();
    let container = unique_name("contract");
    az.create_container(&container);
    open(
        &format!(
            "kind = \"azblob\"\ncontainer = \"{container}\"\nprefix = \"team\"\nendpoint = \"{}\"\naccount_name = \"{}\"\naccount_key = \"{}\"\ntransfer = {{ part_size_mib = 5 }}",
            az.endpoint(),
            az.account_name,
            az.account_key
        ),
        None,
    )
}

fn sftp() -> Opened {
    let sftp = objstores::sftp();
    let folder = sftp.root.join(unique_name("contract"));
    std::fs::create_dir_all(&folder).expect("sftp folder");
    open(
        &format!(
            "kind = \"sftp\"\nhost = \"{}\"\nport = {}\nuser = \"{}\"\nkey = \"{}\"\nfolder = \"{}\"\nknown_hosts = \"accept\"",
            sftp.host,
            sftp.port,
            sftp.user,
            sftp.private_key_path.display(),
            folder.display()
        ),
        None,
    )
}

fn webdav() -> Opened {
    let dav = objstores::webdav();
    open(
        &format!(
            "kind = \"webdav\"\nurl = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\nprefix = \"{}/nested\"",
            dav.endpoint(),
            dav.user,
            dav.password,
            unique_name("contract")
        ),
        None,
    )
}

/// fake-gcs-server lacks GCS's XML multipart API, which OpenDAL uses for
/// objects larger than one part ("invalid uploadType"), so parts here are
/// larger than the largest test object: its stream goes up in one request.
fn gcs() -> Opened {
    let gcs = objstores::gcs();
    let bucket = unique_name("contract");
    gcs.create_bucket(&bucket);
    open(
        &format!(
            "kind = \"gcs\"\nbucket = \"{bucket}\"\nprefix = \"team\"\nendpoint = \"{}\"\nanonymous = true\ntransfer = {{ part_size_mib = 32 }}",
            gcs.endpoint()
        ),
        None,
    )
}

fn keys(dest: &dyn Destination, prefix: &str) -> Vec<String> {
    dest.list(prefix)
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .collect()
}

fn kind_of<T>(result: cairn::Result<T>) -> Option<StorageKind> {
    result.err().and_then(|e| e.storage_kind())
}

// ---------------------------------------------------------------------------
// The contract

fn an_upload_is_invisible_until_commit_then_whole(dest: &dyn Destination) {
    let data = b"the whole object".repeat(1000);
    let mut upload = dest.create("job/data.bin").expect("create");
    upload.write_all(&data[..7000]).expect("write");
    assert_eq!(dest.size("job/data.bin").expect("size"), None);
    assert!(keys(dest, "job/").is_empty(), "listed before commit");
    upload.write_all(&data[7000..]).expect("write");
    assert_eq!(dest.size("job/data.bin").expect("size"), None);
    upload.commit().expect("commit");
    assert_eq!(
        dest.size("job/data.bin").expect("size"),
        Some(data.len() as u64)
    );
    assert_eq!(dest.get("job/data.bin").expect("get"), data);
    assert_eq!(keys(dest, "job/"), ["job/data.bin"]);
}

fn temporary_objects_are_listed_only_by_list_partial(dest: &dyn Destination) {
    dest.put_atomic("job/.partial/leftover.cairn-1-0000abcd", b"half")
        .expect("put");
    dest.put_atomic("job/kept", b"whole").expect("put");
    let mut upload = dest.create("job/uploading").expect("create");
    upload.write_all(b"in flight").expect("write");
    assert_eq!(keys(dest, "job/"), ["job/kept"]);
    let partial: Vec<String> = dest
        .list_partial("job/")
        .expect("list_partial")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(
        partial.contains(&"job/.partial/leftover.cairn-1-0000abcd".to_string()),
        "{partial:?}"
    );
    // An upload in flight may show there (fs, memory) or nowhere (object
    // stores), but only there.
    assert!(
        partial.iter().all(|k| k.starts_with("job/.partial/")),
        "{partial:?}"
    );
    upload.commit().expect("commit");
    assert_eq!(keys(dest, "job/"), ["job/kept", "job/uploading"]);
    let partial = dest.list_partial("job/").expect("list_partial");
    assert_eq!(partial.len(), 1, "only the leftover: {partial:?}");
    assert_eq!(partial[0].size, 4);
}

fn an_aborted_upload_leaves_nothing(dest: &dyn Destination) {
    let mut upload = dest.create("job/aborted.bin").expect("create");
    upload.write_all(&[9; 100_000]).expect("write");
    upload.abort();
    let mut dropped = dest.create("job/dropped.bin").expect("create");
    dropped.write_all(&[8; 1000]).expect("write");
    drop(dropped);
    assert_eq!(dest.size("job/aborted.bin").expect("size"), None);
    assert_eq!(dest.size("job/dropped.bin").expect("size"), None);
    assert!(keys(dest, "job/").is_empty());
    assert!(dest.list_partial("job/").expect("list_partial").is_empty());
}

fn missing_keys_are_not_found_and_deleting_twice_is_fine(dest: &dyn Destination) {
    assert_eq!(
        kind_of(dest.open("job/missing")),
        Some(StorageKind::NotFound)
    );
    assert_eq!(
        kind_of(dest.get("job/missing")),
        Some(StorageKind::NotFound)
    );
    assert_eq!(dest.size("job/missing").expect("size"), None);
    assert!(keys(dest, "nothing-here/").is_empty());
    assert!(
        dest.list_partial("nothing-here/")
            .expect("list_partial")
            .is_empty()
    );
    dest.delete("job/missing").expect("delete a missing key");
    dest.put_atomic("job/gone", b"x").expect("put");
    dest.delete("job/gone").expect("delete");
    dest.delete("job/gone").expect("delete again");
    assert_eq!(dest.size("job/gone").expect("size"), None);
    assert_eq!(kind_of(dest.get("job/gone")), Some(StorageKind::NotFound));
}

fn a_large_object_streams_through_in_odd_chunks(dest: &dyn Destination) {
    const SIZE: usize = 20 * 1024 * 1024 + 333;
    let mut written = Sha256::new();
    let mut upload = dest.create("job/large.bin").expect("create");
    let chunks = [7919, 65_537, 1_000_003, 1, 262_147];
    let (mut done, mut i, mut seed) = (0, 0, 0x2545_f491_u32);
    while done < SIZE {
        let len = chunks[i % chunks.len()].min(SIZE - done);
        let chunk: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        upload.write_all(&chunk).expect("write");
        written.update(&chunk);
        done += len;
        i += 1;
    }
    upload.commit().expect("commit");
    assert_eq!(dest.size("job/large.bin").expect("size"), Some(SIZE as u64));
    let mut reader = dest.open("job/large.bin").expect("open");
    let mut read = Sha256::new();
    let mut total = 0;
    let mut buf = vec![0; 100_003];
    loop {
        let n = reader.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        read.update(&buf[..n]);
        total += n;
    }
    assert_eq!(total, SIZE);
    assert_eq!(read.finalize(), written.finalize(), "same bytes back");
}

fn listing_is_by_prefix_in_key_order_with_sizes_and_times(dest: &dyn Destination) {
    for (key, bytes) in [
        ("job/b", &b"bb"[..]),
        ("job/a2", b"a2a2"),
        ("job/a", b"a"),
        ("jobx/c", b"c"),
        ("job-other/d", b"d"),
    ] {
        dest.put_atomic(key, bytes).expect("put");
    }
    let listed = dest.list("job/").expect("list");
    let summary: Vec<(&str, u64)> = listed.iter().map(|o| (o.key.as_str(), o.size)).collect();
    assert_eq!(summary, [("job/a", 1), ("job/a2", 4), ("job/b", 2)]);
    assert!(
        listed.iter().all(|o| o.modified.is_some()),
        "gc and the manifest cache need times: {listed:?}"
    );
    assert_eq!(keys(dest, "job/a"), ["job/a", "job/a2"]);
    assert_eq!(keys(dest, "jobx/"), ["jobx/c"]);
}

fn put_atomic_replaces_an_object_whole(dest: &dyn Destination) {
    dest.put_atomic("job/m.manifest.json", b"first version, longer")
        .expect("put");
    dest.put_atomic("job/m.manifest.json", b"second")
        .expect("overwrite");
    assert_eq!(dest.get("job/m.manifest.json").expect("get"), b"second");
    assert_eq!(keys(dest, "job/"), ["job/m.manifest.json"]);
    assert!(
        dest.list_partial("job/").expect("list_partial").is_empty(),
        "no temporary object left"
    );
}

fn get_at_most_stops_one_byte_past_its_limit(dest: &dyn Destination) {
    let big: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    dest.put_atomic("job/small", b"twelve bytes").expect("put");
    dest.put_atomic("job/big", &big).expect("put");
    assert_eq!(
        dest.get_at_most("job/small", 1024).expect("under"),
        b"twelve bytes"
    );
    assert_eq!(
        dest.get_at_most("job/small", 12).expect("exactly"),
        b"twelve bytes"
    );
    let capped = dest.get_at_most("job/big", 1000).expect("over");
    assert!(
        capped.len() > 1000 && capped.len() < big.len(),
        "a capped read shows that the object is over the cap without reading it whole: {} bytes",
        capped.len()
    );
    assert_eq!(capped[..1001], big[..1001]);
    assert_eq!(
        kind_of(dest.get_at_most("job/missing", 10)),
        Some(StorageKind::NotFound)
    );
}

// ---------------------------------------------------------------------------
// Every kind runs every clause

macro_rules! contract {
    ($($kind:ident),*) => {$(
        mod $kind {
            #[test]
            fn an_upload_is_invisible_until_commit_then_whole() {
                super::an_upload_is_invisible_until_commit_then_whole(&*super::$kind().dest);
            }
            #[test]
            fn temporary_objects_are_listed_only_by_list_partial() {
                super::temporary_objects_are_listed_only_by_list_partial(&*super::$kind().dest);
            }
            #[test]
            fn an_aborted_upload_leaves_nothing() {
                super::an_aborted_upload_leaves_nothing(&*super::$kind().dest);
            }
            #[test]
            fn missing_keys_are_not_found_and_deleting_twice_is_fine() {
                super::missing_keys_are_not_found_and_deleting_twice_is_fine(&*super::$kind().dest);
            }
            #[test]
            fn a_large_object_streams_through_in_odd_chunks() {
                super::a_large_object_streams_through_in_odd_chunks(&*super::$kind().dest);
            }
            #[test]
            fn listing_is_by_prefix_in_key_order_with_sizes_and_times() {
                super::listing_is_by_prefix_in_key_order_with_sizes_and_times(&*super::$kind().dest);
            }
            #[test]
            fn get_at_most_stops_one_byte_past_its_limit() {
                super::get_at_most_stops_one_byte_past_its_limit(&*super::$kind().dest);
            }
            #[test]
            fn put_atomic_replaces_an_object_whole() {
                super::put_atomic_replaces_an_object_whole(&*super::$kind().dest);
            }
        }
    )*};
}

contract!(fs, memory, s3, azure, sftp, webdav, gcs);
