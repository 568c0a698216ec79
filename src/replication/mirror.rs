//! Link fetchers: on the leader of each mirror partition, a task copies the SOURCE partition's
//! batches unchanged, at the source's offsets, into the local log (as a follower's
//! `Origin::Follower` append does, so producer state, timestamps, headers, compression and
//! control batches are kept byte for byte). Followers of the mirror topic replicate from this
//! leader as for any topic.
//!
//! Each task follows the source partition's leadership through source Metadata, fetches with
//! the standard Fetch API as a consumer (read_uncommitted, up to the source's high
//! watermark), and reconnects with backoff. It starts at the source's log start when the
//! local partition is empty (the local log start moves to match), else at the local log end.
//! A copy that cannot stay exact (the source's log start passed our end, the source's end is
//! below ours, or the source topic was recreated) puts the topic in the `Failed` state with the
//! reason, logged and counted; nothing is ever skipped silently.
//!
//! A reversed partition (`strata mirror reverse`, topic `Reconciling`, or one that reported a
//! divergent tail) first reconciles with the source, its new primary ([`reconcile`]): its
//! divergent tail is kept, reported and truncated before it mirrors.
//!
//! One task per mirror partition led here (bounded by the partitions this broker leads), each
//! with its own connection; [`MirrorFetcherManager::assign`] runs on every image applied.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId as WireBrokerId, FetchRequest, ListOffsetsRequest};
use prometheus::{IntCounterVec, IntGaugeVec, Registry};
use tokio_util::sync::CancellationToken;

use super::Partition;
use crate::client::KafkaClient;
use crate::clock::SharedClock;
use crate::controller::mirror::{
    decide_mirror_producer_ids, decide_mirror_topic_failed, source, MirrorLinkSpec,
};
use crate::controller::Controller;
use crate::log::FlushPolicy;
use crate::metrics::{counter_vec, gauge_vec};
use crate::model::{Offset, TopicPartition};
use crate::net::Network;
use crate::protocol::topic_name;

#[path = "mirror_promote.rs"]
mod promote;
#[path = "mirror_reconcile.rs"]
mod reconcile;

/// How long a source fetch waits for records.
const FETCH_MAX_WAIT: Duration = Duration::from_millis(500);
/// Bytes per partition per fetch.
const FETCH_PARTITION_MAX_BYTES: i32 = 8 * 1024 * 1024;
/// First and longest wait between failed attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long one request to the source may take beyond its own wait.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Per link and partition: what operators watch (docs/operations.md, "Mirror links").
#[derive(Debug, Clone)]
pub struct MirrorMetrics {
    /// Source high watermark minus local log end.
    pub lag_offsets: IntGaugeVec,
    /// Age of the newest record mirrored (its max timestamp) when it was appended.
    pub time_lag_seconds: prometheus::GaugeVec,
    pub bytes: IntCounterVec,
    pub fetch_errors: IntCounterVec,
    /// 1 mirroring, 0 not connected to the source, -1 failed.
    pub state: IntGaugeVec,
    /// Offsets a reversed partition removed because the new primary never had them.
    pub divergent_records: IntCounterVec,
    /// Source transactions still open in a partition when its topic was promoted, aborted here.
    pub promotion_aborted_transactions: IntCounterVec,
}

impl MirrorMetrics {
    pub fn new(r: &Registry) -> MirrorMetrics {
        let partition = &["link", "topic", "partition"];
        MirrorMetrics {
            lag_offsets: gauge_vec(
                r,
                "strata_mirror_partition_lag_offsets",
                "Source high watermark minus this mirror partition's log end.",
                partition,
            ),
            time_lag_seconds: crate::metrics::float_gauge_vec(
                r,
                "strata_mirror_partition_time_lag_seconds",
                "Age of the newest mirrored record (its max timestamp) when it was appended.",
                partition,
            ),
            bytes: counter_vec(
                r,
                "strata_mirror_bytes_total",
                "Record bytes mirrored from the source cluster, by link and topic.",
                &["link", "topic"],
            ),
            fetch_errors: counter_vec(
                r,
                "strata_mirror_fetch_errors_total",
                "Failed requests to the source cluster, by link.",
                &["link"],
            ),
            state: gauge_vec(
                r,
                "strata_mirror_partition_state",
                "1 mirroring, 0 not connected to the source, -1 failed.",
                partition,
            ),
            divergent_records: counter_vec(
                r,
                "strata_mirror_divergent_records_total",
                "Offsets (records and markers) a reversed mirror partition removed and kept in a file because the new primary never had them.",
                partition,
            ),
            promotion_aborted_transactions: counter_vec(
                r,
                "strata_mirror_promotion_aborted_transactions_total",
                "Source transactions left open in a mirror partition when its topic was promoted (their markers never arrived), aborted by its leader.",
                partition,
            ),
        }
    }
}

