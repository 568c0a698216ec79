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
use super::txn_verification::{self, Start};
use super::{throttle, Reply, RequestContext};
use crate::protocol::record_batch::BatchHeader;
use crate::security::acl::{AclOperation, Resource, ResourceType};
use crate::controller::MetadataImage;
use crate::log::{LogAppendInfo, VerificationGuard};
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
    /// Appended (or refused) once the transaction coordinator has verified the partition is in
    /// the producer's transaction (`super::txn_verification`).
    Verifying(tokio::task::JoinHandle<Outcome>),
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
    let verify = transactional_id.is_some() && txn_verification::enabled(&ctx, &image);
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
                        Some(records) => {
                            let txn = txn_verification::producer_txn(transactional_id.as_deref(), &records, ctx.version() >= 12);
                            match txn_verification::start(&ctx.apis.txn_verifications, verify, &partition, txn) {
                                Start::Append(verification) => append(&ctx, name, partition, records, acks, verification),
                                Start::Verify(deferred) => {
                                    let (ctx, name) = (ctx.clone(), name.clone());
                                    Outcome::Verifying(tokio::spawn(async move {
                                        let (verified, _ticket) = deferred.verify(&ctx, &partition).await;
                                        match verified {
                                            Ok(guard) => {
                                                let outcome = append(&ctx, &name, partition, records, acks, Some(guard));
                                                if let Outcome::Appended(_, info, _) = &outcome {
                                                    // The request's throttle time is settled: the
                                                    // bytes count towards the client's next one.
                                                    let image = ctx.apis.image();
                                                    record_quota_topics(&ctx, &image, &[(name, info.size_bytes)]);
                                                }
                                                outcome
                                            }
                                            Err(code) => {
                                                let message = txn_verification::refusal_message(code, &partition.tp);
                                                Outcome::Failed(code, Some(message), Vec::new())
                                            }
                                        }
                                    }))
                                }
                            }
                        }
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
                    let _ = committed(o, 0, None).await;
                }
            }
        });
        if throttle_ms > 0 {
            return Reply::Throttle(Duration::from_millis(throttle_ms));
        }
        return Reply::Nothing;
    }
    // Every partition waits for its commit at once (one fsync each, in parallel), not in turn.
    let waits: Vec<_> = results
        .into_iter()
        .map(|(name, topic_id, outcomes)| {
            let waits = outcomes
                .into_iter()
                .map(|(index, o)| match o {
                    Outcome::Failed(code, message, record_errors) => (index, Err((code, message, record_errors))),
                    o => (index, Ok(tokio::spawn(committed(o, acks, Some(timeout))))),
                })
                .collect::<Vec<_>>();
            (name, topic_id, waits)
        })
        .collect();
    Reply::later(async move {
        let mut responses = Vec::with_capacity(waits.len());
        for (name, topic_id, waits) in waits {
            let mut partition_responses = Vec::with_capacity(waits.len());
            for (index, wait) in waits {
                let r = PartitionProduceResponse::default().with_index(index);
                // A task that died is a bug, reported to the client as an unknown server error.
                let done = match wait {
                    Err(failed) => Err(failed),
                    Ok(handle) => handle.await.unwrap_or_else(|join_error| {
                        tracing::error!(error = %join_error, "produce wait failed");
                        Err((ResponseError::UnknownServerError.code(), None, Vec::new()))
                    }),
                };
                let r = match done {
                    Err((code, message, record_errors)) => r
                        .with_error_code(code)
                        .with_base_offset(-1)
                        .with_error_message(message.filter(|_| version >= 8).map(str_bytes))
                        .with_record_errors(if version >= 8 { record_errors } else { Vec::new() }),
                    Ok(info) => r
                        .with_error_code(NONE)
                        .with_base_offset(info.first_offset.0)
                        .with_log_append_time_ms(info.log_append_time_ms)
                        .with_log_start_offset(if version >= 5 { info.local_log_start_offset.0 } else { -1 }),
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

/// A refused partition's code, message and bad records (KIP-467).
type Refusal = (i16, Option<String>, Vec<BatchIndexAndErrorMessage>);

/// Waits until `outcome`'s batches are committed as `acks` asks (within `timeout`), after its
/// verification if it waits for one.
async fn committed(outcome: Outcome, acks: i16, timeout: Option<Duration>) -> Result<LogAppendInfo, Refusal> {
    let outcome = match outcome {
        Outcome::Verifying(handle) => handle.await.unwrap_or_else(|join_error| {
            tracing::error!(error = %join_error, "transaction verification failed");
            Outcome::Failed(ResponseError::UnknownServerError.code(), None, Vec::new())
        }),
        o => o,
    };
    let (partition, info, epoch) = match outcome {
        Outcome::Appended(partition, info, epoch) => (partition, info, epoch),
        Outcome::Failed(code, message, record_errors) => return Err((code, message, record_errors)),
        Outcome::Verifying(_) => return Err((ResponseError::UnknownServerError.code(), None, Vec::new())),
    };
    let wait = partition.wait_committed(info.last_offset.next(), acks, epoch);
    let waited = match timeout {
        Some(timeout) => tokio::time::timeout(timeout, wait).await,
        None => Ok(wait.await),
    };
    match waited {
        Ok(Ok(())) => Ok(info),
        Ok(Err(e)) => {
            log_append_error(&partition.tp, &e);
            Err((partition_error_code(&e), Some(e.to_string()), Vec::new()))
        }
        Err(_) => Err((ResponseError::RequestTimedOut.code(), None, Vec::new())),
    }
}

/// Appends a partition's records as leader, counting them in the topic's metrics.
fn append(
    ctx: &RequestContext,
    name: &str,
    partition: Arc<Partition>,
    records: bytes::Bytes,
    acks: i16,
    verification: Option<VerificationGuard>,
) -> Outcome {
    // A dir past its disk refuse mark takes no client data (`log::disk_pressure`).
    let appended = partition.log().check_disk_pressure().map_err(PartitionError::Log);
    match appended.and_then(|()| partition.append_as_leader_with(records, acks, verification)) {
        Ok((info, epoch)) => {
            let m = &ctx.apis.metrics.topics;
            m.bytes_in.with_label_values(&[name]).inc_by(info.size_bytes);
            m.records_in.with_label_values(&[name]).inc_by(info.record_count);
            Outcome::Appended(partition, info, epoch)
        }
        Err(e) => {
            ctx.apis.metrics.topics.produce_errors.with_label_values(&[name]).inc();
            log_append_error(&partition.tp, &e);
            Outcome::Failed(partition_error_code(&e), Some(e.to_string()), wire_record_errors(&e))
        }
    }
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
    throttle_ms.max(record_quota_topics(ctx, image, appended))
}

/// Counts appended bytes against the topics' cluster-wide produce limits; returns the longest
/// throttle time they ask for.
fn record_quota_topics(ctx: &RequestContext, image: &MetadataImage, appended: &[(String, u64)]) -> u64 {
    let apis = &ctx.apis;
    let mut throttle_ms = 0;
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
