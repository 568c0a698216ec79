//! The remote segment lifecycle against stores that fail: upload (data first, manifest last),
//! restart (the manifest read back), retention, orphan sweep, deletion of everything.

mod common;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use strata_tiering::keys::parse_segment_id;
use strata_tiering::{
    ObjectStorage, PartitionPath, RemotePartition, RemoteStorage, RetryPolicy, SealedSegment,
    SegmentFileKind, TieringError, UnreliableStorage,
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
        txn_index_path: Some(f("txnindex", 34)),
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
        assert_eq!(s.txn_index_bytes, 34);
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
    assert_eq!(
        left.len(),
        7,
        "the last segment's six objects and the manifest: {left:?}"
    );

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

/// Two brokers that both act as leader of one partition: neither overwrites the other's
/// manifest. The loser of each race fails with `ManifestConflict`, adopts the stored manifest
/// and continues from it.
async fn two_writers_race_on_one_manifest(store: Arc<dyn RemoteStorage>) {
    let what = store.describe();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = PartitionPath::new("race", Uuid::new_v4(), 0);
    let cancel = CancellationToken::new();
    let a = RemotePartition::new(path.clone(), store.clone(), fast_retry());
    let b = RemotePartition::new(path.clone(), store.clone(), fast_retry());
    a.load(&cancel).await.expect("load a");
    b.load(&cancel).await.expect("load b");

    // Both saw no manifest; A creates it first, B's create must not replace it.
    let first = sealed(dir.path(), 0, 9, 1000);
    let won = a.upload(&first, 1, 0, &cancel).await.expect("a uploads");
    match b.upload(&first, 2, 0, &cancel).await {
        Err(TieringError::ManifestConflict { .. }) => {}
        other => panic!("{what}: b's create over a's manifest: {other:?}"),
    }
    let stored = || async {
        let fresh = RemotePartition::new(path.clone(), store.clone(), fast_retry());
        fresh.load(&cancel).await.expect("reload")
    };
    let m = stored().await;
    assert_eq!(m.segments.len(), 1, "{what}");
    assert_eq!(m.segments[0].segment_id, won.meta.segment_id, "{what}");
    // The loser adopted the stored manifest and continues from it.
    assert_eq!(b.manifest().as_deref(), Some(&*m), "{what}");
    let second = sealed(dir.path(), 10, 19, 2000);
    b.upload(&second, 2, 0, &cancel).await.expect("b continues");
    // Now A is the stale one: its update is refused too.
    match a.delete_records(5, &cancel).await {
        Err(TieringError::ManifestConflict { .. }) => {}
        other => panic!("{what}: a's stale update: {other:?}"),
    }
    let m = stored().await;
    assert_eq!(m.segments.len(), 2, "{what}");
    assert_eq!(m.log_start_offset, 0, "{what}");

    // A true race: both up to date, both write at once; exactly one wins.
    a.reload(&cancel).await.expect("reload a");
    let third = sealed(dir.path(), 20, 29, 3000);
    let (ra, rb) = tokio::join!(
        a.upload(&third, 3, 0, &cancel),
        b.upload(&third, 3, 0, &cancel)
    );
    let conflicts = [&ra, &rb]
        .iter()
        .filter(|r| matches!(r, Err(TieringError::ManifestConflict { .. })))
        .count();
    assert_eq!(conflicts, 1, "{what}: {ra:?} {rb:?}");
    let winner = ra.or(rb).expect("one upload wins");
    let m = stored().await;
    assert_eq!(m.segments.len(), 3, "{what}");
    assert_eq!(m.segments[2].segment_id, winner.meta.segment_id, "{what}");
    assert_eq!(a.manifest().as_deref(), Some(&*m), "{what}");
    assert_eq!(b.manifest().as_deref(), Some(&*m), "{what}");
}

#[tokio::test]
async fn racing_writers_in_memory() {
    two_writers_race_on_one_manifest(Arc::new(ObjectStorage::memory())).await;
}

#[tokio::test]
async fn racing_writers_on_a_local_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = ObjectStorage::local(&dir.path().join("remote")).expect("local");
    two_writers_race_on_one_manifest(Arc::new(s)).await;
}

