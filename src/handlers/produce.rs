//! Produce: append each partition's batches in request order, then wait (off the connection's
//! ordered path) until they are committed, as `acks` asks. A client over its
//! `producer_byte_rate` quota, its tenant's cluster-wide share, or a topic's cluster-wide
//! produce limit is answered with `throttle_time_ms` (see `super::throttle`).

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::authz::{CLUSTER_AUTHORIZATION_FAILED, TOPIC_AUTHORIZATION_FAILED, TRANSACTIONAL_ID_AUTHORIZATION_FAILED};
use super::{throttle, Reply, RequestContext};
use crate::protocol::record_batch::BatchHeader;
use crate::security::acl::{AclOperation, Resource, ResourceType};
use crate::controller::MetadataImage;
use crate::log::LogAppendInfo;
use crate::model::{LeaderEpoch, TopicId, TopicPartition};
use crate::handlers::errors::{not_hosted, partition_error_code, unknown_topic_id, NONE};
use crate::protocol::str_bytes;
use crate::quota::SharedDirection;
use crate::replication::{Partition, PartitionError};

/// Kafka 4.1's range. v0–v2 never reach this handler: the protocol layer answers them
/// UNSUPPORTED_VERSION (see `protocol::retired_produce`), as Kafka 4.x does.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 13 };

enum Outcome {
    Appended(Arc<Partition>, LogAppendInfo, LeaderEpoch),
    /// Error code, message, and the bad records of a refused batch (KIP-467).
    Failed(i16, Option<String>, Vec<BatchIndexAndErrorMessage>),
}

