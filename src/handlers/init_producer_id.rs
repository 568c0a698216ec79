//! InitProducerId for idempotent producers: a cluster-unique producer id, or (KIP-360) the same
//! id with its epoch bumped when the producer asks to reset its sequence numbers.
//!
//! Transactional ids need the transaction coordinator, which does not exist yet; they are refused
//! with INVALID_REQUEST rather than half-served.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext};
use crate::security::acl::{AclOperation, Resource, ResourceType};
use crate::handlers::errors::controller_error_code;

/// The request stops at v5 in the protocol crate; the response schema's v6 is unused.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

pub fn handle(ctx: RequestContext, req: InitProducerIdRequest) -> Reply {
    if req.transactional_id.is_some() {
        return Reply::Now(ResponseKind::InitProducerId(
            InitProducerIdResponse::default().with_error_code(ResponseError::InvalidRequest.code()).with_producer_id(ProducerId(-1)),
        ));
    }
    // Authorization: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic (Kafka 4).
    let image = ctx.apis.image();
    if !ctx.may_list(&image, AclOperation::IdempotentWrite, &Resource::cluster()) && !ctx.may_on_some(&image, AclOperation::Write, ResourceType::Topic) {
        if let Err(code) = ctx.authorize_cluster(AclOperation::IdempotentWrite) {
            return Reply::Now(ResponseKind::InitProducerId(InitProducerIdResponse::default().with_error_code(code).with_producer_id(ProducerId(-1))));
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