/// A mirror partition this broker leads, with its link's settings.
#[derive(Debug, Clone)]
pub struct MirrorTarget {
    pub partition: Arc<Partition>,
    pub link: MirrorLinkSpec,
    /// A reversed partition: check for a divergent tail before mirroring.
    pub reconcile: bool,
}

/// The mirror partitions this broker leads, as one metadata image has them.
#[derive(Debug, Default)]
pub struct LedMirrorPartitions {
    /// Mirroring (or reconciling) over an active link: a fetcher each.
    pub targets: Vec<MirrorTarget>,
    /// Failed, with their link's name.
    pub failed: Vec<(String, TopicPartition)>,
    /// Every partition of a topic not promoted yet (mirroring, reconciling, failed, or on a
    /// paused link).
    pub read_only: HashSet<TopicPartition>,
    /// The partitions of promoted topics, with their link's name.
    pub promoted: Vec<(Arc<Partition>, String)>,
}

struct Task {
    partition: Arc<Partition>,
    link: MirrorLinkSpec,
    cancel: CancellationToken,
    /// The fetcher; taken by the abort of a promoted partition's open transactions, which
    /// waits for it to stop appending.
    fetcher: Option<tokio::task::JoinHandle<()>>,
}

/// Owns the link fetch tasks of this broker.
pub struct MirrorFetcherManager {
    net: Arc<dyn Network>,
    controller: Arc<Controller>,
    metrics: MirrorMetrics,
    clock: SharedClock,
    shutdown: CancellationToken,
    // Short sections that never await.
    tasks: Mutex<HashMap<TopicPartition, Task>>,
    // The failed partitions whose state gauge shows -1; under the `tasks` lock.
    failed: Mutex<Vec<(String, TopicPartition)>>,
    // The read-only mirror partitions led here at the last `assign`.
    read_only: Mutex<HashSet<TopicPartition>>,
}

impl std::fmt::Debug for MirrorFetcherManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorFetcherManager")
            .finish_non_exhaustive()
    }
}

impl MirrorFetcherManager {
    pub fn new(
        net: Arc<dyn Network>,
        controller: Arc<Controller>,
        metrics: MirrorMetrics,
        clock: SharedClock,
        shutdown: CancellationToken,
    ) -> Arc<MirrorFetcherManager> {
        Arc::new(MirrorFetcherManager {
            net,
            controller,
            metrics,
            clock,
            shutdown,
            tasks: Mutex::new(HashMap::new()),
            failed: Mutex::new(Vec::new()),
            read_only: Mutex::new(HashSet::new()),
        })
    }

