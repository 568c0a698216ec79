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
//! A consumer over its `consumer_byte_rate` quota, its tenant's cluster-wide share or a fetched
//! topic's cluster-wide consumer limit gets an empty response with `throttle_time_ms` instead
//! of the records (Kafka's throttled fetch; see `super::throttle`), and a consumer under such a
//! quota never gets more in one response than the quota allows over the window (`max_bytes`
//! is capped, as Kafka does).
//! Followers are never throttled this way; a leader leaves the partitions listed in
//! `leader.replication.throttled.replicas` out of an out-of-sync follower's fetch while
//! `leader.replication.throttled.rate` is exceeded ([`crate::replication::throttle`]).
//!
//! Incremental fetch sessions (KIP-227, [`super::fetch_session`]): the request's session id
//! and epoch decide what is read (the request's partitions, or its session's) and the session
//! decides which partitions the response carries. A throttled response is empty and changes no
//! session.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{AbortedTransaction, EpochEndOffset, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId as WireProducerId, ResponseKind, TopicName};
use kafka_protocol::protocol::{Encodable, VersionRange};

use super::fetch_session::{FetchContext, FetchKey, TopicRef};
use super::authz::TOPIC_AUTHORIZATION_FAILED;
use super::{throttle, Reply, RequestContext};
use crate::security::acl::{AclOperation, Resource};
use super::KafkaApis;
use crate::controller::MetadataImage;
use crate::log::remote::RemoteLogError;
use crate::log::{LogError, PartitionLogError};
use crate::model::{BrokerId, LeaderEpoch, Offset, PartitionIndex, TopicId, TopicPartition};
use crate::handlers::errors::{
    fetch_session_error_code, not_hosted, partition_error_code, remote_log_error_code, unknown_topic_id,
};
use crate::protocol::fetch_session::{FetchMetadata, PartitionFetch};
use crate::protocol::record_batch::BatchIter;
use crate::protocol::topic_name;
use crate::replication::delayed_fetch::{DelayedFetch, FetchIsolation, Wake};
use crate::quota::{SharedDirection, SharedQuotaKey};
use crate::replication::{Partition, PartitionError};

pub const VERSIONS: VersionRange = VersionRange { min: 4, max: 18 };

/// A fetch's parameters, resolved once: the partitions to read (the request's, or its
/// session's), topic ids mapped to names.
struct FetchParams {
    topics: Vec<TopicParams>,
    max_bytes: usize,
    min_bytes: usize,
    max_wait: Duration,
    read_committed: bool,
    version: i16,
    /// The fetching follower, for replica fetches.
    replica: Option<BrokerId>,
    /// How the request is served, and which session, if any, answers it.
    session: FetchContext,
}

/// Consecutive partitions of one topic, as the response lists them.
struct TopicParams {
    wire_name: TopicName,
    topic_id: uuid::Uuid,
    /// The topic's name here; `None` for an unknown topic id.
    name: Option<String>,
    partitions: Vec<PartitionParams>,
    /// Whether the principal may read the topic (a follower: whether it has CLUSTER_ACTION).
    /// A refused topic answers TOPIC_AUTHORIZATION_FAILED.
    authorized: bool,
}

struct PartitionParams {
    key: FetchKey,
    fetch: PartitionFetch,
}

impl PartitionParams {
    fn index(&self) -> i32 {
        self.key.partition.0
    }

    fn max_bytes(&self) -> usize {
        self.fetch.max_bytes.max(0) as usize
    }
}

/// One partition's read.
struct PartitionRead {
    records: bytes::Bytes,
    high_watermark: Offset,
    last_stable_offset: Offset,
    log_start_offset: Offset,
    diverging: Option<(LeaderEpoch, Offset)>,
    /// read_committed: the aborted transactions overlapping the read.
    aborted: Vec<AbortedTransaction>,
}

