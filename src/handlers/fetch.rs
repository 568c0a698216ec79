//! Fetch: whole batches from each partition up to its high watermark, within the partition and
//! response byte limits, long-polling until `min_bytes` have arrived or `max_wait_ms` has passed.
//! A waiting fetch is woken only by the partitions it asked for
//! ([`crate::replication::delayed_fetch`]): their high watermark (consumers) or log end
//! (followers) moving, a truncation or a leadership change (answered at once with the error).
//!
//! Consumers read the partition's whole log ([`crate::log::PartitionLog`]), which answers
//! offsets below the local log start of a tiered partition from the remote log; a failed
//! remote read answers KAFKA_STORAGE_ERROR, which clients retry.
//!
//! A fetch with a replica id is a follower copying the partition: it reads up to the log end
//! rather than the high watermark, reports the follower's progress to the leader's
//! [`Partition`] (which moves the high watermark), and carries a diverging epoch when the
//! follower's last fetched epoch ends earlier here (KIP-320). A follower that needs what the
//! leader keeps only in object storage is told OFFSET_MOVED_TO_TIERED_STORAGE.
//!
//! A consumer over its `consumer_byte_rate` quota gets an empty response with
//! `throttle_time_ms` instead of the records (Kafka's throttled fetch; see `crate::quota`), and
//! a consumer under such a quota never gets more in one response than the quota allows over
//! the window (`max_bytes` is capped, as Kafka does).
//! Followers are never throttled.
//!
//! Incremental fetch sessions (KIP-227) are declined: every response carries session id 0,
//! which tells clients to keep sending full fetch requests.

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{EpochEndOffset, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ResponseKind};
use kafka_protocol::protocol::{Encodable, VersionRange};

use super::{Reply, RequestContext};
use super::KafkaApis;
use crate::log::remote::RemoteLogError;
use crate::log::{LogError, PartitionLogError};
use crate::model::{BrokerId, LeaderEpoch, Offset, TopicId, TopicPartition};
use crate::handlers::errors::{partition_error_code, remote_log_error_code, unknown_topic_id, unknown_topic_or_partition};
use crate::replication::delayed_fetch::{DelayedFetch, FetchIsolation, Wake};
use crate::replication::{Partition, PartitionError};

pub const VERSIONS: VersionRange = VersionRange { min: 4, max: 18 };

/// A fetch's parameters, resolved once: topic ids mapped to names.
struct FetchParams {
    topics: Vec<(kafka_protocol::messages::TopicName, uuid::Uuid, Option<String>, Vec<PartitionParams>)>,
    max_bytes: usize,
    min_bytes: usize,
    max_wait: Duration,
    read_committed: bool,
    version: i16,
    /// The fetching follower, for replica fetches.
    replica: Option<BrokerId>,
}

struct PartitionParams {
    index: i32,
    fetch_offset: Offset,
    current_leader_epoch: LeaderEpoch,
    /// KIP-320: the epoch of the follower's last record (v12+), -1 when unknown.
    last_fetched_epoch: LeaderEpoch,
    max_bytes: usize,
}

/// One partition's read.
struct PartitionRead {
    records: bytes::Bytes,
    high_watermark: Offset,
    log_start_offset: Offset,
    diverging: Option<(LeaderEpoch, Offset)>,
}

pub fn handle(ctx: RequestContext, req: FetchRequest) -> Reply {
    if req.session_id != 0 {
        // This broker never hands out a session id, so a client cannot hold one.
        let resp = FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code());
        return Reply::Now(ResponseKind::Fetch(resp));
    }
    let image = ctx.apis.image();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = if t.topic_id.is_nil() {
                Some(t.topic.0.to_string())
            } else {
                image.topic(&TopicId(t.topic_id)).map(|i| i.name.clone())
            };
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| PartitionParams {
                    index: p.partition,
                    fetch_offset: Offset(p.fetch_offset),
                    current_leader_epoch: LeaderEpoch(p.current_leader_epoch),
                    last_fetched_epoch: LeaderEpoch(p.last_fetched_epoch),
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                })
                .collect();
            (t.topic, t.topic_id, name, partitions)
        })
        .collect();
    let replica_id = if ctx.version() >= 15 { req.replica_state.replica_id.0 } else { req.replica_id.0 };
    let mut max_bytes = if req.max_bytes <= 0 { usize::MAX } else { req.max_bytes as usize };
    if replica_id < 0 {
        let quotas = &ctx.apis.quotas.fetch;
        if let Some(quota) = quotas.quota_for(&image.client_quotas, ctx.user(), ctx.client_id()) {
            max_bytes = max_bytes.min(quotas.max_bytes_in_window(&quota).max(1.0) as usize);
        }
    }
    let params = FetchParams {
        topics,
        max_bytes,
        min_bytes: req.min_bytes.max(0) as usize,
        max_wait: Duration::from_millis(req.max_wait_ms.max(0) as u64),
        read_committed: req.isolation_level == 1,
        version: ctx.version(),
        replica: (replica_id >= 0).then_some(BrokerId(replica_id)),
    };
    Reply::later(async move {
        let mut response = fetch(&ctx.apis, &params).await;
        super::leader_hint::fetch(
            || ctx.apis.image(),
            &ctx.listener.name,
            params.version,
            &mut response,
        );
        let response = if params.replica.is_none() { apply_quota(&ctx, &params, response) } else { response };
        count_bytes_out(&ctx.apis, &params, &response);
        ResponseKind::Fetch(response)
    })
}