    fn tasks(&self) -> MutexGuard<'_, HashMap<TopicPartition, Task>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs exactly one task per target: stops the others, restarts one whose partition or
    /// link settings changed. The failed mirror partitions keep their state gauge at -1 until
    /// the topic is promoted or deleted; the series of every other stopped partition are
    /// removed, so that a promoted topic raises no alert. A promoted partition that was
    /// read-only here at the last call was promoted just now: the transactions its source left
    /// open are aborted ([`MirrorFetcherManager::abort_open_transactions`]).
    pub fn assign(self: &Arc<Self>, led: LedMirrorPartitions) {
        let LedMirrorPartitions {
            targets,
            failed,
            read_only,
            promoted,
        } = led;
        let mut tasks = self.tasks();
        let wanted: HashMap<TopicPartition, MirrorTarget> = targets
            .into_iter()
            .map(|t| (t.partition.tp.clone(), t))
            .collect();
        let mut stopped = HashMap::new();
        tasks.retain(|tp, task| {
            let keep = wanted
                .get(tp)
                .is_some_and(|t| Arc::ptr_eq(&t.partition, &task.partition) && t.link == task.link);
            if !keep {
                task.cancel.cancel();
                if let Some(fetcher) = task.fetcher.take() {
                    stopped.insert(tp.clone(), fetcher);
                }
                let labels = [
                    task.link.name.as_str(),
                    tp.topic.as_str(),
                    &tp.partition.0.to_string(),
                ];
                let m = &self.metrics;
                let _ = m.lag_offsets.remove_label_values(&labels);
                let _ = m.time_lag_seconds.remove_label_values(&labels);
                let _ = m.state.remove_label_values(&labels);
            }
            keep
        });
        let mut shown = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        for (link, tp) in shown.iter().filter(|f| !failed.contains(f)) {
            let p = tp.partition.0.to_string();
            let _ = self
                .metrics
                .state
                .remove_label_values(&[link.as_str(), tp.topic.as_str(), &p]);
        }
        for (link, tp) in &failed {
            self.set_state(link, tp, -1);
        }
        *shown = failed;
        drop(shown);
        for (tp, target) in wanted {
            if tasks.contains_key(&tp) {
                continue;
            }
            let cancel = self.shutdown.child_token();
            let fetcher = LinkFetcher {
                manager: self.clone(),
                partition: target.partition.clone(),
                link: target.link.clone(),
                cancel: cancel.clone(),
                source_topic_id: None,
                reconcile: target.reconcile,
            };
            let fetcher = tokio::spawn(fetcher.run());
            tasks.insert(
                tp,
                Task {
                    partition: target.partition,
                    link: target.link,
                    cancel,
                    fetcher: Some(fetcher),
                },
            );
        }
        drop(tasks);
        let was_read_only = std::mem::replace(
            &mut *self.read_only.lock().unwrap_or_else(|e| e.into_inner()),
            read_only,
        );
        for (partition, link) in promoted {
            if was_read_only.contains(&partition.tp) {
                let fetcher = stopped.remove(&partition.tp);
                tokio::spawn(
                    self.clone()
                        .abort_open_transactions(partition, link, fetcher),
                );
            }
        }
    }

    fn set_state(&self, link: &str, tp: &TopicPartition, state: i64) {
        let p = tp.partition.0.to_string();
        self.metrics
            .state
            .with_label_values(&[link, &tp.topic, &p])
            .set(state);
    }
}

/// Why a round stopped.
enum Stop {
    /// Try again after a backoff (connection lost, leader moved, source unreachable).
    Retry(String),
    /// The copy cannot stay exact: the topic fails with this reason.
    Fail(String),
}

struct LinkFetcher {
    manager: Arc<MirrorFetcherManager>,
    partition: Arc<Partition>,
    link: MirrorLinkSpec,
    cancel: CancellationToken,
    /// The source topic's id when first seen: a different one means it was recreated.
    source_topic_id: Option<uuid::Uuid>,
    /// Reconcile with the source before the first fetch (cleared once done).
    reconcile: bool,
}

impl LinkFetcher {
    fn tp(&self) -> &TopicPartition {
        &self.partition.tp
    }

    fn labels(&self) -> [String; 3] {
        [
            self.link.name.clone(),
            self.tp().topic.clone(),
            self.tp().partition.0.to_string(),
        ]
    }

