//! The task that owns one `__transaction_state` partition's transactional ids: it loads them
//! from the log, then takes requests from a bounded channel, decides with the pure
//! [`TxnShard`], appends the decided records (acks=all), sends the replies once they are
//! committed, and only then starts the decided marker jobs, whose completion comes back through
//! the same channel. The same shape as `group::shard`, for the same reasons: decisions per
//! transactional id are sequential, timers live in the select loop, and the log order is the
//! decision order.

use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::markers::{write_markers, MarkerChannel, MarkerOutcome};
use super::metrics::TxnMetrics;
use super::records::{encode_batch, TxnLogRecord};
use super::state::{Decision, TxnConfig, TxnRequest, TxnResponse, TxnShard, Waiter};
use crate::clock::SharedClock;
use crate::model::Offset;
use crate::replication::coordinator_load::{self, CoordinatorLoadError};
use crate::replication::{Partition, PartitionError};

/// Requests queued for one shard at most; beyond this callers get COORDINATOR_NOT_AVAILABLE.
pub const SHARD_QUEUE_DEPTH: usize = 1024;
const LOAD_READ_BYTES: usize = 1024 * 1024;
/// How often the shard publishes its open-transaction summary for the metrics.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(2);

pub const LOADING: u8 = 0;
pub const ACTIVE: u8 = 1;
pub const STOPPED: u8 = 2;

/// Why a queued request got no decision; mapped to Kafka codes in `handlers::errors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnWriteError {
    #[error("this broker no longer leads the transaction state partition")]
    NotCoordinator,
    #[error("the transaction state write timed out")]
    TimedOut,
    #[error("the transaction state write failed")]
    Failed,
}

pub type TxnReply = Result<TxnResponse, TxnWriteError>;

pub struct Command {
    pub request: TxnRequest,
    pub reply: oneshot::Sender<TxnReply>,
}

/// Open transactions of a shard, as last published: (count, start of the oldest or -1).
#[derive(Debug, Default)]
pub struct OpenSummary {
    pub open: AtomicI64,
    pub oldest_start_ms: AtomicI64,
}

#[derive(Clone, Debug)]
pub struct ShardHandle {
    pub tx: mpsc::Sender<Command>,
    pub status: Arc<AtomicU8>,
    pub leader_epoch: i32,
    pub summary: Arc<OpenSummary>,
    /// Stops the task and its marker jobs. Dropping the handle is not enough: marker jobs hold
    /// senders of the shard's channel to report back on.
    pub stop: CancellationToken,
}

impl ShardHandle {
    pub fn status(&self) -> u8 {
        self.status.load(Ordering::Acquire)
    }
}

pub struct ShardSettings {
    pub config: TxnConfig,
    pub commit_timeout: Duration,
    /// How often timeouts and expirations are checked at the latest
    /// (`transaction.abort.timed.out.transaction.cleanup.interval.ms`).
    pub check_interval: Duration,
    pub markers: MarkerChannel,
    pub metrics: TxnMetrics,
}

/// Starts the task for `partition`: LOADING, then ACTIVE, STOPPED when it ends.
pub fn spawn(
    partition: Arc<Partition>,
    settings: ShardSettings,
    clock: SharedClock,
    shutdown: CancellationToken,
) -> ShardHandle {
    let (tx, rx) = mpsc::channel(SHARD_QUEUE_DEPTH);
    let status = Arc::new(AtomicU8::new(LOADING));
    let summary = Arc::new(OpenSummary::default());
    let handle = ShardHandle {
        tx: tx.clone(),
        status: status.clone(),
        leader_epoch: partition.state().leader_epoch.0,
        summary: summary.clone(),
        stop: shutdown.clone(),
    };
    tokio::spawn(async move {
        let tp = partition.tp.clone();
        run(
            partition,
            settings,
            clock,
            shutdown.clone(),
            tx,
            rx,
            status.clone(),
            summary,
        )
        .await;
        // Marker jobs of this leadership stop with it; the next leader resends them.
        shutdown.cancel();
        status.store(STOPPED, Ordering::Release);
        tracing::info!(partition = %tp, "transaction coordinator shard stopped");
    });
    handle
}