/// Counts a consumer's response against its `consumer_byte_rate` quota, if it has one. Over the
/// quota the bytes are taken back and the client gets an empty response that says how long to
/// wait, as Kafka answers a throttled fetch; the records are fetched again afterwards.
fn apply_quota(ctx: &RequestContext, params: &FetchParams, response: FetchResponse) -> FetchResponse {
    let quotas = &ctx.apis.quotas.fetch;
    let Some(quota) = quotas.quota_for(&ctx.apis.image().client_quotas, ctx.user(), ctx.client_id()) else {
        return response;
    };
    // The whole response as sent, as Kafka counts it.
    let bytes = response.compute_size(params.version).unwrap_or(0) as u64;
    let now_ms = ctx.apis.clock.now_ms();
    let throttle_ms = quotas.record(&quota, bytes, now_ms);
    if throttle_ms == 0 {
        return response;
    }
    quotas.unrecord(&quota, bytes, now_ms);
    FetchResponse::default().with_throttle_time_ms(throttle_ms as i32).with_session_id(0)
}

/// Record bytes sent to consumers, by topic (responses in request order).
fn count_bytes_out(apis: &KafkaApis, params: &FetchParams, response: &FetchResponse) {
    if params.replica.is_some() {
        return;
    }
    for (topic, (_, _, name, _)) in response.responses.iter().zip(&params.topics) {
        let Some(name) = name else { continue };
        let bytes: usize = topic.partitions.iter().map(|p| p.records.as_ref().map_or(0, |r| r.len())).sum();
        if bytes > 0 {
            apis.metrics.topics.bytes_out.with_label_values(&[name.as_str()]).inc_by(bytes as u64);
        }
    }
}

async fn fetch(apis: &KafkaApis, params: &FetchParams) -> FetchResponse {
    let deadline = tokio::time::Instant::now() + params.max_wait;
    // Consumers wait for the high watermark of a partition they asked for to move, followers
    // for its log to grow; changes to other partitions do not wake them. Subscribed before the
    // first read, so a change between a read and the wait still wakes the wait.
    let isolation = match params.replica {
        None => FetchIsolation::HighWatermark,
        Some(_) => FetchIsolation::LogEnd,
    };
    let partitions: Vec<_> = if params.max_wait.is_zero() {
        Vec::new()
    } else {
        requested(params).filter_map(|tp| apis.replicas.get(&tp)).collect()
    };
    let mut delayed = DelayedFetch::new(isolation, partitions.iter().map(|p| &**p));
    drop(partitions);
    loop {
        delayed.mark_seen();
        let (response, bytes, errors) = read_all(apis, params).await;
        if bytes >= params.min_bytes || errors || params.max_wait.is_zero() {
            return response;
        }
        tokio::select! {
            wake = delayed.changed() => if wake == Wake::Removed { return read_all(apis, params).await.0 },
            () = tokio::time::sleep_until(deadline) => return read_all(apis, params).await.0,
            () = apis.shutdown.cancelled() => return response,
        }
    }
}

/// The partitions a fetch asks for, those of unknown topic ids left out.
fn requested(params: &FetchParams) -> impl Iterator<Item = TopicPartition> + '_ {
    params.topics.iter().flat_map(|(_, _, name, partitions)| {
        let name = name.as_ref();
        partitions.iter().filter_map(move |p| name.map(|n| TopicPartition::new(n.clone(), p.index)))
    })
}

/// Why one partition's read failed.
enum ReadError {
    Partition(PartitionError),
    Remote(RemoteLogError),
    /// A follower needs offsets that only the remote log holds now.
    MovedToTieredStorage,
}

impl From<PartitionError> for ReadError {
    fn from(e: PartitionError) -> Self {
        ReadError::Partition(e)
    }
}

impl From<PartitionLogError> for ReadError {
    fn from(e: PartitionLogError) -> Self {
        match e {
            PartitionLogError::Local(e) => ReadError::Partition(PartitionError::Log(e)),
            PartitionLogError::Remote(e) => ReadError::Remote(e),
        }
    }
}

