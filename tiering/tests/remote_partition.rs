//! The remote segment lifecycle against stores that fail: upload (data first, manifest last),
//! restart (the manifest read back), retention, orphan sweep, deletion of everything.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use strata_tiering::keys::parse_segment_id;
use strata_tiering::{
    ObjectStorage, PartitionPath, RemotePartition, RemoteStorage, RetryPolicy, SealedSegment,
    SegmentFileKind, UnreliableStorage,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn sealed(dir: &Path, base: i64, end: i64, ts: i64) -> SealedSegment {
    let f = |ext: &str, n: usize| {
        let p = dir.join(format!("{base:020}.{ext}"));
        std::fs::write(&p, vec![base as u8; n]).expect("write");
        p
    };
    SealedSegment {
        base_offset: base,
        end_offset: end,
        max_timestamp_ms: ts,
        size_bytes: 1000,
        log_path: f("log", 1000),
        index_path: f("index", 16),
        time_index_path: f("timeindex", 24),
        snapshot_path: Some(f("snapshot", 10)),
        leader_epochs: vec![(0, base)],
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        backoff: strata_tiering::Backoff {
            base: std::time::Duration::from_millis(1),
            max: std::time::Duration::from_millis(5),
        },
        max_attempts: 4,
    }
}

#[tokio::test]
async fn upload_restart_retention_and_delete_through_failures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inner = ObjectStorage::memory();
    // Every distinct call fails twice before it succeeds.
    let store: Arc<dyn RemoteStorage> = Arc::new(UnreliableStorage::new(inner.clone(), 2));
    let path = PartitionPath::new("t", Uuid::new_v4(), 0);
    let cancel = CancellationToken::new();
    let p = RemotePartition::new(path.clone(), store.clone(), fast_retry());
    let m = p.load(&cancel).await.expect("load");
    assert!(m.segments.is_empty());

    let segs = [
        sealed(dir.path(), 0, 9, 1000),
        sealed(dir.path(), 10, 19, 2000),
        sealed(dir.path(), 20, 29, 3000),
    ];
    for s in &segs {
        let out = p.upload(s, 5, 0, &cancel).await.expect("upload");
        assert_eq!(out.meta.base_offset, s.base_offset);
    }
    // Repeating an upload is a no-op.
    let again = p.upload(&segs[1], 5, 0, &cancel).await.expect("repeat");
    assert_eq!(again.bytes, 0);
    let m = p.manifest().expect("manifest");
    assert_eq!(m.end_offset(), Some(29));
    assert_eq!(m.segments.len(), 3);
    for s in &m.segments {
        for kind in SegmentFileKind::ALL {
            let key = path.segment_key(s, kind);
            assert!(inner.get(&key).await.is_ok(), "{key} missing");
        }
        assert!(path
            .segment_key(s, SegmentFileKind::Log)
            .contains(&format!("{:020}-5-", s.base_offset)));
    }

    // Restart: a new owner reads the same manifest back.
    let p2 = RemotePartition::new(path.clone(), store.clone(), fast_retry());
    assert_eq!(*p2.load(&cancel).await.expect("reload"), *m);

    // Retention by time drops the oldest two, manifest first.
    let (n, bytes) = p2
        .enforce_retention(3500, 1000, -1, 0, &cancel)
        .await
        .expect("retention");
    assert_eq!((n, bytes), (2, 2000));
    let m = p2.manifest().expect("manifest");
    assert_eq!(m.log_start_offset, 20);
    assert_eq!(m.segments.len(), 1);
    let left = inner.list(&path.prefix()).await.expect("list");
    assert_eq!(left.len(), 6, "{left:?}");

    // DeleteRecords into the last segment moves the start, not the data.
    p2.delete_records(25, &cancel)
        .await
        .expect("delete records");
    assert_eq!(p2.manifest().expect("m").start_offset(), Some(25));

    // A crash between data and manifest: orphans, swept once old enough.
    let orphan = strata_tiering::keys::segment_key(
        &path.prefix(),
        30,
        5,
        Uuid::new_v4(),
        SegmentFileKind::Log,
    );
    inner
        .put(&orphan, Bytes::from_static(b"torn"))
        .await
        .expect("put");
    let now = chrono_now_ms();
    assert_eq!(
        p2.sweep_orphans(now, 60_000, &cancel).await.expect("sweep"),
        0
    );
    assert_eq!(
        p2.sweep_orphans(now + 120_000, 60_000, &cancel)
            .await
            .expect("sweep"),
        1
    );
    assert!(inner
        .list(&path.prefix())
        .await
        .expect("list")
        .iter()
        .all(|o| parse_segment_id(&o.key) != parse_segment_id(&orphan)));

    // Topic deletion removes everything, the manifest last.
    p2.delete_all(&cancel).await.expect("delete all");
    assert!(inner.list(&path.prefix()).await.expect("list").is_empty());
}

#[tokio::test]
async fn a_store_that_keeps_failing_fails_the_step_and_publishes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inner = ObjectStorage::memory();
    let store: Arc<dyn RemoteStorage> = Arc::new(UnreliableStorage::new(inner.clone(), 100));
    let path = PartitionPath::new("t", Uuid::new_v4(), 1);
    let cancel = CancellationToken::new();
    let ok = RemotePartition::new(path.clone(), Arc::new(inner.clone()), fast_retry());
    ok.load(&cancel).await.expect("load");
    let p = RemotePartition::new(path.clone(), store, fast_retry());
    assert!(p.load(&cancel).await.is_err());
    let s = sealed(dir.path(), 0, 9, 0);
    // Loaded through the reliable handle, uploading through the failing one.
    let p = RemotePartition::new(
        path.clone(),
        Arc::new(UnreliableStorage::new(inner.clone(), 100)),
        fast_retry(),
    );
    let _ = p.load(&cancel).await;
    assert!(p.manifest().is_none());
    let err = ok.upload(&s, 0, 0, &cancel).await;
    assert!(err.is_ok());
    assert!(inner.get(&path.manifest_key()).await.is_ok());
    let cancelled = CancellationToken::new();
    cancelled.cancel();
    let p3 = RemotePartition::new(
        path.clone(),
        Arc::new(UnreliableStorage::new(inner.clone(), 100)),
        fast_retry(),
    );
    assert!(matches!(
        p3.load(&cancelled).await,
        Err(strata_tiering::TieringError::ShuttingDown)
    ));
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
