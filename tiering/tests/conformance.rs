//! One suite, every [`RemoteStorage`]: in memory, a local directory, the unreliable wrapper, and
//! S3 through `moto_server` in both addressing styles (started here on a free port; required —
//! `scripts/install-test-deps.sh` installs it).

mod common;

use std::sync::Arc;

use bytes::Bytes;
use strata_tiering::{ObjectStorage, PutCondition, RemoteStorage, TieringError, UnreliableStorage};

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn suite(s: &dyn RemoteStorage, multipart_file_bytes: usize) {
    let what = s.describe();
    // put / get / overwrite
    s.put("p/a/one", Bytes::from_static(b"hello"))
        .await
        .expect("put");
    assert_eq!(
        s.get("p/a/one").await.expect("get"),
        Bytes::from_static(b"hello"),
        "{what}"
    );
    s.put("p/a/one", Bytes::from_static(b"bye"))
        .await
        .expect("overwrite");
    assert_eq!(
        s.get("p/a/one").await.expect("get"),
        Bytes::from_static(b"bye"),
        "{what}"
    );
    // missing objects are NotFound, not retriable
    match s.get("p/a/missing").await {
        Err(e @ TieringError::NotFound { .. }) => assert!(!e.is_retriable()),
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
    // ranges are exact; past the end is an error
    let big = pattern(100_000, 1);
    s.put("p/b/big", Bytes::from(big.clone()))
        .await
        .expect("put");
    let r = s.get_range("p/b/big", 1000..5000).await.expect("range");
    assert_eq!(&r[..], &big[1000..5000], "{what}");
    let r = s
        .get_range("p/b/big", 99_990..100_000)
        .await
        .expect("tail range");
    assert_eq!(&r[..], &big[99_990..], "{what}");
    assert!(
        s.get_range("p/b/big", 99_990..100_010).await.is_err(),
        "{what}: range past the end"
    );
    // list: everything under the prefix, sorted, with sizes; nothing outside it
    s.put("q/outside", Bytes::from_static(b"x"))
        .await
        .expect("put");
    let listed = s.list("p/").await.expect("list");
    let keys: Vec<&str> = listed.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, vec!["p/a/one", "p/b/big"], "{what}");
    assert_eq!(listed[1].size_bytes, 100_000, "{what}");
    assert!(listed[0].last_modified_ms > 0, "{what}");
    // delete is idempotent
    s.delete("p/a/one").await.expect("delete");
    s.delete("p/a/one").await.expect("delete again");
    s.delete("p/never/was").await.expect("delete missing");
    assert!(
        matches!(s.get("p/a/one").await, Err(TieringError::NotFound { .. })),
        "{what}"
    );
    // files: small in one put, large in parts; the CRC is of the bytes sent
    let dir = tempfile::tempdir().expect("tempdir");
    let small = dir.path().join("small");
    std::fs::write(&small, pattern(3000, 2)).expect("write");
    let o = s.put_file("p/f/small", &small).await.expect("put_file");
    assert_eq!((o.size_bytes, o.multipart), (3000, false), "{what}");
    assert_eq!(o.crc32c, crc32c::crc32c(&pattern(3000, 2)));
    let large_data = pattern(multipart_file_bytes, 3);
    let large = dir.path().join("large");
    std::fs::write(&large, &large_data).expect("write");
    let o = s
        .put_file("p/f/large", &large)
        .await
        .expect("put_file large");
    assert!(o.multipart, "{what}: expected a multipart upload");
    assert_eq!(o.size_bytes, multipart_file_bytes as u64);
    assert_eq!(o.crc32c, crc32c::crc32c(&large_data));
    assert_eq!(
        &s.get("p/f/large").await.expect("get large")[..],
        &large_data[..],
        "{what}"
    );
    assert!(s
        .put_file("p/f/none", &dir.path().join("absent"))
        .await
        .is_err());
    // conditional puts: create only when absent, update only the version read
    let created = s
        .put_if("p/c/m", Bytes::from_static(b"v1"), &PutCondition::Absent)
        .await
        .expect("create");
    match s
        .put_if("p/c/m", Bytes::from_static(b"x"), &PutCondition::Absent)
        .await
    {
        Err(e @ TieringError::PreconditionFailed { .. }) => assert!(!e.is_retriable()),
        other => panic!("{what}: create over an object: {other:?}"),
    }
    let (data, read) = s.get_versioned("p/c/m").await.expect("get_versioned");
    assert_eq!(data, Bytes::from_static(b"v1"), "{what}");
    assert_eq!(read.e_tag, created.e_tag, "{what}");
    let updated = s
        .put_if(
            "p/c/m",
            Bytes::from_static(b"v2"),
            &PutCondition::Version(read.clone()),
        )
        .await
        .expect("update the version read");
    assert_ne!(updated, read, "{what}");
    assert!(
        matches!(
            s.put_if(
                "p/c/m",
                Bytes::from_static(b"stale"),
                &PutCondition::Version(read)
            )
            .await,
            Err(TieringError::PreconditionFailed { .. })
        ),
        "{what}: update of a stale version"
    );
    assert_eq!(
        s.get("p/c/m").await.expect("get"),
        Bytes::from_static(b"v2"),
        "{what}"
    );
    for o in s.list("").await.expect("list all") {
        s.delete(&o.key).await.expect("cleanup");
    }
    assert!(s.list("p/").await.expect("list").is_empty(), "{what}");
}

