//! Proves the object-store harness (common/objstores.rs): each real server
//! starts, enforces its credentials and stores what it is sent.

mod common;

use common::objstores::{self, http, unique_name};

#[test]
fn s3_seaweedfs_stores_objects_with_signed_requests() {
    let s3 = objstores::s3();
    eprintln!(
        "SeaweedFS S3 at {} ready in {:?}",
        s3.endpoint(),
        s3.started_in
    );
    assert!(s3.endpoint().starts_with("http://127.0.0.1:"));

    // Anonymous requests are refused: the access key is enforced.
    let anonymous = http("GET", s3.port, "/", &[], b"").expect("anonymous request");
    assert_eq!(anonymous.status, 403, "{}", anonymous.text());

    let bucket = unique_name("harness");
    s3.create_bucket(&bucket);
    s3.create_bucket(&bucket); // an existing bucket of ours is fine
    assert_eq!(s3.list_objects(&bucket), Vec::<String>::new());
    s3.put_object(&bucket, "dir/a b+c.txt", b"hello s3");
    s3.put_object(&bucket, "top", b"");
    assert_eq!(s3.list_objects(&bucket), ["dir/a b+c.txt", "top"]);
    assert_eq!(
        s3.get_object(&bucket, "dir/a b+c.txt").as_deref(),
        Some(&b"hello s3"[..])
    );
    assert_eq!(s3.get_object(&bucket, "top").as_deref(), Some(&b""[..]));
    assert_eq!(s3.get_object(&bucket, "missing"), None);
    s3.delete_object(&bucket, "top");
    assert_eq!(s3.list_objects(&bucket), ["dir/a b+c.txt"]);

    // A wrong secret is refused.
    let wrong = objstores::S3Server {
        port: s3.port,
        access_key: s3.access_key.clone(),
        secret_key: "not-the-secret".into(),
        region: s3.region.clone(),
        dir: s3.dir.clone(),
        started_in: s3.started_in,
    };
    let r = wrong
        .request("GET", &format!("/{bucket}"), &[("list-type", "2")], b"")
        .expect("request");
    assert_eq!(r.status, 403, "{}", r.text());
}

#[test]
fn s3_lists_past_one_page_and_many_buckets_work() {
    let s3 = objstores::s3();
    // Every test makes its own bucket: several must fit at once.
    let buckets: Vec<String> = (0..6).map(|_| unique_name("many")).collect();
    for b in &buckets {
        s3.create_bucket(b);
        s3.put_object(b, "x", b"1");
    }
    for b in &buckets {
        assert_eq!(s3.list_objects(b), ["x"]);
    }
    let bucket = &buckets[0];
    for i in 0..1005 {
        s3.put_object(bucket, &format!("k/{i:04}"), b"");
    }
    let keys = s3.list_objects(bucket);
    assert_eq!(keys.len(), 1006);
    assert_eq!(keys[0], "k/0000");
}

#[test]
fn azurite_stores_blobs_with_shared_key() {
    let az = objstores::azurite();
    eprintln!("Azurite at {} ready in {:?}", az.endpoint(), az.started_in);
    assert_eq!(az.account_name, "devstoreaccount1");
    assert!(az.connection_string().contains(&az.endpoint()));

    let anonymous =
        http("GET", az.port, "/devstoreaccount1?comp=list", &[], b"").expect("anonymous request");
    assert_eq!(anonymous.status, 403, "{}", anonymous.text());

    let container = unique_name("harness");
    az.create_container(&container);
    az.create_container(&container); // an existing one is fine
    assert_eq!(az.list_blobs(&container), Vec::<String>::new());
    az.put_blob(&container, "dir/a b&c.txt", b"hello azure");
    az.put_blob(&container, "top", b"x");
    assert_eq!(az.list_blobs(&container), ["dir/a b&c.txt", "top"]);
    assert_eq!(
        az.get_blob(&container, "dir/a b&c.txt").as_deref(),
        Some(&b"hello azure"[..])
    );
    assert_eq!(az.get_blob(&container, "missing"), None);
    az.delete_blob(&container, "top");
    assert_eq!(az.list_blobs(&container), ["dir/a b&c.txt"]);
}

