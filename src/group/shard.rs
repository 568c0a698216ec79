//! The task that owns one `__consumer_offsets` partition's groups: it loads them from the log,
//! then takes requests from a bounded channel, decides with the pure [`GroupShard`], appends
//! the decided records (acks=all) and sends the replies once the records are committed.
//!
//! One task per partition rather than a lock: group decisions are sequential per group anyway,
//! timers live naturally in the task's select loop, and the append order in the log is the
//! decision order without holding a lock across the wait for the high watermark.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;
use prometheus::IntCounter;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::records::{encode_batch_as, OffsetsRecord};
use super::state::{
    Decision, GroupConfig, GroupRequest, GroupResponse, GroupShard, GroupSummary, Waiter,
};
use crate::clock::SharedClock;
use crate::model::Offset;
use crate::replication::coordinator_load::{self, CoordinatorLoadError};
use crate::replication::{Partition, PartitionError};

/// Requests queued for one shard at most; beyond this callers get COORDINATOR_NOT_AVAILABLE.
pub const SHARD_QUEUE_DEPTH: usize = 1024;
/// Bytes read per step while loading.
const LOAD_READ_BYTES: usize = 1024 * 1024;
/// How often a shard that changed publishes its [`GroupSummary`]s for the metrics: scrapes read
/// the last published copy instead of queueing behind client requests, and the cost is one
/// copy of the groups' offsets per interval, never work per commit.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(2);

pub struct Command {
    pub request: GroupRequest,
    pub reply: oneshot::Sender<GroupResponse>,
}

/// Where a shard is in its life; shared with the coordinator's map.
pub const LOADING: u8 = 0;
pub const ACTIVE: u8 = 1;
pub const STOPPED: u8 = 2;

#[derive(Clone, Debug)]
pub struct ShardHandle {
    pub tx: mpsc::Sender<Command>,
    pub status: Arc<AtomicU8>,
    pub leader_epoch: i32,
    /// The groups as last published (empty until loaded), at most [`SUMMARY_INTERVAL`] old.
    pub summary: watch::Receiver<Arc<Vec<GroupSummary>>>,
}

impl ShardHandle {
    pub fn status(&self) -> u8 {
        self.status.load(Ordering::Acquire)
    }

    pub fn summary(&self) -> Arc<Vec<GroupSummary>> {
        self.summary.borrow().clone()
    }
}

pub struct ShardSettings {
    pub config: GroupConfig,
    pub commit_timeout: Duration,
    pub retention_check_interval: Duration,
    /// `strata_group_rebalances_total`, counted as decisions complete join phases.
    pub rebalances: IntCounter,
}

/// Starts the task for `partition`; it loads first (status LOADING), then serves (ACTIVE), and
/// marks itself STOPPED when it ends (shutdown, a failed write, lost leadership).
pub fn spawn(
    partition: Arc<Partition>,
    settings: ShardSettings,
    clock: SharedClock,
    shutdown: CancellationToken,
) -> ShardHandle {
    let (tx, rx) = mpsc::channel(SHARD_QUEUE_DEPTH);
    let status = Arc::new(AtomicU8::new(LOADING));
    let leader_epoch = partition.state().leader_epoch.0;
    let (summary_tx, summary) = watch::channel(Arc::new(Vec::new()));
    let handle = ShardHandle {
        tx,
        status: status.clone(),
        leader_epoch,
        summary,
    };
    tokio::spawn(async move {
        let tp = partition.tp.clone();
        run(
            partition,
            settings,
            clock,
            shutdown,
            rx,
            status.clone(),
            summary_tx,
        )
        .await;
        status.store(STOPPED, Ordering::Release);
        tracing::info!(partition = %tp, "group coordinator shard stopped");
    });
    handle
}

