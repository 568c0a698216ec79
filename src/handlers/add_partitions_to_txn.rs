//! AddPartitionsToTxn: a transactional producer names the partitions it is about to write
//! (v0-3, one transaction), or a partition leader verifies that a producer's transaction
//! includes its partition before appending (v4+, KIP-890: batches of transactions, each
//! `verify_only` or not, and only from brokers: CLUSTER_ACTION on the cluster; a leader adds
//! the partition, not only verifies it, for a transaction version 2 producer).
//!
//! Per transaction: WRITE on the transactional id and on each topic (v0-3: a client's; v4+ needs
//! only the request's CLUSTER_ACTION, as in Kafka), every partition known;
//! if any partition fails those checks the others are OPERATION_NOT_ATTEMPTED and nothing is
//! added, as in Kafka. The coordinator's answer applies to every partition.

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ResponseKind, TransactionalId};
use kafka_protocol::protocol::VersionRange;

use super::authz::{TOPIC_AUTHORIZATION_FAILED, TRANSACTIONAL_ID_AUTHORIZATION_FAILED};
use super::{txn_call, Reply, RequestContext};
use crate::handlers::errors::txn_error_code;
use crate::model::{PartitionIndex, TopicPartition};
use crate::security::acl::{AclOperation, Resource};
use crate::txn::{TxnRequest, TxnResponse};

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

/// One transaction of a request, as v0-3 carry it at the top and v4+ in a list.
struct Txn {
    id: String,
    producer_id: i64,
    producer_epoch: i16,
    verify_only: bool,
    topics: Vec<AddPartitionsToTxnTopic>,
}

pub fn handle(ctx: RequestContext, req: AddPartitionsToTxnRequest) -> Reply {
    let version = ctx.version();
    let txns: Vec<Txn> = if version >= 4 {
        if let Err(code) = ctx.authorize_cluster(crate::security::acl::AclOperation::ClusterAction) {
            return Reply::Now(ResponseKind::AddPartitionsToTxn(AddPartitionsToTxnResponse::default().with_error_code(code)));
        }
        req.transactions
            .into_iter()
            .map(|t| Txn { id: t.transactional_id.to_string(), producer_id: t.producer_id.0, producer_epoch: t.producer_epoch, verify_only: t.verify_only, topics: t.topics })
            .collect()
    } else {
        vec![Txn {
            id: req.v3_and_below_transactional_id.to_string(),
            producer_id: req.v3_and_below_producer_id.0,
            producer_epoch: req.v3_and_below_producer_epoch,
            verify_only: false,
            topics: req.v3_and_below_topics,
        }]
    };
    Reply::later(async move {
        let mut results = Vec::with_capacity(txns.len());
        for t in txns {
            let id = t.id.clone();
            results.push((id, one(&ctx, t, version).await));
        }
        let resp = AddPartitionsToTxnResponse::default();
        let resp = if version >= 4 {
            resp.with_results_by_transaction(
                results
                    .into_iter()
                    .map(|(id, topics)| AddPartitionsToTxnResult::default().with_transactional_id(TransactionalId(crate::protocol::str_bytes(id))).with_topic_results(topics))
                    .collect(),
            )
        } else {
            resp.with_results_by_topic_v3_and_below(results.into_iter().next().map(|(_, t)| t).unwrap_or_default())
        };
        ResponseKind::AddPartitionsToTxn(resp)
    })
}

/// Answers one transaction: a code per partition.
async fn one(ctx: &RequestContext, t: Txn, version: i16) -> Vec<AddPartitionsToTxnTopicResult> {
    let partitions: Vec<TopicPartition> = t.topics.iter().flat_map(|topic| topic.partitions.iter().map(|p| TopicPartition::new(topic.name.0.to_string(), *p))).collect();
    let all = |code: i16| partitions.iter().map(|tp| (tp.clone(), code)).collect::<Vec<_>>();
    // v4+ comes from brokers, authorized by CLUSTER_ACTION for the whole request: as in Kafka,
    // neither the transactional id nor the topics need WRITE then.
    let from_client = version < 4;
    let codes: Vec<(TopicPartition, i16)> = if from_client && !ctx.authorize(AclOperation::Write, &Resource::transactional_id(&t.id)) {
        all(TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    } else {
        let image = ctx.apis.image();
        let checked: Vec<(TopicPartition, i16)> = partitions
            .iter()
            .map(|tp| {
                let code = if from_client && !ctx.authorize_in(&image, AclOperation::Write, &Resource::topic(&tp.topic)) {
                    TOPIC_AUTHORIZATION_FAILED
                } else if image.topic_by_name(&tp.topic).is_none_or(|topic| !topic.partitions.contains_key(&PartitionIndex(tp.partition.0))) {
                    E::UnknownTopicOrPartition.code()
                } else {
                    0
                };
                (tp.clone(), code)
            })
            .collect();
        if checked.iter().any(|(_, c)| *c != 0) {
            checked.into_iter().map(|(tp, c)| (tp, if c == 0 { E::OperationNotAttempted.code() } else { c })).collect()
        } else {
            let request = TxnRequest::AddPartitions {
                transactional_id: t.id.clone(),
                producer_id: t.producer_id,
                producer_epoch: t.producer_epoch,
                partitions: partitions.clone(),
                verify_only: t.verify_only,
                // A partition leader adds a partition only for a transaction version 2
                // producer, which never sends AddPartitionsToTxn itself.
                client_version: if from_client { 0 } else { crate::txn::TV2 },
            };
            match txn_call::call(ctx, &t.id, request).await {
                Ok(TxnResponse::AddPartitions(Ok(()))) => all(0),
                Ok(TxnResponse::AddPartitions(Err(e))) | Ok(TxnResponse::Verify(Err(e))) => all(txn_error_code(&e, version >= 2)),
                Ok(TxnResponse::Verify(Ok(inside))) => {
                    // Kafka's verification answer for a partition outside the transaction;
                    // versions before 5 know only INVALID_TXN_STATE.
                    let outside = if version >= 5 { E::TransactionAbortable.code() } else { E::InvalidTxnState.code() };
                    inside.into_iter().map(|(tp, ok)| (tp, if ok { 0 } else { outside })).collect()
                }
                Ok(_) => all(E::UnknownServerError.code()),
                Err(code) => all(code),
            }
        }
    };
    group_by_topic(codes)
}

fn group_by_topic(codes: Vec<(TopicPartition, i16)>) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut out: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for (tp, code) in codes {
        let result = AddPartitionsToTxnPartitionResult::default().with_partition_index(tp.partition.0).with_partition_error_code(code);
        match out.iter_mut().find(|t| t.name.0.as_str() == tp.topic) {
            Some(t) => t.results_by_partition.push(result),
            None => out.push(AddPartitionsToTxnTopicResult::default().with_name(kafka_protocol::messages::TopicName(crate::protocol::str_bytes(tp.topic))).with_results_by_partition(vec![result])),
        }
    }
    out
}