/// A store whose multipart threshold is low enough to exercise parts with a small file. S3
/// wants every part but the last to be at least 5 MiB.
fn small_parts(mut s: ObjectStorage) -> ObjectStorage {
    s.multipart_threshold_bytes = 6 * 1024 * 1024;
    s.part_bytes = 5 * 1024 * 1024;
    s
}

const MULTIPART_FILE_BYTES: usize = 11 * 1024 * 1024 + 17;

#[tokio::test]
async fn memory_store() {
    suite(&small_parts(ObjectStorage::memory()), MULTIPART_FILE_BYTES).await;
}

#[tokio::test]
async fn local_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = small_parts(ObjectStorage::local(&dir.path().join("remote")).expect("local"));
    suite(&s, MULTIPART_FILE_BYTES).await;
}

#[tokio::test]
async fn unreliable_store_fails_each_call_first() {
    let s = UnreliableStorage::new(ObjectStorage::memory(), 1);
    let e = s
        .put("k", Bytes::from_static(b"v"))
        .await
        .expect_err("first attempt fails");
    assert!(e.is_retriable());
    s.put("k", Bytes::from_static(b"v"))
        .await
        .expect("second attempt passes");
    assert!(s.get("k").await.is_err());
    assert_eq!(s.get("k").await.expect("get"), Bytes::from_static(b"v"));
    // Behind a retry, the suite passes as it does on the inner store.
    let s = Arc::new(UnreliableStorage::new(
        small_parts(ObjectStorage::memory()),
        0,
    ));
    suite(s.as_ref(), MULTIPART_FILE_BYTES).await;
}

#[tokio::test]
async fn s3_store_against_moto() {
    let moto = common::MotoServer::start();
    let s = small_parts(moto.storage("conformance", "some/prefix"));
    suite(&s, MULTIPART_FILE_BYTES).await;
    // The prefix is honoured: a second store on the same bucket without it sees nothing left.
    let bare = moto.storage("conformance", "");
    assert!(bare.list("").await.expect("list").is_empty());
}

#[tokio::test]
async fn s3_store_virtual_hosted_against_moto() {
    let moto = common::MotoServer::start();
    let s = small_parts(moto.virtual_hosted_storage("hosted", "some/prefix"));
    suite(&s, MULTIPART_FILE_BYTES).await;
}
