//! TxnOffsetCommit: a transactional producer commits a group's offsets inside its transaction
//! (`sendOffsetsToTransaction`). Sent to the group's coordinator, which writes them in the
//! producer's transactional batch and keeps them pending until the transaction's marker
//! reaches the offsets partition (`group::state::txn_offsets`). WRITE on the transactional id,
//! READ on the group and on each topic. With KIP-890 verification on, the offsets partition
//! must be in the producer's ongoing transaction (`super::txn_verification`).

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ResponseKind, TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::protocol::VersionRange;

use std::sync::Arc;

use super::authz::{GROUP_AUTHORIZATION_FAILED, TOPIC_AUTHORIZATION_FAILED, TRANSACTIONAL_ID_AUTHORIZATION_FAILED};
use super::txn_verification::{self, ProducerTxn};
use super::{group_call, Reply, RequestContext};
use crate::controller::MetadataImage;
use crate::group::{partition_for, GroupRequest, GroupResponse, OFFSETS_TOPIC};
use crate::model::{PartitionIndex, TopicPartition};
use crate::replication::Partition;
use crate::security::acl::{AclOperation, Resource};

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

/// Every partition of `req` answered `code`.
fn all(req: &TxnOffsetCommitRequest, code: i16) -> TxnOffsetCommitResponse {
    TxnOffsetCommitResponse::default().with_topics(
        req.topics
            .iter()
            .map(|t| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

pub fn handle(ctx: RequestContext, req: TxnOffsetCommitRequest) -> Reply {
    if !ctx.authorize(
        AclOperation::Write,
        &Resource::transactional_id(req.transactional_id.as_str()),
    ) {
        return Reply::Now(ResponseKind::TxnOffsetCommit(all(
            &req,
            TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        )));
    }
    // Partitions refused here are answered with their code; the rest go to the coordinator.
    let image = ctx.apis.image();
    let mut refused: Vec<(usize, i32, i16)> = Vec::new();
    let mut accepted = req.clone();
    for (ti, t) in req.topics.iter().enumerate() {
        let topic = t.name.0.as_str();
        let readable = ctx.authorize_in(&image, AclOperation::Read, &Resource::topic(topic));
        for p in &t.partitions {
            let code = if !readable {
                TOPIC_AUTHORIZATION_FAILED
            } else if image.topic_by_name(topic).is_none_or(|tt| {
                !tt.partitions
                    .contains_key(&PartitionIndex(p.partition_index))
            }) {
                E::UnknownTopicOrPartition.code()
            } else {
                continue;
            };
            refused.push((ti, p.partition_index, code));
        }
    }
    for t in accepted.topics.iter_mut().enumerate() {
        let (ti, t) = t;
        t.partitions
            .retain(|p| !refused.iter().any(|(i, q, _)| *i == ti && *q == p.partition_index));
    }
    accepted.topics.retain(|t| !t.partitions.is_empty());
    let group_id = req.group_id.0.to_string();
    let respond = move |reply: Option<GroupResponse>, code: i16| {
        let mut resp = match reply {
            Some(GroupResponse::TxnCommit(r)) => r,
            _ => all(&req, if code == 0 { E::UnknownServerError.code() } else { code }),
        };
        for (ti, partition, code) in &refused {
            let name = &req.topics[*ti].name;
            let result = TxnOffsetCommitResponsePartition::default()
                .with_partition_index(*partition)
                .with_error_code(*code);
            match resp.topics.iter_mut().find(|t| &t.name == name) {
                Some(t) if !t.partitions.iter().any(|p| p.partition_index == *partition) => {
                    t.partitions.push(result)
                }
                Some(_) => {}
                None => resp.topics.push(
                    TxnOffsetCommitResponseTopic::default()
                        .with_name(name.clone())
                        .with_partitions(vec![result]),
                ),
            }
        }
        ResponseKind::TxnOffsetCommit(resp)
    };
    if accepted.topics.is_empty() {
        return Reply::Now(respond(
            Some(GroupResponse::TxnCommit(TxnOffsetCommitResponse::default())),
            0,
        ));
    }
    // Transaction version 2 (v5+): the producer sent no AddOffsetsToTxn; the partition is added
    // here.
    let add = ctx.version() >= 5;
    let Some(partition) = offsets_partition_to_verify(&ctx, &image, &group_id, add) else {
        let request = GroupRequest::TxnCommit { req: accepted, verification: None };
        return group_call::call(&ctx, &group_id, AclOperation::Read, request, respond);
    };
    // KIP-890: the offsets partition must be in the producer's transaction before the
    // producer's batch is written there, as a produce's partition must.
    if !ctx.authorize(AclOperation::Read, &Resource::group(&group_id)) {
        return Reply::Now(respond(None, GROUP_AUTHORIZATION_FAILED));
    }
    let txn = ProducerTxn {
        transactional_id: accepted.transactional_id.to_string(),
        producer_id: accepted.producer_id.0,
        producer_epoch: accepted.producer_epoch,
        add,
    };
    Reply::later(async move {
        let verification = match txn_verification::verify_offsets(&ctx, &partition, &txn).await {
            Ok(guard) => Some(guard),
            Err(code) => return respond(None, code),
        };
        let request = GroupRequest::TxnCommit { req: accepted, verification };
        match group_call::ask(&ctx, &group_id, request).await {
            Ok(reply) => respond(Some(reply), 0),
            Err(code) => respond(None, code),
        }
    })
}

/// The group's `__consumer_offsets` partition, when this broker leads it and verifies
/// transactions or must `add` it to one (else the commit goes to the shard unverified, or is
/// answered NOT_COORDINATOR).
fn offsets_partition_to_verify(ctx: &RequestContext, image: &MetadataImage, group_id: &str, add: bool) -> Option<Arc<Partition>> {
    if !add && !txn_verification::enabled(ctx, image) {
        return None;
    }
    let partitions = image.topic_by_name(OFFSETS_TOPIC)?.partitions.len() as i32;
    let index = partition_for(group_id, partitions);
    ctx.apis.replicas.get(&TopicPartition::new(OFFSETS_TOPIC, index)).filter(|p| p.is_leader())
}
