//! Which quotas a request counts against, and the throttle time it earns: Kafka's per-broker
//! byte-rate quotas (`producer_byte_rate`, `consumer_byte_rate`), the cluster-wide ones
//! (`strata.cluster.*` client quotas and the `strata.producer.byte.rate` /
//! `strata.consumer.byte.rate` topic configs, enforced against this broker's share, see
//! [`crate::quota::shared`]), and the request-time quota (`request_percentage`).
//!
//! A request under several quotas is throttled for the longest of their times, as Kafka takes
//! the largest of the byte-rate and request throttles.
//!
//! # Thread time
//!
//! Kafka's `request_percentage` is a share of one network or I/O thread's time. Strata has no
//! request threads: a request is handled on a tokio worker, first synchronously (the handler's
//! ordered part: decoding is done, validation, appends) and then, for a reply that waits, as a
//! future the connection polls. The time a request counts is the wall time a worker spends on
//! it: decoding it and the synchronous call (measured by the connection, as a Kafka network
//! thread's time counts), plus every poll of its response future. Blocking sections run with
//! `runtime::block_in_place` on that same worker, inside those calls, so reads from disk and
//! fsyncs the request performs itself are counted. Not counted: time spent waiting (long
//! polls, replication, group commits) and work other tasks do on the request's behalf (a
//! group shard writing its records, the commit wait of an acks=all produce), as Kafka does not
//! count purgatory time either.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use kafka_protocol::messages::{RequestKind, ResponseKind};

use super::{KafkaApis, ResponseFuture};
use crate::controller::{MetadataImage, TopicImage};
use crate::quota::manager::ClientQuota;
use crate::quota::{
    SharedDirection, SharedEntity, SharedQuotaKey, CLUSTER_CONSUMER_BYTE_RATE,
    CLUSTER_PRODUCER_BYTE_RATE, TOPIC_CONSUMER_BYTE_RATE, TOPIC_PRODUCER_BYTE_RATE,
};

/// Brokers the cluster-wide limits are split among until the controller gives shares.
fn live_brokers(image: &MetadataImage) -> usize {
    image.brokers.values().filter(|b| !b.fenced).count().max(1)
}

fn direction_keys(direction: SharedDirection) -> (&'static str, &'static str) {
    match direction {
        SharedDirection::Produce => (CLUSTER_PRODUCER_BYTE_RATE, TOPIC_PRODUCER_BYTE_RATE),
        SharedDirection::Fetch => (CLUSTER_CONSUMER_BYTE_RATE, TOPIC_CONSUMER_BYTE_RATE),
    }
}

/// The cluster-wide client quota of the request's tenant in `direction`: its key and limit.
pub(super) fn cluster_client_quota(
    image: &MetadataImage,
    user: &str,
    client_id: &str,
    direction: SharedDirection,
) -> Option<(SharedQuotaKey, f64)> {
    if image.client_quotas.is_empty() {
        return None;
    }
    let (key, _) = direction_keys(direction);
    image
        .client_quotas
        .resolve(user, client_id, key)
        .map(|(sensor, limit)| {
            let key = SharedQuotaKey {
                direction,
                entity: SharedEntity::Client(sensor),
            };
            (key, limit)
        })
}

/// The topic's cluster-wide byte-rate limit in `direction`: its own config, else the cluster's
/// dynamic default, else this node's static one. `None`: no limit (unset or <= 0).
pub(super) fn topic_quota(
    apis: &KafkaApis,
    image: &MetadataImage,
    topic: &TopicImage,
    direction: SharedDirection,
) -> Option<(SharedQuotaKey, f64)> {
    let (_, config) = direction_keys(direction);
    let value = topic
        .config
        .overrides
        .get(config)
        .or_else(|| image.broker_configs.get(config))
        .map(String::as_str)
        .unwrap_or_else(|| apis.metadata.static_node_config().get(config));
    let limit = value.parse::<i64>().ok().filter(|v| *v > 0)? as f64;
    let key = SharedQuotaKey {
        direction,
        entity: SharedEntity::Topic(topic.name.clone()),
    };
    Some((key, limit))
}

/// Records `bytes` against a cluster-wide limit; the throttle time it earns here.
pub(super) fn record_shared(
    apis: &KafkaApis,
    image: &MetadataImage,
    (key, limit): &(SharedQuotaKey, f64),
    bytes: u64,
) -> u64 {
    let now_ms = apis.clock.now_ms();
    apis.quotas
        .shared
        .record(key, *limit, bytes, now_ms, live_brokers(image))
}

/// Takes back bytes recorded against a cluster-wide limit (a throttled fetch sends nothing).
pub(super) fn unrecord_shared(apis: &KafkaApis, (key, _): &(SharedQuotaKey, f64), bytes: u64) {
    apis.quotas.shared.unrecord(key, bytes, apis.clock.now_ms());
}