/// Reads the partition from its start to the high watermark into a fresh shard.
fn load(partition: &Partition, config: TxnConfig) -> Result<TxnShard, CoordinatorLoadError> {
    let mut shard = TxnShard::new(config);
    let mut offset = coordinator_load::load_start_offset(partition)?;
    let mut records = 0usize;
    loop {
        if offset >= partition.high_watermark() {
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
                    for r in set.records.into_iter().filter(|r| !r.control) {
                        let Some(key) = r.key.as_deref() else {
                            continue;
                        };
                        match TxnLogRecord::decode(key, r.value.as_deref()) {
                            Ok(rec) => {
                                shard.replay(rec);
                                records += 1;
                            }
                            Err(e) => {
                                tracing::warn!(partition = %partition.tp, offset = r.offset, error = %e, "skipping undecodable transaction log record")
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
            tracing::warn!(partition = %partition.tp, %offset, "no progress loading the transaction state partition; stopping the load here");
            break;
        }
    }
    tracing::info!(partition = %partition.tp, records, transactional_ids = shard.txns.len(), "loaded transaction coordinator shard");
    Ok(shard)
}

/// What the running task carries besides the pure shard.
struct Executor {
    partition: Arc<Partition>,
    settings: ShardSettings,
    clock: SharedClock,
    /// The shard's own channel, for marker jobs to report back on.
    tx: mpsc::Sender<Command>,
    /// Cancelled when the shard ends: marker jobs stop.
    jobs: CancellationToken,
    failed: mpsc::Sender<()>,
}

#[allow(clippy::too_many_arguments)]
async fn run(
    partition: Arc<Partition>,
    settings: ShardSettings,
    clock: SharedClock,
    shutdown: CancellationToken,
    tx: mpsc::Sender<Command>,
    mut rx: mpsc::Receiver<Command>,
    status: Arc<AtomicU8>,
    summary: Arc<OpenSummary>,
) {
    let p = partition.clone();
    let config = settings.config;
    let mut shard = match tokio::task::spawn_blocking(move || load(&p, config)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::error!(partition = %partition.tp, error = %e, "loading transaction coordinator shard failed");
            return;
        }
        Err(e) => {
            tracing::error!(partition = %partition.tp, error = %e, "loading task failed");
            return;
        }
    };
    let (failed, mut failed_rx) = mpsc::channel::<()>(1);
    let mut check = tokio::time::interval(settings.check_interval);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.tick().await;
    let mut publish = tokio::time::interval(SUMMARY_INTERVAL);
    publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let exec = Executor {
        partition,
        settings,
        clock,
        tx,
        jobs: shutdown.clone(),
        failed,
    };
    let mut waiters: std::collections::HashMap<Waiter, oneshot::Sender<TxnReply>> =
        std::collections::HashMap::new();
    let mut next_waiter: Waiter = 0;
    publish_summary(&shard, &summary);
    status.store(ACTIVE, Ordering::Release);
    // Prepared transactions of the previous leadership: write their markers again.
    if !exec.execute(shard.recover(), &mut waiters) {
        return;
    }
    loop {
        let sleep_ms = shard
            .next_deadline_ms()
            .map(|d| (d - exec.clock.now_ms()).clamp(0, 3_600_000) as u64);
        let decision = tokio::select! {
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { break };
                next_waiter += 1;
                waiters.insert(next_waiter, cmd.reply);
                shard.handle(next_waiter, cmd.request, exec.clock.now_ms())
            }
            () = tokio::time::sleep(Duration::from_millis(sleep_ms.unwrap_or(0))), if sleep_ms.is_some() => {
                shard.tick(exec.clock.now_ms())
            }
            _ = check.tick() => shard.tick(exec.clock.now_ms()),
            _ = publish.tick() => {
                publish_summary(&shard, &summary);
                Decision::default()
            }
            _ = failed_rx.recv() => {
                tracing::warn!(partition = %exec.partition.tp, "a write to the transaction state topic failed; reloading the shard");
                break;
            }
            () = shutdown.cancelled() => break,
        };
        let m = &exec.settings.metrics;
        m.timed_out.inc_by(decision.timed_out);
        m.completed
            .with_label_values(&["commit"])
            .inc_by(decision.committed);
        m.completed
            .with_label_values(&["abort"])
            .inc_by(decision.aborted);
        if !exec.execute(decision, &mut waiters) {
            break;
        }
        waiters.retain(|_, tx| !tx.is_closed());
    }
}

fn publish_summary(shard: &TxnShard, summary: &OpenSummary) {
    let (open, oldest) = shard.open_summary();
    summary.open.store(open as i64, Ordering::Relaxed);
    summary
        .oldest_start_ms
        .store(oldest.unwrap_or(-1), Ordering::Relaxed);
}

impl Executor {
    /// Appends the decision's records; once they are committed, sends its replies and starts
    /// its marker jobs. Returns false when the shard must stop (the append was refused).
    fn execute(
        &self,
        decision: Decision,
        waiters: &mut std::collections::HashMap<Waiter, oneshot::Sender<TxnReply>>,
    ) -> bool {
        let replies: Vec<(oneshot::Sender<TxnReply>, TxnResponse)> = decision
            .replies
            .into_iter()
            .filter_map(|(w, r)| waiters.remove(&w).map(|tx| (tx, r)))
            .collect();
        if decision.records.is_empty() {
            for (tx, r) in replies {
                let _ = tx.send(Ok(r));
            }
            self.start_markers(decision.markers);
            return true;
        }
        let batch: Bytes = match encode_batch(&decision.records, self.clock.now_ms()) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(partition = %self.partition.tp, error = %e, "encoding transaction log records failed");
                fail_all(replies, TxnWriteError::Failed);
                return false;
            }
        };
        match self.partition.append_as_leader(batch, -1) {
            Ok((info, epoch)) => {
                let partition = self.partition.clone();
                let failed = self.failed.clone();
                let timeout = self.settings.commit_timeout;
                let starter = self.marker_starter();
                let markers = decision.markers;
                tokio::spawn(async move {
                    let end = info.last_offset.next();
                    match tokio::time::timeout(timeout, partition.wait_committed(end, -1, epoch))
                        .await
                    {
                        Ok(Ok(())) => {
                            for (tx, r) in replies {
                                let _ = tx.send(Ok(r));
                            }
                            starter.start(markers);
                        }
                        Ok(Err(e)) => {
                            tracing::error!(partition = %partition.tp, error = %e, "transaction state write not committed");
                            fail_all(replies, write_error(&e));
                            let _ = failed.try_send(());
                        }
                        Err(_) => {
                            fail_all(replies, TxnWriteError::TimedOut);
                            let _ = failed.try_send(());
                        }
                    }
                });
                true
            }
            Err(e) => {
                tracing::warn!(partition = %self.partition.tp, error = %e, "transaction state append refused");
                fail_all(replies, write_error(&e));
                false
            }
        }
    }

    fn marker_starter(&self) -> MarkerStarter {
        MarkerStarter {
            channel: self.settings.markers.clone(),
            coordinator_epoch: self.partition.state().leader_epoch.0,
            tx: self.tx.clone(),
            cancel: self.jobs.clone(),
            metrics: self.settings.metrics.clone(),
        }
    }

    fn start_markers(&self, jobs: Vec<super::state::MarkerJob>) {
        if !jobs.is_empty() {
            self.marker_starter().start(jobs);
        }
    }
}