    async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        tracing::info!(link = %self.link.name, partition = %self.tp(), "link fetcher started");
        loop {
            let cancel = self.cancel.clone();
            let stop = tokio::select! {
                () = cancel.cancelled() => return,
                stop = self.session() => stop,
            };
            let [link, topic, partition] = self.labels();
            match stop {
                Stop::Fail(reason) => {
                    tracing::error!(%link, partition = %self.tp(), %reason, "mirror partition failed");
                    self.manager
                        .metrics
                        .state
                        .with_label_values(&[&link, &topic, &partition])
                        .set(-1);
                    let name = topic.clone();
                    let committed = self
                        .manager
                        .controller
                        .commit(|image| Ok(((), decide_mirror_topic_failed(image, &name, &reason))))
                        .await;
                    if let Err(e) = committed {
                        tracing::warn!(%link, partition = %self.tp(), error = %e, "cannot record the mirror failure; retrying");
                        tokio::select! {
                            () = self.cancel.cancelled() => return,
                            () = tokio::time::sleep(BACKOFF_MAX) => continue,
                        }
                    }
                    // The new image stops this task.
                    self.cancel.cancelled().await;
                    return;
                }
                Stop::Retry(reason) => {
                    self.manager
                        .metrics
                        .fetch_errors
                        .with_label_values(&[&link])
                        .inc();
                    self.manager
                        .metrics
                        .state
                        .with_label_values(&[&link, &topic, &partition])
                        .set(0);
                    tracing::warn!(%link, partition = %self.tp(), %reason, backoff_ms = backoff.as_millis() as u64, "link fetch failed; retrying");
                    tokio::select! {
                        () = self.cancel.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Finds the source leader, positions the local log, then fetches until something stops.
    async fn session(&mut self) -> Stop {
        let net = self.manager.net.clone();
        let (mut client, leader_addr) = match self.connect_leader(&net).await {
            Ok(c) => c,
            Err(stop) => return stop,
        };
        if self.reconcile {
            if let Err(stop) = self.reconcile_with_source(&mut client).await {
                return stop;
            }
            self.reconcile = false;
        }
        if let Err(stop) = self.position(&mut client).await {
            return stop;
        }
        tracing::info!(link = %self.link.name, partition = %self.tp(), source_leader = %leader_addr, start = %self.partition.log().log_end_offset(), "mirroring from the source leader");
        let [link, topic, partition] = self.labels();
        self.manager
            .metrics
            .state
            .with_label_values(&[&link, &topic, &partition])
            .set(1);
        loop {
            if let Err(stop) = self.fetch_once(&mut client).await {
                return stop;
            }
        }
    }

    async fn connect_leader(
        &mut self,
        net: &Arc<dyn Network>,
    ) -> Result<(KafkaClient, String), Stop> {
        let retry = |e: String| Stop::Retry(e);
        let mut bootstrap = with_timeout(source::connect_any(net, &self.link))
            .await
            .map_err(retry)?;
        let names = [self.tp().topic.clone()];
        let md = with_timeout(source::metadata(&mut bootstrap, Some(&names)))
            .await
            .map_err(retry)?;
        let t = md
            .topics
            .iter()
            .find(|t| {
                t.name
                    .as_ref()
                    .is_some_and(|n| n.0.as_str() == self.tp().topic)
            })
            .ok_or_else(|| Stop::Retry("the source did not describe the topic".into()))?;
        if t.error_code == ResponseError::UnknownTopicOrPartition.code() {
            return Err(Stop::Fail(
                "the topic no longer exists on the source cluster".into(),
            ));
        }
        if t.error_code != 0 {
            return Err(Stop::Retry(format!(
                "source metadata error {}",
                t.error_code
            )));
        }
        match self.source_topic_id {
            None => self.source_topic_id = Some(t.topic_id),
            Some(id) if !t.topic_id.is_nil() && id != t.topic_id => {
                return Err(Stop::Fail(format!(
                    "the source topic was recreated (topic id {id} is now {})",
                    t.topic_id
                )))
            }
            Some(_) => {}
        }
        let p = t
            .partitions
            .iter()
            .find(|p| p.partition_index == self.tp().partition.0)
            .ok_or_else(|| Stop::Retry("the source topic has no such partition yet".into()))?;
        let broker = md
            .brokers
            .iter()
            .find(|b| b.node_id == p.leader_id)
            .ok_or_else(|| {
                Stop::Retry(format!(
                    "the source partition has no leader ({})",
                    p.leader_id.0
                ))
            })?;
        let addr = format!("{}:{}", broker.host.as_str(), broker.port);
        let client = with_timeout(source::connect(net, &self.link, &addr))
            .await
            .map_err(retry)?;
        Ok((client, addr))
    }

    /// A new mirror partition starts at the source's log start; an existing one at its end,
    /// which the source must still hold.
    async fn position(&self, client: &mut KafkaClient) -> Result<(), Stop> {
        let log = self.partition.log();
        let end = log.log_end_offset();
        let source_start = self.list_offset(client, -2).await?;
        if end == Offset(0) && source_start > Offset(0) {
            tracing::info!(link = %self.link.name, partition = %self.tp(), %source_start, "new mirror partition starts at the source's log start");
            let (p, at) = (self.partition.clone(), source_start);
            let start = move || p.restart_log_at(at, |l| l.truncate_fully_and_start_at(at));
            let done = tokio::task::spawn_blocking(start).await;
            done.map_err(|e| Stop::Retry(e.to_string()))?
                .map_err(|e| Stop::Retry(e.to_string()))?;
        } else if source_start > end {
            return Err(Stop::Fail(format!(
                "the source's log starts at {source_start}, past this mirror's end {end}: records between were deleted on the source before they were mirrored"
            )));
        }
        Ok(())
    }

    async fn list_offset(&self, client: &mut KafkaClient, timestamp: i64) -> Result<Offset, Stop> {
        let req = ListOffsetsRequest::default()
            .with_replica_id(WireBrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(self.tp().topic.clone()))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(self.tp().partition.0)
                    .with_timestamp(timestamp)])]);
        let resp = with_timeout(async { client.send(&req, 7).await.map_err(|e| e.to_string()) })
            .await
            .map_err(Stop::Retry)?;
        let p = resp
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| Stop::Retry("empty ListOffsets answer".into()))?;
        if p.error_code != 0 {
            return Err(Stop::Retry(format!(
                "source ListOffsets error {}",
                p.error_code
            )));
        }
        Ok(Offset(p.offset))
    }

    /// One Fetch of this partition from the source at `at`, read_uncommitted (aborted batches
    /// and transaction markers are copied too); the partition's answer.
    pub(super) async fn fetch_one(
        &self,
        client: &mut KafkaClient,
        at: Offset,
        max_wait: Duration,
        max_bytes: i32,
    ) -> Result<PartitionData, Stop> {
        let req = FetchRequest::default()
            .with_replica_id(WireBrokerId(-1))
            .with_max_wait_ms(max_wait.as_millis() as i32)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_isolation_level(0)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(self.tp().topic.clone()))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(self.tp().partition.0)
                    .with_fetch_offset(at.0)
                    .with_partition_max_bytes(max_bytes)])]);
        let resp = with_timeout(async { client.send(&req, 12).await.map_err(|e| e.to_string()) })
            .await
            .map_err(Stop::Retry)?;
        resp.responses
            .into_iter()
            .next()
            .and_then(|t| t.partitions.into_iter().next())
            .ok_or_else(|| Stop::Retry("empty Fetch answer".into()))
    }

    async fn fetch_once(&mut self, client: &mut KafkaClient) -> Result<(), Stop> {
        let end = self.partition.log().log_end_offset();
        let data = self
            .fetch_one(client, end, FETCH_MAX_WAIT, FETCH_PARTITION_MAX_BYTES)
            .await?;
        match ResponseError::try_from_code(data.error_code) {
            None => {}
            Some(ResponseError::OffsetOutOfRange) => {
                let source_start = self.list_offset(client, -2).await?;
                let source_end = self.list_offset(client, -1).await?;
                return Err(Stop::Fail(if source_start > end {
                    format!("the source's log start {source_start} passed this mirror's end {end}")
                } else {
                    format!("the source's end {source_end} is below this mirror's end {end}: the source lost or truncated records")
                }));
            }
            Some(e) => return Err(Stop::Retry(format!("the source answered {e:?}"))),
        }
        let source_hw = Offset(data.high_watermark);
        let [link, topic, partition] = self.labels();
        if source_hw < end {
            return Err(Stop::Fail(format!(
                "the source's high watermark {source_hw} is below this mirror's end {end}: the source lost or truncated records"
            )));
        }
        let records = data.records.unwrap_or_default();
        let (batches, newest_ms) = whole_batches_from(records, end);
        if !batches.is_empty() {
            self.reserve_producer_ids(&batches).await?;
            let size = batches.len() as u64;
            let info = self
                .partition
                .append_as_mirror(batches)
                .map_err(|e| Stop::Retry(format!("local append failed: {e}")))?;
            if self.partition.log().flush_policy() == FlushPolicy::GroupCommit {
                self.partition
                    .log()
                    .wait_durable(info.last_offset.next())
                    .await
                    .map_err(|e| Stop::Retry(format!("local flush failed: {e}")))?;
                self.partition.advance_high_watermark();
            }
            self.manager
                .metrics
                .bytes
                .with_label_values(&[&link, &topic])
                .inc_by(size);
            if let Some(ts) = newest_ms {
                let now = self.manager.clock.now_ms();
                self.manager
                    .metrics
                    .time_lag_seconds
                    .with_label_values(&[&link, &topic, &partition])
                    .set((now - ts).max(0) as f64 / 1000.0);
            }
        }
        let lag = source_hw.0 - self.partition.log().log_end_offset().0;
        self.manager
            .metrics
            .lag_offsets
            .with_label_values(&[&link, &topic, &partition])
            .set(lag.max(0));
        Ok(())
    }
}