/// The most one response may carry under a cluster-wide limit: this broker's share over the
/// window.
pub(super) fn shared_max_bytes(
    apis: &KafkaApis,
    image: &MetadataImage,
    (key, limit): &(SharedQuotaKey, f64),
) -> f64 {
    apis.quotas
        .shared
        .max_bytes_in_window(key, *limit, live_brokers(image))
}

/// The request-time quota that applies to a request, if any. Replica fetches from other
/// brokers are exempt, as Kafka exempts inter-broker requests.
pub fn request_quota(
    apis: &KafkaApis,
    user: &str,
    client_id: &str,
    request: &RequestKind,
) -> Option<ClientQuota> {
    if let RequestKind::Fetch(f) = request {
        if f.replica_id.0 >= 0 || f.replica_state.replica_id.0 >= 0 {
            return None;
        }
    }
    let image = apis.image();
    if image.client_quotas.is_empty() {
        return None;
    }
    apis.quotas
        .request
        .quota_for(&image.client_quotas, user, client_id)
}

/// Records `spent` thread time against `quota`; the throttle time it earns, in ms.
pub fn record_request_time(apis: &KafkaApis, quota: &ClientQuota, spent: Duration) -> u64 {
    apis.quotas.request_time_counted(spent);
    // Percent-seconds: one second of one thread is 100, so the rate is a percentage.
    let value = spent.as_secs_f64() * 100.0;
    apis.quotas
        .request
        .record_value(quota, value, apis.clock.now_ms())
}

/// A response's `throttle_time_ms` field; `None` for a response without one (ApiVersions
/// before v1 encodes none, which the version-aware encoder handles).
fn throttle_field(resp: &mut ResponseKind) -> Option<&mut i32> {
    macro_rules! with_field {
        ($( $variant:ident ),* $(,)?) => {
            match resp {
                $( ResponseKind::$variant(r) => Some(&mut r.throttle_time_ms), )*
                _ => None,
            }
        };
    }
    with_field!(
        Produce,
        Fetch,
        ListOffsets,
        OffsetForLeaderEpoch,
        Metadata,
        ApiVersions,
        CreateTopics,
        DeleteTopics,
        DeleteRecords,
        InitProducerId,
        DescribeConfigs,
        AlterConfigs,
        CreatePartitions,
        IncrementalAlterConfigs,
        DescribeCluster,
        DescribeTopicPartitions,
        DescribeProducers,
        FindCoordinator,
        JoinGroup,
        SyncGroup,
        Heartbeat,
        LeaveGroup,
        OffsetCommit,
        OffsetFetch,
        ListGroups,
        DescribeGroups,
        DeleteGroups,
        OffsetDelete,
        ConsumerGroupHeartbeat,
        ConsumerGroupDescribe,
        DescribeClientQuotas,
        AlterClientQuotas,
        CreateAcls,
        DescribeAcls,
        DeleteAcls,
        DescribeUserScramCredentials,
        AlterUserScramCredentials,
        AddPartitionsToTxn,
        AddOffsetsToTxn,
        EndTxn,
        DescribeTransactions,
        ListTransactions,
        TxnOffsetCommit,
        AlterPartitionReassignments,
        ListPartitionReassignments,
        ElectLeaders,
        DescribeLogDirs,
        AlterReplicaLogDirs,
        UnregisterBroker,
    )
}

/// Raises a response's `throttle_time_ms` to at least `ms` (responses without the field, and
/// versions that do not send it, are left as they are).
pub fn raise_throttle_time(resp: &mut ResponseKind, ms: u64) {
    let ms = ms.min(i32::MAX as u64) as i32;
    if let Some(t) = throttle_field(resp) {
        *t = (*t).max(ms);
    }
}

/// A response's `throttle_time_ms`, 0 for one without the field.
pub fn throttle_time_ms(resp: &mut ResponseKind) -> i32 {
    throttle_field(resp).map_or(0, |t| *t)
}

/// A response future whose polls are timed: when it completes, the thread time of the whole
/// request (`spent` so far plus every poll) is recorded against `quota` and the response's
/// `throttle_time_ms` raised to what it earns.
pub fn timed(
    apis: std::sync::Arc<KafkaApis>,
    quota: ClientQuota,
    spent: Duration,
    inner: ResponseFuture,
) -> ResponseFuture {
    Box::pin(Timed {
        apis,
        quota,
        spent,
        inner,
    })
}

struct Timed {
    apis: std::sync::Arc<KafkaApis>,
    quota: ClientQuota,
    spent: Duration,
    inner: ResponseFuture,
}

impl Future for Timed {
    type Output = ResponseKind;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ResponseKind> {
        let this = self.get_mut();
        let started = Instant::now();
        let polled = this.inner.as_mut().poll(cx);
        this.spent += started.elapsed();
        let Poll::Ready(mut resp) = polled else {
            return Poll::Pending;
        };
        let throttle_ms = record_request_time(&this.apis, &this.quota, this.spent);
        raise_throttle_time(&mut resp, throttle_ms);
        Poll::Ready(resp)
    }
}