pub fn handle(ctx: RequestContext, req: FetchRequest) -> Reply {
    let version = ctx.version();
    let replica_id = if version >= 15 { req.replica_state.replica_id.0 } else { req.replica_id.0 };
    let (requested, forgotten) = session_request(&req, version);
    let meta = FetchMetadata { session_id: req.session_id, epoch: req.session_epoch };
    let now_ms = ctx.apis.clock.now_ms().max(0) as u64;
    let mut session = ctx.apis.fetch_sessions.new_context(meta, replica_id >= 0, version >= 13, &requested, &forgotten, now_ms);
    let to_read = match &mut session {
        FetchContext::Error(e) => {
            tracing::debug!(error = %e, "fetch session refused");
            let resp = FetchResponse::default().with_error_code(fetch_session_error_code(e));
            return Reply::Now(ResponseKind::Fetch(resp));
        }
        FetchContext::Incremental { partitions, .. } => std::mem::take(partitions),
        FetchContext::Sessionless | FetchContext::Full { .. } => requested,
    };
    let image = ctx.apis.image();
    let mut topics = topics_to_read(to_read, &image);
    let mut max_bytes = if req.max_bytes <= 0 { usize::MAX } else { req.max_bytes as usize };
    if replica_id < 0 {
        let quotas = &ctx.apis.quotas.fetch;
        if let Some(quota) = quotas.quota_for(&image.client_quotas, ctx.user(), ctx.client_id()) {
            max_bytes = max_bytes.min(quotas.max_bytes_in_window(&quota).max(1.0) as usize);
        }
        for limit in shared_limits(&ctx, &image, &topics) {
            max_bytes = max_bytes.min(throttle::shared_max_bytes(&ctx.apis, &image, &limit.1).max(1.0) as usize);
        }
    }
    // Authorization: a follower needs CLUSTER_ACTION on the cluster, a consumer READ on each
    // topic (an unknown topic id stays UNKNOWN_TOPIC_ID).
    if replica_id >= 0 {
        let allowed = ctx.authorize_in(&image, AclOperation::ClusterAction, &Resource::cluster());
        topics.iter_mut().for_each(|t| t.authorized = allowed);
    } else {
        for t in &mut topics {
            t.authorized = t.name.as_ref().is_none_or(|n| ctx.authorize_in(&image, AclOperation::Read, &Resource::topic(n)));
        }
    }
    let params = FetchParams {
        topics,
        max_bytes,
        min_bytes: req.min_bytes.max(0) as usize,
        max_wait: Duration::from_millis(req.max_wait_ms.max(0) as u64),
        read_committed: req.isolation_level == 1,
        version,
        replica: (replica_id >= 0).then_some(BrokerId(replica_id)),
        session,
    };
    Reply::later(async move {
        let response = fetch(&ctx.apis, &params).await;
        if params.replica.is_none() {
            if let Some(throttled) = throttled_response(&ctx, &params, &response) {
                return ResponseKind::Fetch(throttled);
            }
        }
        count_bytes_out(&ctx.apis, &params, &response);
        record_leader_throttled(&ctx.apis, &params, &response);
        let mut response = answer(&ctx.apis, &params, response, true);
        super::leader_hint::fetch(|| ctx.apis.image(), &ctx.listener.name, params.version, &mut response);
        ResponseKind::Fetch(response)
    })
}

/// The request's partitions and forgotten partitions, named as its version names topics.
fn session_request(req: &FetchRequest, version: i16) -> (Vec<(FetchKey, PartitionFetch)>, Vec<FetchKey>) {
    let topic = |name: &TopicName, id: &uuid::Uuid| {
        if version >= 13 { TopicRef::Id(TopicId(*id)) } else { TopicRef::Name(name.0.to_string()) }
    };
    let fetch = req
        .topics
        .iter()
        .flat_map(|t| {
            let topic = topic(&t.topic, &t.topic_id);
            t.partitions.iter().map(move |p| {
                let key = FetchKey { topic: topic.clone(), partition: PartitionIndex(p.partition) };
                (key, PartitionFetch::from_wire(p))
            })
        })
        .collect();
    let forgotten = req
        .forgotten_topics_data
        .iter()
        .flat_map(|t| {
            let topic = topic(&t.topic, &t.topic_id);
            t.partitions.iter().map(move |p| FetchKey { topic: topic.clone(), partition: PartitionIndex(*p) })
        })
        .collect();
    (fetch, forgotten)
}

/// Groups consecutive partitions of a topic, with the topic's name here.
fn topics_to_read(partitions: Vec<(FetchKey, PartitionFetch)>, image: &MetadataImage) -> Vec<TopicParams> {
    let mut topics: Vec<TopicParams> = Vec::new();
    for (key, fetch) in partitions {
        let p = PartitionParams { key, fetch };
        match topics.last_mut() {
            Some(t) if t.partitions.first().is_some_and(|q| q.key.topic == p.key.topic) => t.partitions.push(p),
            _ => {
                let (wire_name, topic_id, name) = match &p.key.topic {
                    TopicRef::Name(n) => (topic_name(n.clone()), uuid::Uuid::nil(), Some(n.clone())),
                    TopicRef::Id(id) => (TopicName::default(), id.0, image.topic(id).map(|i| i.name.clone())),
                };
                topics.push(TopicParams { wire_name, topic_id, name, partitions: vec![p], authorized: true });
            }
        }
    }
    topics
}

