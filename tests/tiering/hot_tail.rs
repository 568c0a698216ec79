//! A new replica of a tiered partition at the replication level, without a network: a leader
//! `Partition` uploads to a local-directory store; followers with their own remote log manager
//! (as on another broker, sharing only the bucket) start after the remote end — an empty one
//! before its first fetch, one whose log ends below the leader's local log start on
//! OFFSET_MOVED_TO_TIERED_STORAGE — with the leader epochs and the producer state of the
//! remote log, copy only the leader's tail, serve every record from offset 0 (the history
//! from the store, which they never uploaded to), and, leading later, upload from their local
//! log start on without re-uploading or deleting what is in the store.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::records::Compression;
use prometheus::Registry;
use strata::log::remote::{
    RemoteLogManager, RemoteLogManagerConfig, TieredPartition, TieredPartitions, TieringMetrics,
};
use strata::log::{FlushPolicy, LogConfig, LogError, UnifiedLog};
use strata::model::{BrokerId, LeaderEpoch, Offset, ProducerId, TopicId, TopicPartition};
use strata::replication::fetcher::apply_fetched;
use strata::replication::hot_tail::{start_from_remote, Trigger};
use strata::replication::{Partition, PartitionError, PartitionState};
use strata_tiering::{ObjectStorage, RemoteStorage};
use tokio_util::sync::CancellationToken;

use crate::common::{decode, idempotent_batch};

const PRODUCER: i64 = 77;
const BATCH_RECORDS: i64 = 10;

struct Replicas(Vec<Arc<Partition>>);

impl TieredPartitions for Replicas {
    fn tiered_partitions(&self) -> Vec<Arc<dyn TieredPartition>> {
        self.0
            .iter()
            .map(|p| p.clone() as Arc<dyn TieredPartition>)
            .collect()
    }
}

/// One broker's view: its own remote log manager (cache, manifest copies) over the shared
/// bucket.
fn manager(store: &Arc<dyn RemoteStorage>, dir: &std::path::Path) -> Arc<RemoteLogManager> {
    RemoteLogManager::new(
        store.clone(),
        dir.join("remote-cache"),
        RemoteLogManagerConfig {
            task_interval_ms: 10,
            upload_concurrency: 2,
            orphan_grace_ms: 60_000,
            orphan_sweep_interval_ms: 3_600_000,
            fetch_max_bytes: 1 << 20,
            cache_bytes: 16 << 20,
            cache_chunk_bytes: 64 << 10,
            cache_memory_bytes: 1 << 20,
            readahead_chunks: 1,
            readahead_max_chunks: 4,
            fetch_concurrency: 2,
            fetch_max_bytes_per_second: 0,
            compaction_interval_ms: 300_000,
        },
        strata::clock::system(),
        TieringMetrics::new(&Registry::new()),
        CancellationToken::new(),
    )
    .expect("remote log manager")
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        remote_storage_enable: true,
        local_retention_bytes: 8192,
        retention_ms: -1,
        flush_policy: FlushPolicy::Interval {
            messages: u64::MAX,
            ms: u64::MAX,
        },
        ..LogConfig::default()
    }
}

fn value_for(offset: i64) -> String {
    format!(
        "hot-{offset:06}-{}",
        "y".repeat(60 + (offset % 17) as usize)
    )
}

fn state(leader: i32, epoch: i32, replicas: &[i32], isr: &[i32]) -> PartitionState {
    PartitionState {
        leader: BrokerId(leader),
        leader_epoch: LeaderEpoch(epoch),
        replicas: replicas.iter().map(|&b| BrokerId(b)).collect(),
        isr: isr.iter().map(|&b| BrokerId(b)).collect(),
        partition_epoch: 0,
    }
}

/// A replica on broker `id` with its own log directory, paired with `mgr`'s remote part.
fn replica(
    dir: &std::path::Path,
    mgr: &Arc<RemoteLogManager>,
    tp: &TopicPartition,
    topic_id: TopicId,
    id: i32,
    st: PartitionState,
) -> Arc<Partition> {
    let log = UnifiedLog::open(
        dir.join(format!("broker-{id}")).join("hot-0"),
        config(),
        strata::clock::system(),
    )
    .expect("open log");
    let remote = mgr.attach(tp, topic_id, &log);
    Arc::new(
        Partition::new(
            tp.clone(),
            topic_id,
            log,
            BrokerId(id),
            st,
            1,
            strata::clock::system(),
        )
        .with_remote_log(remote),
    )
}