#[test]
fn sftp_sshd_accepts_the_generated_key() {
    let sftp = objstores::sftp();
    eprintln!("sshd at {} ready in {:?}", sftp.url(), sftp.started_in);
    let sub = unique_name("harness");
    std::fs::create_dir(sftp.root.join(&sub)).expect("subfolder");
    std::fs::write(sftp.root.join(&sub).join("seed.txt"), "seed").expect("seed");
    let upload = sftp.dir.join(format!("{sub}-upload.txt"));
    std::fs::write(&upload, "uploaded").expect("upload file");

    // Relative paths start at `root`; absolute ones work too.
    let out = sftp.batch(&format!(
        "ls {sub}\nput {} {sub}/up.txt\nmkdir {}/{sub}/made\n",
        upload.display(),
        sftp.root.display()
    ));
    assert!(out.contains("seed.txt"), "{out}");
    assert_eq!(
        std::fs::read_to_string(sftp.root.join(&sub).join("up.txt")).expect("uploaded"),
        "uploaded"
    );
    assert!(sftp.root.join(&sub).join("made").is_dir());

    let known = std::fs::read_to_string(&sftp.known_hosts).expect("known_hosts");
    assert!(known.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", sftp.port)));
}

#[test]
fn webdav_rclone_serves_its_folder_with_basic_auth() {
    let dav = objstores::webdav();
    eprintln!("WebDAV at {} ready in {:?}", dav.endpoint(), dav.started_in);

    let anonymous = http(
        "PROPFIND",
        dav.port,
        "/",
        &[("Depth".into(), "0".into())],
        b"",
    )
    .expect("anonymous request");
    assert_eq!(anonymous.status, 401);

    let sub = unique_name("harness");
    let r = dav
        .request("MKCOL", &format!("/{sub}"), &[], b"")
        .expect("MKCOL");
    assert_eq!(r.status, 201, "{}", r.text());
    let r = dav
        .request("PUT", &format!("/{sub}/a b.txt"), &[], b"hello dav")
        .expect("PUT");
    assert!(r.is_success(), "{}", r.text());
    assert_eq!(
        std::fs::read(dav.data.join(&sub).join("a b.txt")).expect("on disk"),
        b"hello dav"
    );
    let r = dav
        .request("GET", &format!("/{sub}/a b.txt"), &[], b"")
        .expect("GET");
    assert_eq!(r.body, b"hello dav");

    // A file written straight into the folder shows at once.
    std::fs::write(dav.data.join(&sub).join("direct.txt"), "d").expect("direct");
    let r = dav
        .request("PROPFIND", &format!("/{sub}/"), &[("Depth", "1")], b"")
        .expect("PROPFIND");
    assert_eq!(r.status, 207);
    assert!(r.text().contains("direct.txt"), "{}", r.text());
}

#[test]
fn gcs_fake_server_stores_objects_in_buckets() {
    let gcs = objstores::gcs();
    eprintln!(
        "fake-gcs-server at {} ready in {:?}",
        gcs.endpoint(),
        gcs.started_in
    );
    let bucket = unique_name("harness");
    gcs.create_bucket(&bucket);
    gcs.create_bucket(&bucket); // an existing bucket of ours is fine
    assert_eq!(gcs.list_objects(&bucket), Vec::<String>::new());
    let upload = http(
        "POST",
        gcs.port,
        &format!("/upload/storage/v1/b/{bucket}/o?uploadType=media&name=dir%2Fa.txt"),
        &[("Content-Type".into(), "application/octet-stream".into())],
        b"hello gcs",
    )
    .expect("upload");
    assert!(upload.is_success(), "{} {}", upload.status, upload.text());
    assert_eq!(gcs.list_objects(&bucket), ["dir/a.txt"]);
    let missing = http("GET", gcs.port, "/storage/v1/b/no-such-bucket/o", &[], b"").expect("list");
    assert_eq!(missing.status, 404, "{}", missing.text());
}