#[tokio::test]
async fn racing_writers_on_s3() {
    let moto = common::MotoServer::start();
    two_writers_race_on_one_manifest(Arc::new(moto.storage("race", "p"))).await;
}

/// Remote compaction's store steps through a store that fails each call twice: a rewritten
/// segment's objects go up unnamed, the swap names it and keeps the replaced segments (not
/// served) until their time, a restart reads the swapped manifest back, a swap whose old
/// segments are gone changes nothing, and a download returns the object's bytes.
#[tokio::test]
async fn compaction_swap_through_failures_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inner = ObjectStorage::memory();
    let store: Arc<dyn RemoteStorage> = Arc::new(UnreliableStorage::new(inner.clone(), 2));
    let path = PartitionPath::new("t", Uuid::new_v4(), 0);
    let cancel = CancellationToken::new();
    let p = RemotePartition::new(path.clone(), store.clone(), fast_retry());
    p.load(&cancel).await.expect("load");
    let (a, b) = (
        sealed(dir.path(), 0, 9, 1000),
        sealed(dir.path(), 10, 19, 2000),
    );
    let a = p.upload(&a, 1, 0, &cancel).await.expect("upload a").meta;
    let b = p.upload(&b, 1, 0, &cancel).await.expect("upload b").meta;

    // The download reads back what went up.
    let got = dir.path().join("downloaded");
    p.download(&a, SegmentFileKind::Log, a.segment_bytes, &got, &cancel)
        .await
        .expect("download");
    assert_eq!(std::fs::read(&got).expect("read"), vec![0u8; 1000]);

    // The rewrite of [0, 19]: its objects exist before any manifest names them.
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let mut merged = sealed(&out, 0, 19, 2000);
    merged.snapshot_path = None;
    merged.txn_index_path = None;
    let (_, new) = p
        .upload_rewritten(&merged, 2, 0, &cancel)
        .await
        .expect("upload rewritten");
    assert!(inner
        .get(&path.segment_key(&new, SegmentFileKind::Log))
        .await
        .is_ok());
    assert!(p
        .manifest()
        .expect("manifest")
        .segments
        .iter()
        .all(|s| s.segment_id != new.segment_id));

    let swapped = p
        .swap_compacted(
            &[a.segment_id, b.segment_id],
            vec![new.clone()],
            500,
            19,
            &cancel,
        )
        .await
        .expect("swap")
        .expect("the old segments were live");
    assert_eq!(swapped.compacted_end_offset, Some(19));
    assert_eq!(swapped.start_offset(), Some(0));
    assert_eq!(swapped.end_offset(), Some(19));
    assert_eq!(
        swapped.segment_for(12).map(|s| s.segment_id),
        Some(new.segment_id)
    );
    assert_eq!(
        swapped.segments.len(),
        3,
        "the replaced entries stay, not served"
    );

    // A restart reads the swap back.
    let again = RemotePartition::new(path.clone(), store.clone(), fast_retry());
    assert_eq!(*again.load(&cancel).await.expect("reload"), *swapped);

    // Retention deletes the replaced objects only from their time on.
    assert_eq!(
        p.enforce_retention(499, -1, -1, 0, &cancel)
            .await
            .expect("early"),
        (0, 0)
    );
    assert_eq!(
        p.enforce_retention(500, -1, -1, 0, &cancel)
            .await
            .expect("due")
            .0,
        2
    );
    assert!(inner
        .get(&path.segment_key(&a, SegmentFileKind::Log))
        .await
        .is_err());
    let m = p.manifest().expect("manifest");
    assert_eq!((m.log_start_offset, m.segments.len()), (0, 1));

    // A swap of segments that are no longer there is refused without a write.
    let none = p
        .swap_compacted(&[a.segment_id], vec![new.clone()], 0, 19, &cancel)
        .await
        .expect("swap");
    assert!(none.is_none());
    assert_eq!(*p.manifest().expect("manifest"), *m);
}
