//! InitProducerId: for idempotent producers a cluster-unique producer id, or (KIP-360) the same
//! id with its epoch bumped when the producer asks to reset its sequence numbers; for
//! transactional producers the transaction coordinator's answer (`txn::state`): the
//! transactional id's producer id with a bumped epoch, fencing the previous producer and
//! aborting its open transaction.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::authz::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
use super::{txn_call, Reply, RequestContext};
use crate::handlers::errors::{controller_error_code, txn_error_code};
use crate::security::acl::{AclOperation, Resource, ResourceType};
use crate::txn::{TxnRequest, TxnResponse};

/// The request stops at v5 in the protocol crate; the response schema's v6 is unused.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

fn failed(code: i16) -> ResponseKind {
    ResponseKind::InitProducerId(InitProducerIdResponse::default().with_error_code(code).with_producer_id(ProducerId(-1)).with_producer_epoch(-1))
}

pub fn handle(ctx: RequestContext, req: InitProducerIdRequest) -> Reply {
    // A null or empty transactional id is an idempotent producer, as in Kafka.
    if let Some(id) = req.transactional_id.as_ref().map(|t| t.to_string()).filter(|t| !t.is_empty()) {
        return transactional(ctx, req, id);
    }
    // Authorization: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic (Kafka 4).
    let image = ctx.apis.image();
    if !ctx.may_list(&image, AclOperation::IdempotentWrite, &Resource::cluster()) && !ctx.may_on_some(&image, AclOperation::Write, ResourceType::Topic) {
        if let Err(code) = ctx.authorize_cluster(AclOperation::IdempotentWrite) {
            return Reply::Now(failed(code));
        }
    }
    Reply::later(async move {
        let resp = InitProducerIdResponse::default();
        // A producer that already has an id asks for an epoch bump; past the epoch space it gets
        // a fresh id, as Kafka does.
        if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
            return ResponseKind::InitProducerId(resp.with_producer_id(req.producer_id).with_producer_epoch(req.producer_epoch + 1));
        }
        let resp = match ctx.apis.next_producer_id().await {
            Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
            Err(e) => resp.with_error_code(controller_error_code(&e)).with_producer_id(ProducerId(-1)),
        };
        ResponseKind::InitProducerId(resp)
    })
}

fn transactional(ctx: RequestContext, req: InitProducerIdRequest, transactional_id: String) -> Reply {
    // Authorization: WRITE on the transactional id.
    if !ctx.authorize(AclOperation::Write, &Resource::transactional_id(&transactional_id)) {
        return Reply::Now(failed(TRANSACTIONAL_ID_AUTHORIZATION_FAILED));
    }
    let knows_fenced = ctx.version() >= 4;
    Reply::later(async move {
        // Taken before deciding, since the decision is pure; unused when the id keeps its
        // producer id, which costs one id of this broker's block.
        let fresh = match ctx.apis.next_producer_id().await {
            Ok(id) => id,
            Err(e) => return failed(controller_error_code(&e)),
        };
        let request = TxnRequest::InitProducerId {
            transactional_id: transactional_id.clone(),
            timeout_ms: req.transaction_timeout_ms,
            producer_id: req.producer_id.0,
            producer_epoch: req.producer_epoch,
            fresh_producer_id: fresh,
        };
        match txn_call::call(&ctx, &transactional_id, request).await {
            Ok(TxnResponse::InitProducerId(Ok((id, epoch)))) => {
                ResponseKind::InitProducerId(InitProducerIdResponse::default().with_producer_id(ProducerId(id)).with_producer_epoch(epoch))
            }
            Ok(TxnResponse::InitProducerId(Err(e))) => failed(txn_error_code(&e, knows_fenced)),
            Ok(_) => failed(ResponseError::UnknownServerError.code()),
            Err(code) => failed(code),
        }
    })
}
