//! The bucket is addressed as configured against a real S3-compatible server (`moto_server`):
//! in the path (`http://host/bucket/key`, the default with a custom endpoint) and in the host
//! name (`http://bucket.host/key`); objects land under the configured prefix of the configured
//! bucket. A bucket that does not exist is reported in one line naming it and the endpoint.

mod common;

use bytes::Bytes;
use strata_tiering::{probe_store, ProbePolicy, RemoteStorage, StoreProbeError};

/// A store at `s3://{bucket}/c1/x`: before path style became the default with a custom
/// endpoint, `c1` was taken as the bucket.
async fn round_trip_under_the_prefix(moto: &common::MotoServer, s: &dyn RemoteStorage) {
    s.put("0/manifest.json", Bytes::from_static(b"{}"))
        .await
        .expect("put");
    assert_eq!(
        s.get("0/manifest.json").await.expect("get"),
        Bytes::from_static(b"{}")
    );
    // Seen by a path-style store on the same bucket and prefix: the object is where the
    // configuration says, not in a bucket named after the prefix.
    let check = moto.storage_without_creating("addressed", "c1/x");
    let keys: Vec<String> = check
        .list("")
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, vec!["0/manifest.json".to_string()]);
    s.delete("0/manifest.json").await.expect("delete");
}

#[tokio::test]
async fn path_style_is_the_default_with_an_endpoint() {
    let moto = common::MotoServer::start();
    let s = moto.storage("addressed", "c1/x");
    round_trip_under_the_prefix(&moto, &s).await;
    probe_store(&s, s.location(), &ProbePolicy::default())
        .await
        .expect("the bucket passes the probe");
}

#[tokio::test]
async fn virtual_hosted_puts_the_bucket_in_the_host_name() {
    let moto = common::MotoServer::start();
    let s = moto.virtual_hosted_storage("addressed", "c1/x");
    round_trip_under_the_prefix(&moto, &s).await;
    probe_store(&s, s.location(), &ProbePolicy::default())
        .await
        .expect("the bucket passes the probe");
}

#[tokio::test]
async fn a_missing_bucket_is_named_with_its_endpoint_in_one_line() {
    let moto = common::MotoServer::start();
    let s = moto.storage_without_creating("no-such-bucket", "c1");
    let e = probe_store(&s, s.location(), &ProbePolicy::default())
        .await
        .expect_err("no bucket");
    assert!(matches!(e, StoreProbeError::NoSuchBucket { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "tiered storage: bucket \"no-such-bucket\" at {} does not exist (NoSuchBucket)",
            moto.endpoint()
        )
    );
    // Reads say so too, rather than "no manifest yet".
    let read = s.get("t-0/0/manifest.json").await.expect_err("no bucket");
    assert!(
        matches!(read, strata_tiering::TieringError::Bucket { ref code, .. } if code == "NoSuchBucket"),
        "{read:?}"
    );
}