/// Starts marker jobs; each reports `MarkersWritten` to the shard when done. One task per
/// prepared transaction: their number is bounded by the transactional ids the shard holds.
struct MarkerStarter {
    channel: MarkerChannel,
    coordinator_epoch: i32,
    tx: mpsc::Sender<Command>,
    cancel: CancellationToken,
    metrics: TxnMetrics,
}

impl MarkerStarter {
    fn start(self, jobs: Vec<super::state::MarkerJob>) {
        for job in jobs {
            let channel = self.channel.clone();
            let tx = self.tx.clone();
            let cancel = self.cancel.clone();
            let epoch = self.coordinator_epoch;
            let metrics = self.metrics.clone();
            tokio::spawn(async move {
                match write_markers(&channel, &job, epoch, &cancel).await {
                    MarkerOutcome::Written { written } => {
                        metrics.markers_written.inc_by(written as u64);
                        let (reply, _) = oneshot::channel();
                        let done = Command {
                            request: TxnRequest::MarkersWritten {
                                transactional_id: job.transactional_id,
                                producer_id: job.producer_id,
                                producer_epoch: job.producer_epoch,
                            },
                            reply,
                        };
                        tokio::select! {
                            _ = tx.send(done) => {}
                            () = cancel.cancelled() => {}
                        }
                    }
                    MarkerOutcome::Fenced | MarkerOutcome::Cancelled => {}
                }
            });
        }
    }
}

fn fail_all(replies: Vec<(oneshot::Sender<TxnReply>, TxnResponse)>, e: TxnWriteError) {
    for (tx, _) in replies {
        let _ = tx.send(Err(e));
    }
}

fn write_error(e: &PartitionError) -> TxnWriteError {
    match e {
        PartitionError::NotLeader { .. } | PartitionError::FencedLeaderEpoch { .. } => {
            TxnWriteError::NotCoordinator
        }
        _ => TxnWriteError::Failed,
    }
}