pub fn handle(ctx: RequestContext, req: ProduceRequest) -> Reply {
    let acks = req.acks;
    if !matches!(acks, -1 | 0 | 1) {
        let code = ResponseError::InvalidRequiredAcks.code();
        return Reply::Now(ResponseKind::Produce(error_response(&req, code)));
    }
    let image = ctx.apis.image();
    // Transactional batches need the request's transactional id and WRITE on it (Kafka).
    let transactional_id = req.transactional_id.as_ref().map(|t| t.to_string());
    if has_transactional_batches(&req)
        && !transactional_id.as_deref().is_some_and(|id| ctx.authorize_in(&image, AclOperation::Write, &Resource::transactional_id(id)))
    {
        return Reply::Now(ResponseKind::Produce(error_response(&req, TRANSACTIONAL_ID_AUTHORIZATION_FAILED)));
    }
    // Authorization: an idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE on
    // some topic (Kafka 4); each topic needs WRITE (checked per topic below). The indexed
    // cluster check comes first, the scan of topic ACLs second, and the audited check last,
    // only to record the refusal.
    if has_idempotent_batches(&req)
        && !ctx.may_list(&image, AclOperation::IdempotentWrite, &Resource::cluster())
        && !ctx.may_on_some(&image, AclOperation::Write, ResourceType::Topic)
        && !ctx.authorize_in(&image, AclOperation::IdempotentWrite, &Resource::cluster())
    {
        return Reply::Now(ResponseKind::Produce(error_response(&req, CLUSTER_AUTHORIZATION_FAILED)));
    }
    let mut results: Vec<(kafka_protocol::messages::TopicName, uuid::Uuid, Vec<(i32, Outcome)>)> = Vec::new();
    // Bytes appended per topic, for the topics' cluster-wide produce limits.
    let mut appended: Vec<(String, u64)> = Vec::new();
    for topic in req.topic_data {
        let name = if topic.topic_id.is_nil() {
            Some(topic.name.0.to_string())
        } else {
            image.topic(&TopicId(topic.topic_id)).map(|t| t.name.clone())
        };
        let write_allowed = name.as_ref().is_some_and(|n| ctx.authorize_in(&image, AclOperation::Write, &Resource::topic(n)));
        let mut outcomes = Vec::with_capacity(topic.partition_data.len());
        for p in topic.partition_data {
            let outcome = match &name {
                None => Outcome::Failed(unknown_topic_id(), None, Vec::new()),
                Some(_) if !write_allowed => Outcome::Failed(TOPIC_AUTHORIZATION_FAILED, None, Vec::new()),
                // A mirror topic's records come from its source cluster only, at the source's
                // offsets, until it is promoted (docs/operations.md, "Mirror links").
                Some(name) if image.mirrors.refuses_produce(name) => Outcome::Failed(ResponseError::InvalidRequest.code(), Some(mirror_refusal(&image, name)), Vec::new()),
                Some(name) => match ctx.apis.replicas.get(&TopicPartition::new(name.clone(), p.index)) {
                    None => Outcome::Failed(not_hosted(&image, name, p.index), None, Vec::new()),
                    Some(partition) => match p.records {
                        None => Outcome::Failed(ResponseError::InvalidRecord.code(), Some("no records".into()), Vec::new()),
                        Some(records) => match verify_transaction(&partition, transactional_id.as_deref(), &records) {
                            Err(code) => Outcome::Failed(code, None, Vec::new()),
                            // A dir past its disk refuse mark takes no client data (`log::disk_pressure`).
                            Ok(()) => match partition.log().check_disk_pressure().map_err(PartitionError::Log).and_then(|()| partition.append_as_leader(records, acks)) {
                                Ok((info, epoch)) => {
                                    let m = &ctx.apis.metrics.topics;
                                    m.bytes_in.with_label_values(&[name.as_str()]).inc_by(info.size_bytes);
                                    m.records_in.with_label_values(&[name.as_str()]).inc_by(info.record_count);
                                    Outcome::Appended(partition, info, epoch)
                                }
                                Err(e) => {
                                    ctx.apis.metrics.topics.produce_errors.with_label_values(&[name.as_str()]).inc();
                                    log_append_error(&partition.tp, &e);
                                    Outcome::Failed(partition_error_code(&e), Some(e.to_string()), wire_record_errors(&e))
                                }
                            },
                        },
                    },
                },
            };
            outcomes.push((p.index, outcome));
        }
        if let Some(name) = name {
            let bytes: u64 = outcomes.iter().map(|(_, o)| if let Outcome::Appended(_, info, _) = o { info.size_bytes } else { 0 }).sum();
            if bytes > 0 {
                appended.push((name, bytes));
            }
        }
        results.push((topic.name, topic.topic_id, outcomes));
    }

    let throttle_ms = record_quota(&ctx, &image, &appended);
    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
    let version = ctx.version();
    if acks == 0 {
        // Nobody waits, but the high watermark must still move once the data is durable.
        tokio::spawn(async move {
            for (_, _, outcomes) in results {
                for (_, o) in outcomes {
                    if let Outcome::Appended(partition, info, epoch) = o {
                        let _ = partition.wait_committed(info.last_offset.next(), 0, epoch).await;
                    }
                }
            }
        });
        if throttle_ms > 0 {
            return Reply::Throttle(Duration::from_millis(throttle_ms));
        }
        return Reply::Nothing;
    }
    // Every partition waits for its commit at once (one fsync each, in parallel), not in turn.
    let waits: Vec<Vec<_>> = results
        .iter()
        .map(|(_, _, outcomes)| {
            outcomes
                .iter()
                .map(|(_, o)| match o {
                    Outcome::Appended(partition, info, epoch) => {
                        let (partition, end, epoch) = (partition.clone(), info.last_offset.next(), *epoch);
                        Some(tokio::spawn(async move { tokio::time::timeout(timeout, partition.wait_committed(end, acks, epoch)).await }))
                    }
                    Outcome::Failed(..) => None,
                })
                .collect()
        })
        .collect();
    Reply::later(async move {
        let mut responses = Vec::with_capacity(results.len());
        for ((name, topic_id, outcomes), waits) in results.into_iter().zip(waits) {
            let mut partition_responses = Vec::with_capacity(outcomes.len());
            for ((index, outcome), wait) in outcomes.into_iter().zip(waits) {
                let r = PartitionProduceResponse::default().with_index(index);
                let r = match outcome {
                    Outcome::Failed(code, message, record_errors) => r
                        .with_error_code(code)
                        .with_base_offset(-1)
                        .with_error_message(message.filter(|_| version >= 8).map(str_bytes))
                        .with_record_errors(if version >= 8 { record_errors } else { Vec::new() }),
                    Outcome::Appended(partition, info, _) => {
                        // An appended partition always has a wait; a task that died is a bug,
                        // reported to the client as an unknown server error.
                        let committed = match wait {
                            Some(handle) => handle.await,
                            None => Ok(Ok(Ok(()))),
                        };
                        match committed {
                            Err(join_error) => {
                                tracing::error!(partition = %partition.tp, error = %join_error, "commit wait failed");
                                r.with_error_code(ResponseError::UnknownServerError.code()).with_base_offset(-1)
                            }
                            Ok(committed) => match committed {
                            Ok(Ok(())) => r
                                .with_error_code(NONE)
                                .with_base_offset(info.first_offset.0)
                                .with_log_append_time_ms(info.log_append_time_ms)
                                .with_log_start_offset(if version >= 5 { info.local_log_start_offset.0 } else { -1 }),
                            Ok(Err(e)) => {
                                log_append_error(&partition.tp, &e);
                                r.with_error_code(partition_error_code(&e)).with_base_offset(-1).with_error_message((version >= 8).then(|| str_bytes(e.to_string())))
                            }
                            Err(_) => r.with_error_code(ResponseError::RequestTimedOut.code()).with_base_offset(-1),
                            },
                        }
                    }
                };
                partition_responses.push(r);
            }
            responses.push(TopicProduceResponse::default().with_name(name).with_topic_id(topic_id).with_partition_responses(partition_responses));
        }
        let mut response = ProduceResponse::default().with_responses(responses).with_throttle_time_ms(throttle_ms as i32);
        // The image as it is now: a leadership that moved while the append waited is the news.
        super::leader_hint::produce(
            || ctx.apis.image(),
            &ctx.listener.name,
            version,
            &mut response,
        );
        ResponseKind::Produce(response)
    })
}