/// Reads the partition from its start to the high watermark into a fresh shard.
fn load(
    partition: &Partition,
    config: GroupConfig,
    now_ms: i64,
) -> Result<GroupShard, CoordinatorLoadError> {
    let mut shard = GroupShard::new(config);
    let mut offset = coordinator_load::load_start_offset(partition)?;
    let mut records = 0usize;
    loop {
        let hw = partition.high_watermark();
        if offset >= hw {
            break;
        }
        let info = coordinator_load::read_for_load(partition, offset, LOAD_READ_BYTES)?;
        if info.records.is_empty() {
            break;
        }
        let before = offset;
        let mut bytes = info.records.clone();
        while bytes.len() >= 61 {
            let base = i64::from_be_bytes(bytes[0..8].try_into().unwrap_or_default());
            let len = i32::from_be_bytes(bytes[8..12].try_into().unwrap_or_default());
            if len < 0 || bytes.len() < 12 + len as usize {
                break;
            }
            let last_delta = i32::from_be_bytes(bytes[23..27].try_into().unwrap_or_default());
            let batch = bytes.split_to(12 + len as usize);
            match kafka_protocol::records::RecordBatchDecoder::decode(&mut batch.clone()) {
                Ok(set) => {
                    for r in set.records {
                        if r.control {
                            // A transaction marker: the producer's pending offsets end.
                            if let Some(commit) = control_commit(r.key.as_deref()) {
                                shard.complete_txn_offsets(r.producer_id, commit, now_ms);
                            }
                            continue;
                        }
                        let Some(key) = r.key.as_deref() else {
                            continue;
                        };
                        match OffsetsRecord::decode(key, r.value.as_deref()) {
                            Ok(Some(rec)) if r.transactional => {
                                shard.replay_txn_offset(r.producer_id, r.producer_epoch, rec);
                                records += 1;
                            }
                            Ok(Some(rec)) => {
                                shard.replay(rec, now_ms);
                                records += 1;
                            }
                            Ok(None) => {}
                            Err(e) => {
                                tracing::warn!(partition = %partition.tp, offset = r.offset, error = %e, "skipping undecodable offsets record")
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(partition = %partition.tp, offset = base, error = %e, "skipping undecodable batch")
                }
            }
            offset = Offset(base + last_delta as i64 + 1);
        }
        if offset < info.local_log_start_offset {
            offset = info.local_log_start_offset;
        }
        if offset == before {
            tracing::warn!(partition = %partition.tp, %offset, "no progress loading the offsets partition; stopping the load here");
            break;
        }
    }
    shard.loaded_end = offset.0;
    tracing::info!(partition = %partition.tp, records, groups = shard.groups.len(), "loaded group coordinator shard");
    Ok(shard)
}

async fn run(
    partition: Arc<Partition>,
    settings: ShardSettings,
    clock: SharedClock,
    shutdown: CancellationToken,
    mut rx: mpsc::Receiver<Command>,
    status: Arc<AtomicU8>,
    summary: watch::Sender<Arc<Vec<GroupSummary>>>,
) {
    let p = partition.clone();
    let config = settings.config.clone();
    let now = clock.monotonic_ms();
    let loaded = tokio::task::spawn_blocking(move || load(&p, config, now)).await;
    let mut shard = match loaded {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::error!(partition = %partition.tp, error = %e, "loading group coordinator shard failed");
            return;
        }
        Err(e) => {
            tracing::error!(partition = %partition.tp, error = %e, "loading task failed");
            return;
        }
    };
    summary.send_replace(Arc::new(shard.summary()));
    status.store(ACTIVE, Ordering::Release);
    let mut waiters: HashMap<Waiter, oneshot::Sender<GroupResponse>> = HashMap::new();
    let mut next_waiter: Waiter = 0;
    // Set when a write fails; the shard then stops and a fresh one reloads from the log.
    let (failed_tx, mut failed_rx) = mpsc::channel::<()>(1);
    let mut expiry = tokio::time::interval(settings.retention_check_interval);
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    expiry.tick().await;
    let mut publish = tokio::time::interval(SUMMARY_INTERVAL);
    publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Whether the shard may have changed since its summary was last published.
    let mut changed = false;
    loop {
        let sleep_ms = shard
            .next_deadline_ms()
            .map(|d| (d - clock.monotonic_ms()).clamp(0, 3_600_000) as u64);
        let decision = tokio::select! {
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { break };
                changed = true;
                next_waiter += 1;
                waiters.insert(next_waiter, cmd.reply);
                shard.handle(next_waiter, cmd.request, clock.monotonic_ms())
            }
            () = tokio::time::sleep(Duration::from_millis(sleep_ms.unwrap_or(0))), if sleep_ms.is_some() => {
                changed = true;
                shard.tick(clock.monotonic_ms())
            }
            _ = expiry.tick() => {
                changed = true;
                shard.expire_offsets(clock.monotonic_ms())
            }
            _ = publish.tick() => {
                if std::mem::take(&mut changed) {
                    summary.send_replace(Arc::new(shard.summary()));
                }
                Decision::default()
            }
            _ = failed_rx.recv() => {
                tracing::warn!(partition = %partition.tp, "a write to the offsets topic failed; reloading the shard");
                break;
            }
            () = shutdown.cancelled() => break,
        };
        settings.rebalances.inc_by(decision.rebalances);
        if !execute(
            &partition,
            decision,
            &mut waiters,
            &clock,
            settings.commit_timeout,
            &failed_tx,
        ) {
            break;
        }
        // Waiters whose request was dropped (client gone) need no cleanup beyond this.
        waiters.retain(|_, tx| !tx.is_closed());
    }
}

/// Appends the decision's records, then sends its replies when they are committed. Returns
/// false when the shard must stop (the append was refused).
fn execute(
    partition: &Arc<Partition>,
    decision: Decision,
    waiters: &mut HashMap<Waiter, oneshot::Sender<GroupResponse>>,
    clock: &SharedClock,
    commit_timeout: Duration,
    failed: &mpsc::Sender<()>,
) -> bool {
    let replies: Vec<(oneshot::Sender<GroupResponse>, GroupResponse)> = decision
        .replies
        .into_iter()
        .filter_map(|(w, r)| waiters.remove(&w).map(|tx| (tx, r)))
        .collect();
    if decision.records.is_empty() {
        for (tx, r) in replies {
            let _ = tx.send(r);
        }
        return true;
    }
    let verification = decision.verification;
    let producer = decision
        .producer
        .map(|(id, epoch)| (id, epoch, next_sequence(partition, id, epoch)));
    let batch: Bytes = match encode_batch_as(&decision.records, clock.now_ms(), producer) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(partition = %partition.tp, error = %e, "encoding offsets records failed");
            fail_all(replies, E::UnknownServerError.code());
            return false;
        }
    };
    match partition.append_as_leader_with(batch, -1, verification) {
        Ok((info, epoch)) => {
            let partition = partition.clone();
            let failed = failed.clone();
            tokio::spawn(async move {
                let end = info.last_offset.next();
                match tokio::time::timeout(commit_timeout, partition.wait_committed(end, -1, epoch))
                    .await
                {
                    Ok(Ok(())) => {
                        for (tx, r) in replies {
                            let _ = tx.send(r);
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::error!(partition = %partition.tp, error = %e, "offsets write not committed");
                        fail_all(replies, write_error_code(&e));
                        let _ = failed.try_send(());
                    }
                    Err(_) => {
                        fail_all(replies, E::RequestTimedOut.code());
                        let _ = failed.try_send(());
                    }
                }
            });
            true
        }
        Err(e) => {
            tracing::warn!(partition = %partition.tp, error = %e, "offsets append refused");
            fail_all(replies, write_error_code(&e));
            false
        }
    }
}

