//! AddOffsetsToTxn: a transactional producer that will commit a group's offsets in its
//! transaction (TxnOffsetCommit) adds the group's `__consumer_offsets` partition to it, so the
//! commit marker reaches that partition too. WRITE on the transactional id, READ on the group.

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::authz::{GROUP_AUTHORIZATION_FAILED, TRANSACTIONAL_ID_AUTHORIZATION_FAILED};
use super::{txn_call, Reply, RequestContext};
use crate::group::{partition_for, OFFSETS_TOPIC};
use crate::handlers::errors::{coordinator_error_code, txn_error_code};
use crate::model::TopicPartition;
use crate::security::acl::{AclOperation, Resource};
use crate::txn::{TxnRequest, TxnResponse};

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

fn answer(code: i16) -> ResponseKind {
    ResponseKind::AddOffsetsToTxn(AddOffsetsToTxnResponse::default().with_error_code(code))
}

pub fn handle(ctx: RequestContext, req: AddOffsetsToTxnRequest) -> Reply {
    let id = req.transactional_id.to_string();
    let group = req.group_id.to_string();
    if !ctx.authorize(AclOperation::Write, &Resource::transactional_id(&id)) {
        return Reply::Now(answer(TRANSACTIONAL_ID_AUTHORIZATION_FAILED));
    }
    if !ctx.authorize(AclOperation::Read, &Resource::group(&group)) {
        return Reply::Now(answer(GROUP_AUTHORIZATION_FAILED));
    }
    let knows_fenced = ctx.version() >= 2;
    Reply::later(async move {
        if let Err(e) = ctx.apis.groups.ensure_offsets_topic().await {
            return answer(coordinator_error_code(&e));
        }
        let Some(partitions) = ctx.apis.image().topic_by_name(OFFSETS_TOPIC).map(|t| t.partitions.len() as i32) else {
            return answer(E::CoordinatorNotAvailable.code());
        };
        let request = TxnRequest::AddPartitions {
            transactional_id: id.clone(),
            producer_id: req.producer_id.0,
            producer_epoch: req.producer_epoch,
            partitions: vec![TopicPartition::new(OFFSETS_TOPIC, partition_for(&group, partitions))],
            verify_only: false,
            client_version: 0,
        };
        match txn_call::call(&ctx, &id, request).await {
            Ok(TxnResponse::AddPartitions(Ok(()))) => answer(0),
            Ok(TxnResponse::AddPartitions(Err(e))) => answer(txn_error_code(&e, knows_fenced)),
            Ok(_) => answer(E::UnknownServerError.code()),
            Err(code) => answer(code),
        }
    })
}