/// Appends `batches` batches of the idempotent producer from `first_offset`; returns the
/// bytes appended.
fn produce(p: &Partition, first_offset: i64, batches: i64) -> u64 {
    let mut bytes = 0;
    for b in 0..batches {
        let base = first_offset + b * BATCH_RECORDS;
        let records: Vec<_> = (base..base + BATCH_RECORDS)
            .map(|o| (None, Some(value_for(o)), vec![]))
            .collect();
        let batch = idempotent_batch(&records, Compression::None, PRODUCER, 0, base as i32);
        bytes += batch.len() as u64;
        let (info, _) = p.append_as_leader(batch, 1).expect("append");
        assert_eq!(info.first_offset, Offset(base));
    }
    bytes
}

/// Runs `mgr`'s rounds until `done` (uploads, local retention and manifest reloads run on
/// tasks of their own).
async fn rounds_until(
    mgr: &Arc<RemoteLogManager>,
    replicas: &Replicas,
    what: &str,
    done: impl Fn() -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        mgr.run_once(replicas);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Copies from `leader` until `follower` has its whole log; returns the record bytes fetched.
fn copy_tail(leader: &Partition, follower: &Partition, id: i32) -> u64 {
    let mut fetched = 0;
    while follower.log().log_end_offset() < leader.log().log_end_offset() {
        let f = leader
            .fetch_for_follower(
                BrokerId(id),
                follower.log().log_end_offset(),
                leader.state().leader_epoch,
                follower.log().latest_epoch(),
                64 << 10,
            )
            .expect("fetch within the leader's local log");
        assert_eq!(
            f.diverging, None,
            "the restored epochs agree with the leader's"
        );
        fetched += f.records.len() as u64;
        follower
            .append_as_follower(f.records, f.high_watermark)
            .expect("append as follower");
    }
    fetched
}

/// Reads `[0, end)` through the replica's whole log and checks every record.
async fn read_all_checked(p: &Partition, end: i64) {
    let mut next = 0;
    while next < end {
        let read = p
            .log_view()
            .read(Offset(next), 16 << 10, Offset(end), true)
            .await
            .expect("read");
        assert!(!read.records.is_empty(), "nothing read at {next}");
        for r in decode(read.records) {
            if r.offset < next {
                continue;
            }
            assert_eq!(r.offset, next);
            assert_eq!(r.value, Some(Bytes::from(value_for(next))), "offset {next}");
            next += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_replicas_of_a_tiered_partition_copy_only_the_tail_and_keep_epochs_and_producers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn RemoteStorage> =
        Arc::new(ObjectStorage::local(&dir.path().join("bucket")).expect("store"));
    let tp = TopicPartition::new("hot", 0);
    let topic_id = TopicId::random();
    let led = state(1, 3, &[1, 2, 3], &[1]);

    // The leader: 200 batches over ~50 segments, all sealed ones uploaded, its local log
    // trimmed to the last few by local retention.
    let leader_mgr = manager(&store, &dir.path().join("broker-1"));
    let leader = replica(dir.path(), &leader_mgr, &tp, topic_id, 1, led.clone());
    let total_bytes = produce(&leader, 0, 200);
    let end = leader.log().log_end_offset();
    assert_eq!(leader.high_watermark(), end);
    let on_leader = Replicas(vec![leader.clone()]);
    let remote_end = || {
        leader_mgr
            .manifest(&tp)
            .and_then(|m| m.end_offset())
            .unwrap_or(-1)
    };
    rounds_until(
        &leader_mgr,
        &on_leader,
        "uploads and local retention",
        || {
            let sealed_end = leader
                .log()
                .sealed_segments()
                .last()
                .map(|s| s.last_offset.0);
            sealed_end.is_some_and(|e| remote_end() == e)
                && leader.log().local_log_start_offset() > Offset(0)
        },
    )
    .await;
    let remote_end = remote_end();
    let leader_local_start = leader.log().local_log_start_offset();
    assert!(leader_local_start <= Offset(remote_end + 1));

    // An empty new replica on broker 2 starts after the remote end, before any fetch.
    let f2_mgr = manager(&store, &dir.path().join("broker-2"));
    let f2 = replica(dir.path(), &f2_mgr, &tp, topic_id, 2, led.clone());
    assert!(matches!(
        start_from_remote(&f2, Trigger::EmptyLog).await,
        Ok(true)
    ));
    let start = Offset(remote_end + 1);
    assert_eq!(f2.log().local_log_start_offset(), start);
    assert_eq!(f2.log().log_end_offset(), start);
    assert_eq!(f2.high_watermark(), start);
    assert_eq!(
        f2.log_view().log_start_offset(),
        Offset(0),
        "the whole log starts in the store"
    );
    assert_eq!(f2.log().epoch_entries(), vec![(LeaderEpoch(3), Offset(0))]);
    let producer = f2
        .log()
        .producer_state(ProducerId(PRODUCER))
        .expect("the producer, from the remote producer snapshot");
    assert_eq!(producer.last_offset, Offset(remote_end));
    assert_eq!(producer.last_sequence as i64, remote_end);
    // Asked again (a new leader epoch, a restart), it keeps what it has.
    assert!(matches!(
        start_from_remote(&f2, Trigger::EmptyLog).await,
        Ok(false)
    ));

    // It copies the leader's tail only, then serves every record from offset 0.
    let fetched = copy_tail(&leader, &f2, 2);
    assert!(
        fetched > 0 && fetched * 20 < total_bytes,
        "fetched {fetched} of {total_bytes}"
    );
    assert_eq!(f2.log().log_end_offset(), end);
    assert_eq!(f2.high_watermark(), end);
    read_all_checked(&f2, end.0).await;

    // Broker 3 held the first batch only, far below the leader's local log start: the leader
    // cannot serve it, says OFFSET_MOVED_TO_TIERED_STORAGE, and it too starts after the
    // remote end with the remote epochs and producers.
    let f3_mgr = manager(&store, &dir.path().join("broker-3"));
    let f3 = replica(dir.path(), &f3_mgr, &tp, topic_id, 3, led.clone());
    let first = leader
        .log_view()
        .read(Offset(0), 1, end, true)
        .await
        .expect("the first batch, from the store");
    f3.append_as_follower(first.records, Offset(BATCH_RECORDS))
        .expect("append");
    let refused = leader.fetch_for_follower(
        BrokerId(3),
        f3.log().log_end_offset(),
        LeaderEpoch(3),
        f3.log().latest_epoch(),
        64 << 10,
    );
    assert!(
        matches!(
            refused,
            Err(PartitionError::Log(LogError::OffsetOutOfRange { .. }))
        ),
        "{refused:?}"
    );
    let moved = PartitionData::default()
        .with_error_code(ResponseError::OffsetMovedToTieredStorage.code())
        .with_high_watermark(end.0)
        .with_log_start_offset(0);
    apply_fetched(&f3, &moved)
        .await
        .expect("start after the remote end");
    assert_eq!(f3.log().local_log_start_offset(), start);
    assert_eq!(f3.log().epoch_entries(), vec![(LeaderEpoch(3), Offset(0))]);
    assert_eq!(
        f3.log()
            .producer_state(ProducerId(PRODUCER))
            .map(|p| p.last_offset),
        Some(Offset(remote_end))
    );
    let fetched3 = copy_tail(&leader, &f3, 3);
    assert!(
        fetched3 * 20 < total_bytes,
        "fetched {fetched3} of {total_bytes}"
    );

    // Broker 2 leads now: the producer carries on (its next sequence is accepted) and broker 2
    // uploads from its local log start on; the segments in the store stay as they were.
    let before: Vec<_> = f2_mgr
        .manifest(&tp)
        .expect("manifest")
        .segments
        .iter()
        .map(|s| (s.segment_id, s.base_offset, s.end_offset))
        .collect();
    f2.update_state(state(2, 4, &[2], &[2]), 1);
    produce(&f2, end.0, 40);
    let new_end = f2.log().log_end_offset();
    let on_f2 = Replicas(vec![f2.clone()]);
    rounds_until(&f2_mgr, &on_f2, "broker 2's uploads", || {
        let sealed_end = f2.log().sealed_segments().last().map(|s| s.last_offset.0);
        let m = f2_mgr.manifest(&tp).and_then(|m| m.end_offset());
        sealed_end.is_some_and(|e| e > end.0 && m == Some(e))
    })
    .await;
    let after = f2_mgr.manifest(&tp).expect("manifest");
    let segs: Vec<_> = after
        .segments
        .iter()
        .map(|s| (s.segment_id, s.base_offset, s.end_offset))
        .collect();
    assert_eq!(
        segs[..before.len()],
        before[..],
        "nothing re-uploaded or deleted"
    );
    assert_eq!(
        segs[before.len()].1,
        remote_end + 1,
        "uploads go on from the local log start"
    );
    for w in segs.windows(2) {
        assert_eq!(w[1].1, w[0].2 + 1, "one contiguous run: {segs:?}");
    }
    assert_eq!(after.start_offset(), Some(0));
    read_all_checked(&f2, new_end.0).await;
}