impl LinkFetcher {
    /// Before appending: the producer ids in `batches` become reserved on this cluster (a
    /// metadata record when one is past the reserved range), so that none is handed to a
    /// producer here once the topic is promoted.
    async fn reserve_producer_ids(&self, batches: &Bytes) -> Result<(), Stop> {
        let Some(max) = max_producer_id(batches) else {
            return Ok(());
        };
        let controller = &self.manager.controller;
        if max < controller.image().mirrors.producer_ids_below {
            return Ok(());
        }
        controller
            .commit(|image| Ok(((), decide_mirror_producer_ids(image, max))))
            .await
            .map(|_| ())
            .map_err(|e| Stop::Retry(format!("cannot reserve the mirrored producer ids: {e}")))
    }
}

/// The largest producer id among whole batches (producer id at byte 43); `None` when no batch
/// has one (plain producers write -1).
fn max_producer_id(batches: &[u8]) -> Option<i64> {
    let mut at = 0;
    let mut max = None;
    while let Some(b) = batches.get(at..at + 61) {
        let len = i32::from_be_bytes(b[8..12].try_into().unwrap_or_default());
        let id = i64::from_be_bytes(b[43..51].try_into().unwrap_or_default());
        if id >= 0 {
            max = max.max(Some(id));
        }
        if len <= 0 {
            break;
        }
        at += 12 + len as usize;
    }
    max
}