/// The response as sent: the session picks the partitions it carries and names itself. With
/// `commit`, the session records what the fetcher is told (or a full request's session is
/// created); without, nothing changes.
fn answer(apis: &KafkaApis, params: &FetchParams, mut response: FetchResponse, commit: bool) -> FetchResponse {
    let requested = params.topics.iter().flat_map(|t| t.partitions.iter());
    let answered = response.responses.iter().flat_map(|t| t.partitions.iter());
    // `read_all` answers every partition, in order.
    let read: Vec<_> = requested.zip(answered).map(|(p, d)| (&p.key, &p.fetch, d)).collect();
    let now_ms = apis.clock.now_ms().max(0) as u64;
    let selection = apis.fetch_sessions.select(&params.session, &read, commit, now_ms);
    drop(read);
    let mut include = selection.include.into_iter();
    for t in &mut response.responses {
        t.partitions.retain(|_| include.next().unwrap_or(true));
    }
    if matches!(params.session, FetchContext::Incremental { .. }) {
        response.responses.retain(|t| !t.partitions.is_empty());
    }
    response.with_session_id(selection.session_id)
}

/// The cluster-wide limits a consumer's fetch counts against: its tenant's
/// (`strata.cluster.consumer_byte_rate`, `None` topic index) and each fetched topic's
/// (`strata.consumer.byte.rate`, by index in `topics`).
fn shared_limits(
    ctx: &RequestContext,
    image: &MetadataImage,
    topics: &[TopicParams],
) -> Vec<(Option<usize>, (SharedQuotaKey, f64))> {
    let mut out = Vec::new();
    if let Some(c) = throttle::cluster_client_quota(image, ctx.user(), ctx.client_id(), SharedDirection::Fetch) {
        out.push((None, c));
    }
    for (i, t) in topics.iter().enumerate() {
        let Some(topic) = t.name.as_deref().and_then(|n| image.topic_by_name(n)) else { continue };
        if let Some(limit) = throttle::topic_quota(&ctx.apis, image, topic, SharedDirection::Fetch) {
            out.push((Some(i), limit));
        }
    }
    out
}

/// A consumer over its `consumer_byte_rate` quota, its tenant's cluster-wide share or a fetched
/// topic's cluster-wide limit: the response it would get is counted, and taken back, and the
/// client gets an empty response that says how long to wait, as Kafka answers a throttled
/// fetch; the records are fetched again afterwards, and the session (which continues) is left
/// as it was. `None` when the consumer is under every limit or has none.
fn throttled_response(ctx: &RequestContext, params: &FetchParams, response: &FetchResponse) -> Option<FetchResponse> {
    let apis = &ctx.apis;
    let image = apis.image();
    let quotas = &apis.quotas.fetch;
    let quota = quotas.quota_for(&image.client_quotas, ctx.user(), ctx.client_id());
    let shared = shared_limits(ctx, &image, &params.topics);
    if quota.is_none() && shared.is_empty() {
        return None;
    }
    // The whole response as it would be sent, as Kafka counts it; a topic's share by its
    // record bytes (`read_all` answers every topic, in request order).
    let sent = answer(apis, params, response.clone(), false);
    let bytes = sent.compute_size(params.version).unwrap_or(0) as u64;
    let topic_bytes = |i: usize| -> u64 {
        response.responses.get(i).map_or(0, |t| t.partitions.iter().map(|p| p.records.as_ref().map_or(0, |r| r.len() as u64)).sum())
    };
    let now_ms = apis.clock.now_ms();
    let mut throttle_ms = quota.as_ref().map_or(0, |q| quotas.record(q, bytes, now_ms));
    let counted: Vec<(&(SharedQuotaKey, f64), u64)> = shared.iter().map(|(i, limit)| (limit, i.map_or(bytes, topic_bytes))).collect();
    for (limit, b) in &counted {
        throttle_ms = throttle_ms.max(throttle::record_shared(apis, &image, limit, *b));
    }
    if throttle_ms == 0 {
        return None;
    }
    if let Some(q) = &quota {
        quotas.unrecord(q, bytes, now_ms);
    }
    for (limit, b) in &counted {
        throttle::unrecord_shared(apis, limit, *b);
    }
    Some(
        FetchResponse::default()
            .with_throttle_time_ms(throttle_ms as i32)
            .with_session_id(params.session.throttled_session_id()),
    )
}

