//! Fetch: whole batches from each partition up to its high watermark, within the partition and
//! response byte limits, long-polling until `min_bytes` have arrived or `max_wait_ms` has passed.
//!
//! Incremental fetch sessions (KIP-227) are declined: every response carries session id 0,
//! which tells clients to keep sending full fetch requests.

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext};
use crate::broker::Broker;
use crate::model::{LeaderEpoch, Offset, TopicId, TopicPartition};
use crate::protocol::errors::{partition_error_code, unknown_topic_id, unknown_topic_or_partition};
use crate::replication::PartitionError;

pub const VERSIONS: VersionRange = VersionRange { min: 4, max: 18 };

/// A fetch's parameters, resolved once: topic ids mapped to names.
struct FetchParams {
    topics: Vec<(kafka_protocol::messages::TopicName, uuid::Uuid, Option<String>, Vec<PartitionParams>)>,
    max_bytes: usize,
    min_bytes: usize,
    max_wait: Duration,
    read_committed: bool,
    version: i16,
}

struct PartitionParams {
    index: i32,
    fetch_offset: Offset,
    current_leader_epoch: LeaderEpoch,
    max_bytes: usize,
}

pub fn handle(ctx: RequestContext, req: FetchRequest) -> Reply {
    if req.session_id != 0 {
        // This broker never hands out a session id, so a client cannot hold one.
        let resp = FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code());
        return Reply::Now(ResponseKind::Fetch(resp));
    }
    let image = ctx.broker.image();
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
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                })
                .collect();
            (t.topic, t.topic_id, name, partitions)
        })
        .collect();
    let params = FetchParams {
        topics,
        max_bytes: if req.max_bytes <= 0 { usize::MAX } else { req.max_bytes as usize },
        min_bytes: req.min_bytes.max(0) as usize,
        max_wait: Duration::from_millis(req.max_wait_ms.max(0) as u64),
        read_committed: req.isolation_level == 1,
        version: ctx.version(),
    };
    Reply::later(async move { ResponseKind::Fetch(fetch(&ctx.broker, &params).await) })
}

async fn fetch(broker: &Broker, params: &FetchParams) -> FetchResponse {
    let deadline = tokio::time::Instant::now() + params.max_wait;
    // Subscribe before the first read so an append between the read and the wait still wakes us.
    let mut data_version = broker.replicas.data_version();
    loop {
        data_version.borrow_and_update();
        let (response, bytes, errors) = read_all(broker, params);
        if bytes >= params.min_bytes || errors || params.max_wait.is_zero() {
            return response;
        }
        tokio::select! {
            changed = data_version.changed() => if changed.is_err() { return response },
            () = tokio::time::sleep_until(deadline) => return read_all(broker, params).0,
            () = broker.shutdown.cancelled() => return response,
        }
    }
}

/// One pass over every requested partition. Returns the response, the record bytes in it, and
/// whether any partition carried an error (which answers at once, as Kafka does).
fn read_all(broker: &Broker, params: &FetchParams) -> (FetchResponse, usize, bool) {
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
            let Some(partition) = broker.replicas.get(&TopicPartition::new(name.clone(), p.index)) else {
                any_error = true;
                out.push(data.with_error_code(unknown_topic_or_partition()).with_high_watermark(-1));
                continue;
            };
            let budget = p.max_bytes.min(params.max_bytes.saturating_sub(total));
            let result = partition.check_leader(p.current_leader_epoch).and_then(|_| {
                let log = partition.log();
                let hw = partition.high_watermark();
                let (start, end) = (log.log_start_offset(), log.log_end_offset());
                if p.fetch_offset < start || p.fetch_offset > end {
                    return Err(PartitionError::Log(crate::log::LogError::OffsetOutOfRange {
                        offset: p.fetch_offset,
                        log_start_offset: start,
                        log_end_offset: end,
                    }));
                }
                if p.fetch_offset >= hw || budget == 0 {
                    return Ok((bytes::Bytes::new(), hw, start));
                }
                // The first partition with data may exceed the limits by one batch, so a
                // consumer always makes progress (KIP-74).
                let info = partition.read_committed(p.fetch_offset, budget, total == 0)?;
                Ok((info.records, hw, info.log_start_offset))
            });
            match result {
                Ok((records, hw, log_start)) => {
                    total += records.len();
                    if !records.is_empty() {
                        broker.metrics.topics.bytes_out.with_label_values(&[name.as_str()]).inc_by(records.len() as u64);
                    }
                    let data = data
                        .with_high_watermark(hw.0)
                        .with_last_stable_offset(hw.0)
                        .with_log_start_offset(if params.version >= 5 { log_start.0 } else { -1 })
                        .with_records(Some(records));
                    let data = if params.read_committed { data } else { data.with_aborted_transactions(None) };
                    out.push(data);
                }
                Err(e) => {
                    any_error = true;
                    if !matches!(e, PartitionError::Log(crate::log::LogError::OffsetOutOfRange { .. })) {
                        tracing::debug!(partition = %partition.tp, error = %e, "fetch refused");
                    }
                    out.push(
                        data.with_error_code(partition_error_code(&e))
                            .with_high_watermark(partition.high_watermark().0)
                            .with_log_start_offset(if params.version >= 5 { partition.log().log_start_offset().0 } else { -1 }),
                    );
                }
            }
        }
        responses.push(FetchableTopicResponse::default().with_topic(wire_name.clone()).with_topic_id(*topic_id).with_partitions(out));
    }
    (FetchResponse::default().with_responses(responses).with_session_id(0), total, any_error)
}