async fn with_timeout<T>(
    f: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(REQUEST_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| Err("the source did not answer in time".into()))
}

/// The complete batches of a fetched record set that end at or after `from` (a fetch may end
/// in a partial batch, and may begin with a batch already held), and the newest max timestamp
/// among them. Offsets: base offset 0, length 8, last offset delta 23, max timestamp 35.
fn whole_batches_from(records: Bytes, from: Offset) -> (Bytes, Option<i64>) {
    const HEADER: usize = 61;
    let mut start = None;
    let mut end = 0;
    let mut newest = None;
    let mut at = 0;
    while records.len() >= at + HEADER {
        let b = &records[at..];
        let base = i64::from_be_bytes(b[0..8].try_into().unwrap_or_default());
        let len = i32::from_be_bytes(b[8..12].try_into().unwrap_or_default());
        if len <= 0 {
            break;
        }
        let total = 12 + len as usize;
        if records.len() < at + total {
            break;
        }
        let last_delta = i32::from_be_bytes(b[23..27].try_into().unwrap_or_default());
        if base + i64::from(last_delta) >= from.0 {
            start.get_or_insert(at);
            end = at + total;
            let max_ts = i64::from_be_bytes(b[35..43].try_into().unwrap_or_default());
            newest = newest.max(Some(max_ts));
        }
        at += total;
    }
    match start {
        Some(s) => (records.slice(s..end), newest),
        None => (Bytes::new(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base: i64, last_delta: i32, max_ts: i64) -> Vec<u8> {
        let mut b = vec![0u8; 70];
        b[0..8].copy_from_slice(&base.to_be_bytes());
        b[8..12].copy_from_slice(&(70i32 - 12).to_be_bytes());
        b[23..27].copy_from_slice(&last_delta.to_be_bytes());
        b[35..43].copy_from_slice(&max_ts.to_be_bytes());
        b
    }

    #[test]
    fn finds_the_largest_producer_id_of_the_batches() {
        let with_id = |base: i64, id: i64| {
            let mut b = batch(base, 0, 0);
            b[43..51].copy_from_slice(&id.to_be_bytes());
            b
        };
        let mut set = with_id(0, 7);
        set.extend(with_id(1, -1));
        set.extend(with_id(2, 4012));
        set.extend(with_id(3, 12));
        assert_eq!(max_producer_id(&set), Some(4012));
        assert_eq!(max_producer_id(&with_id(0, -1)), None);
        assert_eq!(max_producer_id(&[]), None);
    }

    #[test]
    fn keeps_whole_batches_at_or_after_the_fetch_offset() {
        let mut set = batch(0, 4, 10);
        set.extend(batch(5, 2, 30));
        set.extend(batch(8, 0, 20));
        set.extend(&batch(9, 0, 99)[..40]);
        let records = Bytes::from(set);
        let (kept, newest) = whole_batches_from(records.clone(), Offset(5));
        assert_eq!(&kept[..], &records[70..210]);
        assert_eq!(newest, Some(30));
        let (kept, _) = whole_batches_from(records.clone(), Offset(0));
        assert_eq!(
            kept.len(),
            210,
            "the partial batch at the end is left for the next fetch"
        );
        let (kept, newest) = whole_batches_from(records, Offset(9));
        assert!(kept.is_empty());
        assert_eq!(newest, None);
    }
}