/// Counts the request against the client's produce quotas (per broker and cluster-wide) and
/// its appended bytes against the topics' cluster-wide limits; returns how long the client
/// must wait (0 within them all). The response says so and the connection stops reading
/// meanwhile; the append itself is never refused for a quota.
fn record_quota(ctx: &RequestContext, image: &MetadataImage, appended: &[(String, u64)]) -> u64 {
    let apis = &ctx.apis;
    let quotas = &apis.quotas.produce;
    let mut throttle_ms = match quotas.quota_for(&image.client_quotas, ctx.user(), ctx.client_id()) {
        None => 0,
        Some(quota) => quotas.record(&quota, ctx.request_bytes as u64, apis.clock.now_ms()),
    };
    if let Some(cluster) = throttle::cluster_client_quota(image, ctx.user(), ctx.client_id(), SharedDirection::Produce) {
        throttle_ms = throttle_ms.max(throttle::record_shared(apis, image, &cluster, ctx.request_bytes as u64));
    }
    for (name, bytes) in appended {
        let Some(topic) = image.topic_by_name(name) else { continue };
        if let Some(limit) = throttle::topic_quota(apis, image, topic, SharedDirection::Produce) {
            throttle_ms = throttle_ms.max(throttle::record_shared(apis, image, &limit, *bytes));
        }
    }
    throttle_ms
}

/// KIP-467's list of the records that made the batch fail (empty for other errors).
fn wire_record_errors(e: &PartitionError) -> Vec<BatchIndexAndErrorMessage> {
    crate::handlers::errors::record_errors(e)
        .iter()
        .map(|r| BatchIndexAndErrorMessage::default().with_batch_index(r.batch_index).with_batch_index_error_message(Some(str_bytes(r.message.clone()))))
        .collect()
}

fn log_append_error(tp: &TopicPartition, e: &PartitionError) {
    match e {
        PartitionError::Log(l) if crate::handlers::errors::log_error_code(l) == ResponseError::KafkaStorageError.code() => {
            tracing::error!(partition = %tp, error = %e, "append failed");
        }
        _ => tracing::debug!(partition = %tp, error = %e, "append refused"),
    }
}

/// Whether any batch is transactional.
fn has_transactional_batches(req: &ProduceRequest) -> bool {
    req.topic_data.iter().flat_map(|t| &t.partition_data).any(|p| {
        p.records.as_ref().is_some_and(|r| BatchHeader::parse(r).is_ok_and(|h| h.is_transactional()))
    })
}

/// The seam where KIP-890's verification plugs in: asked before a partition's transactional
/// batches are appended, it will ask the transaction coordinator whether the partition was
/// added to the producer's ongoing transaction (and refuse with INVALID_TXN_STATE if not).
/// Until the coordinator answers it, every transactional batch passes; non-transactional
/// records never ask.
fn verify_transaction(_partition: &Partition, transactional_id: Option<&str>, records: &bytes::Bytes) -> Result<(), i16> {
    let Ok(h) = BatchHeader::parse(records) else { return Ok(()) };
    if !h.is_transactional() || transactional_id.is_none() {
        return Ok(());
    }
    Ok(())
}

/// Whether any batch carries a producer id (an idempotent producer's).
fn has_idempotent_batches(req: &ProduceRequest) -> bool {
    req.topic_data.iter().flat_map(|t| &t.partition_data).any(|p| {
        p.records.as_ref().is_some_and(|r| BatchHeader::parse(r).is_ok_and(|h| h.producer_id >= 0))
    })
}

fn error_response(req: &ProduceRequest, code: i16) -> ProduceResponse {
    let responses = req
        .topic_data
        .iter()
        .map(|t| {
            TopicProduceResponse::default().with_name(t.name.clone()).with_topic_id(t.topic_id).with_partition_responses(
                t.partition_data
                    .iter()
                    .map(|p| PartitionProduceResponse::default().with_index(p.index).with_error_code(code).with_base_offset(-1))
                    .collect(),
            )
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}

fn mirror_refusal(image: &MetadataImage, topic: &str) -> String {
    let link = image.mirrors.topic(topic).map(|t| t.link.as_str()).unwrap_or("");
    format!("topic '{topic}' is a read-only mirror of link '{link}': promote it (strata mirror promote) before producing to it")
}