/// Record bytes sent to consumers, by topic (responses in request order).
fn count_bytes_out(apis: &KafkaApis, params: &FetchParams, response: &FetchResponse) {
    if params.replica.is_some() {
        return;
    }
    for (topic, t) in response.responses.iter().zip(&params.topics) {
        let Some(name) = &t.name else { continue };
        let bytes: usize = topic.partitions.iter().map(|p| p.records.as_ref().map_or(0, |r| r.len())).sum();
        if bytes > 0 {
            apis.metrics.topics.bytes_out.with_label_values(&[name.as_str()]).inc_by(bytes as u64);
        }
    }
}

/// Record bytes sent to a follower for the partitions listed in their topic's
/// `leader.replication.throttled.replicas`, counted against `leader.replication.throttled.rate`
/// (in sync or not, as Kafka counts them).
fn record_leader_throttled(apis: &KafkaApis, params: &FetchParams, response: &FetchResponse) {
    let quota = apis.replicas.leader_quota();
    if params.replica.is_none() || !quota.is_limited() {
        return;
    }
    let image = apis.image();
    let mut bytes = 0u64;
    for (topic, t) in response.responses.iter().zip(&params.topics) {
        let Some(name) = &t.name else { continue };
        for p in &topic.partitions {
            let len = p.records.as_ref().map_or(0, |r| r.len() as u64);
            if len > 0 && quota.is_listed(&image, &TopicPartition::new(name.clone(), p.partition_index)) {
                bytes += len;
            }
        }
    }
    quota.record(bytes);
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
        // Nothing the principal may read: answered at once, as Kafka does.
        let nothing_readable = !params.topics.is_empty() && !params.topics.iter().any(|t| t.authorized);
        if bytes >= params.min_bytes || errors || params.max_wait.is_zero() || nothing_readable {
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
    params.topics.iter().filter(|t| t.authorized).flat_map(|t| {
        let name = t.name.as_ref();
        t.partitions.iter().filter_map(move |p| name.map(|n| TopicPartition::new(n.clone(), p.index())))
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
    let p = &p.fetch;
    let last_fetched_epoch = (p.last_fetched_epoch.0 >= 0).then_some(p.last_fetched_epoch);
    match partition.fetch_for_follower(replica, p.fetch_offset, p.current_leader_epoch, last_fetched_epoch, budget) {
        Ok(f) => Ok(PartitionRead {
            records: f.records,
            high_watermark: f.high_watermark,
            last_stable_offset: partition.last_stable_offset(),
            log_start_offset: f.local_log_start_offset,
            diverging: f.diverging,
            aborted: Vec::new(),
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

/// A consumer's read, up to the high watermark (read_uncommitted) or the last stable offset
/// (read_committed, with the aborted transactions in that range), from the partition's whole
/// log (local or remote, as the log decides). The first partition with data may exceed the
/// limits by one batch, so a consumer always makes progress (KIP-74).
async fn read_for_consumer(
    partition: &Partition,
    p: &PartitionParams,
    budget: usize,
    first: bool,
    read_committed: bool,
) -> Result<PartitionRead, ReadError> {
    let p = &p.fetch;
    partition.check_leader(p.current_leader_epoch)?;
    let high_watermark = partition.high_watermark();
    let last_stable_offset = partition.last_stable_offset().min(high_watermark);
    let max_offset = if read_committed { last_stable_offset } else { high_watermark };
    let read = partition.log_view().read(p.fetch_offset, budget, max_offset, first).await?;
    let aborted = if read_committed && !read.records.is_empty() {
        // Only the transactions overlapping what was read: the list stays as short as the read.
        let read_end = BatchIter::new(&read.records).filter_map(Result::ok).last().map_or(last_stable_offset, |(_, h)| Offset(h.next_offset()));
        partition
            .log_view()
            .collect_aborted_txns(p.fetch_offset, read_end.min(last_stable_offset))
            .await?
            .into_iter()
            .map(|t| AbortedTransaction::default().with_producer_id(WireProducerId(t.producer_id)).with_first_offset(t.first_offset))
            .collect()
    } else {
        Vec::new()
    };
    Ok(PartitionRead { records: read.records, high_watermark, last_stable_offset, log_start_offset: read.log_start_offset, diverging: None, aborted })
}

/// Remote reads of different partitions overlap: when more than one partition reads from the
/// remote part, their first bytes are fetched into the chunk cache at once, then `read_all`
/// reads the partitions in order (the byte budget runs across them) from the cache. The bytes
/// warmed are bounded by the request's `max_bytes`, as the reads are.
async fn warm_remote_reads(params: &FetchParams, resolved: &[Vec<Option<Arc<Partition>>>]) {
    let mut left = params.max_bytes;
    let mut warm = Vec::new();
    for (t, partitions) in params.topics.iter().zip(resolved) {
        for (p, partition) in t.partitions.iter().zip(partitions) {
            let Some(partition) = partition else { continue };
            let offset = p.fetch.fetch_offset;
            if left == 0 || !partition.log_view().reads_remote(offset) {
                continue;
            }
            let budget = p.max_bytes().min(left);
            left -= budget;
            warm.push(async move { partition.log_view().warm_remote(offset, budget).await });
        }
    }
    if warm.len() > 1 {
        futures::future::join_all(warm).await;
    }
}

/// The hosted partition of every requested one, looked up once per pass: `None` where the
/// topic is unknown, not authorised, or not hosted here.
fn resolve_partitions(apis: &KafkaApis, params: &FetchParams) -> Vec<Vec<Option<Arc<Partition>>>> {
    params
        .topics
        .iter()
        .map(|t| match (&t.name, t.authorized) {
            (Some(name), true) => t.partitions.iter().map(|p| apis.replicas.get(&TopicPartition::new(name.clone(), p.index()))).collect(),
            _ => vec![None; t.partitions.len()],
        })
        .collect()
}

/// One pass over every requested partition. Returns the response, the record bytes in it, and
/// whether any partition carried an error (which answers at once, as Kafka does).
async fn read_all(apis: &KafkaApis, params: &FetchParams) -> (FetchResponse, usize, bool) {
    let resolved = resolve_partitions(apis, params);
    if params.replica.is_none() {
        warm_remote_reads(params, &resolved).await;
    }
    let mut total = 0usize;
    let mut any_error = false;
    let mut responses = Vec::with_capacity(params.topics.len());
    for (TopicParams { wire_name, topic_id, name, partitions, authorized }, hosted) in params.topics.iter().zip(&resolved) {
        let mut out = Vec::with_capacity(partitions.len());
        for (p, partition) in partitions.iter().zip(hosted) {
            let data = PartitionData::default().with_partition_index(p.index());
            if !authorized && name.is_some() {
                out.push(data.with_error_code(TOPIC_AUTHORIZATION_FAILED).with_high_watermark(-1));
                continue;
            }
            let Some(name) = name else {
                any_error = true;
                out.push(data.with_error_code(unknown_topic_id()).with_high_watermark(-1));
                continue;
            };
            let Some(partition) = partition else {
                any_error = true;
                out.push(data.with_error_code(not_hosted(&apis.image(), name, p.index())).with_high_watermark(-1));
                continue;
            };
            let budget = p.max_bytes().min(params.max_bytes.saturating_sub(total));
            let result = match params.replica {
                None => read_for_consumer(&partition, p, budget, total == 0, params.read_committed).await,
                // Read (the follower's position is recorded) and the records dropped, as Kafka's
                // leader throttle does.
                Some(replica) => {
                    let quota = apis.replicas.leader_quota();
                    let throttled = quota.is_limited() && quota.should_throttle(&apis.image(), partition, replica);
                    read_for_follower(partition, replica, p, budget).await.map(|mut read| {
                        if throttled {
                            read.records = bytes::Bytes::new();
                        }
                        read
                    })
                }
            };
            match result {
                Ok(read) => {
                    let (records, hw, log_start) = (read.records, read.high_watermark, read.log_start_offset);
                    total += records.len();
                    let data = data
                        .with_high_watermark(hw.0)
                        .with_last_stable_offset(read.last_stable_offset.0)
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
                    let data = data.with_aborted_transactions(params.read_committed.then_some(read.aborted));
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
                            tracing::warn!(partition = %partition.tp, offset = %p.fetch.fetch_offset, error = %e, "remote fetch failed");
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