fn fail_all(replies: Vec<(oneshot::Sender<GroupResponse>, GroupResponse)>, code: i16) {
    for (tx, r) in replies {
        let _ = tx.send(r.into_error(code));
    }
}

/// Kafka's mapping of offsets-topic write errors to what group clients understand.
fn write_error_code(e: &PartitionError) -> i16 {
    match e {
        PartitionError::NotLeader { .. } | PartitionError::FencedLeaderEpoch { .. } => {
            E::NotCoordinator.code()
        }
        PartitionError::Log(crate::log::LogError::BatchTooLarge { .. }) => {
            E::InvalidCommitOffsetSize.code()
        }
        // The transaction ended between its verification and the write (KIP-890).
        PartitionError::Log(crate::log::LogError::TransactionNotVerified { .. }) => {
            E::InvalidTxnState.code()
        }
        _ => E::CoordinatorNotAvailable.code(),
    }
}

/// The sequence a transactional offsets batch of `producer_id` continues from: the partition's
/// producer state goes on from its last sequence within an epoch, and from 0 in a new one.
fn next_sequence(partition: &Partition, producer_id: i64, producer_epoch: i16) -> i32 {
    partition
        .log()
        .producer_states()
        .into_iter()
        .find(|s| s.producer_id.0 == producer_id && s.producer_epoch.0 == producer_epoch)
        .map_or(0, |s| s.last_sequence.wrapping_add(1))
}

/// Whether a control record's key (`version: int16, type: int16`) is a commit (1) or an abort
/// (0) marker; None for another control type.
fn control_commit(key: Option<&[u8]>) -> Option<bool> {
    let key = key?;
    if key.len() < 4 {
        return None;
    }
    match i16::from_be_bytes([key[2], key[3]]) {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}