/// A follower's read: up to the log end, with its progress recorded on the leader.
async fn read_for_follower(
    partition: &Partition,
    replica: BrokerId,
    p: &PartitionParams,
    budget: usize,
) -> Result<PartitionRead, ReadError> {
    let last_fetched_epoch = (p.last_fetched_epoch.0 >= 0).then_some(p.last_fetched_epoch);
    match partition.fetch_for_follower(replica, p.fetch_offset, p.current_leader_epoch, last_fetched_epoch, budget) {
        Ok(f) => Ok(PartitionRead {
            records: f.records,
            high_watermark: f.high_watermark,
            log_start_offset: f.local_log_start_offset,
            diverging: f.diverging,
        }),
        Err(PartitionError::Log(LogError::OffsetOutOfRange { log_start_offset, .. }))
            if p.fetch_offset < log_start_offset && in_remote_storage(partition, p.fetch_offset).await =>
        {
            Err(ReadError::MovedToTieredStorage)
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether the remote log holds `offset` (a failure to tell counts as no).
async fn in_remote_storage(partition: &Partition, offset: Offset) -> bool {
    let end = partition.log_view().highest_offset_in_remote_storage().await;
    end.is_ok_and(|end| end != Offset::INVALID && end >= offset)
}

/// A consumer's read, up to the high watermark, from the partition's whole log (local or
/// remote, as the log decides). The first partition with data may exceed the limits by one
/// batch, so a consumer always makes progress (KIP-74).
async fn read_for_consumer(
    partition: &Partition,
    p: &PartitionParams,
    budget: usize,
    first: bool,
) -> Result<PartitionRead, ReadError> {
    partition.check_leader(p.current_leader_epoch)?;
    let high_watermark = partition.high_watermark();
    let read = partition.log_view().read(p.fetch_offset, budget, high_watermark, first).await?;
    Ok(PartitionRead { records: read.records, high_watermark, log_start_offset: read.log_start_offset, diverging: None })
}

/// One pass over every requested partition. Returns the response, the record bytes in it, and
/// whether any partition carried an error (which answers at once, as Kafka does).
async fn read_all(apis: &KafkaApis, params: &FetchParams) -> (FetchResponse, usize, bool) {
    let mut total = 0usize;
    let mut any_error = false;
    let mut responses = Vec::with_capacity(params.topics.len());
    for (wire_name, topic_id, name, partitions) in &params.topics {
        let mut out = Vec::with_capacity(partitions.len());
        for p in partitions {
            let data = PartitionData::default().with_partition_index(p.index);
            let Some(name) = name else {
                any_error = true;
                out.push(data.with_error_code(unknown_topic_id()).with_high_watermark(-1));
                continue;
            };
            let Some(partition) = apis.replicas.get(&TopicPartition::new(name.clone(), p.index)) else {
                any_error = true;
                out.push(data.with_error_code(unknown_topic_or_partition()).with_high_watermark(-1));
                continue;
            };
            let budget = p.max_bytes.min(params.max_bytes.saturating_sub(total));
            let result = match params.replica {
                None => read_for_consumer(&partition, p, budget, total == 0).await,
                Some(replica) => read_for_follower(&partition, replica, p, budget).await,
            };
            match result {
                Ok(read) => {
                    let (records, hw, log_start) = (read.records, read.high_watermark, read.log_start_offset);
                    total += records.len();
                    let data = data
                        .with_high_watermark(hw.0)
                        .with_last_stable_offset(hw.0)
                        .with_log_start_offset(if params.version >= 5 { log_start.0 } else { -1 })
                        .with_records(Some(records));
                    let data = match read.diverging {
                        // A diverging epoch answers at once, like an error.
                        Some((epoch, end)) if params.version >= 12 => {
                            any_error = true;
                            data.with_diverging_epoch(EpochEndOffset::default().with_epoch(epoch.0).with_end_offset(end.0))
                        }
                        _ => data,
                    };
                    let data = if params.read_committed { data } else { data.with_aborted_transactions(None) };
                    out.push(data);
                }
                Err(e) => {
                    any_error = true;
                    let code = match &e {
                        ReadError::Partition(e) => {
                            if !matches!(e, PartitionError::Log(LogError::OffsetOutOfRange { .. })) {
                                tracing::debug!(partition = %partition.tp, error = %e, "fetch refused");
                            }
                            partition_error_code(e)
                        }
                        ReadError::MovedToTieredStorage => ResponseError::OffsetMovedToTieredStorage.code(),
                        ReadError::Remote(e) => {
                            tracing::warn!(partition = %partition.tp, offset = %p.fetch_offset, error = %e, "remote fetch failed");
                            remote_log_error_code(e)
                        }
                    };
                    out.push(
                        data.with_error_code(code)
                            .with_high_watermark(partition.high_watermark().0)
                            .with_log_start_offset(if params.version >= 5 { partition.log_view().log_start_offset().0 } else { -1 }),
                    );
                }
            }
        }
        responses.push(FetchableTopicResponse::default().with_topic(wire_name.clone()).with_topic_id(*topic_id).with_partitions(out));
    }
    (FetchResponse::default().with_responses(responses).with_session_id(0), total, any_error)
}
