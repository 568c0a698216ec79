//! EndTxn: commit or abort the producer's transaction. The answer comes once PrepareCommit or
//! PrepareAbort is written; the markers follow (`txn::markers`). v5 (transaction version 2)
//! bumps the producer epoch at every end and answers the id and epoch to go on with (a new id
//! once the epochs of the current one are spent). WRITE on the transactional id.

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::authz::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
use super::{txn_call, Reply, RequestContext};
use crate::handlers::errors::txn_error_code;
use crate::security::acl::{AclOperation, Resource};
use crate::txn::{TxnRequest, TxnResponse};

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

fn answer(code: i16) -> ResponseKind {
    ResponseKind::EndTxn(EndTxnResponse::default().with_error_code(code).with_producer_id(ProducerId(-1)).with_producer_epoch(-1))
}

pub fn handle(ctx: RequestContext, req: EndTxnRequest) -> Reply {
    let id = req.transactional_id.to_string();
    if !ctx.authorize(AclOperation::Write, &Resource::transactional_id(&id)) {
        return Reply::Now(answer(TRANSACTIONAL_ID_AUTHORIZATION_FAILED));
    }
    let version = ctx.version();
    Reply::later(async move {
        let bump_epoch = version >= 5;
        // The decision is pure: a new producer id is taken beforehand, and only when this end
        // may spend the last epoch of the current one (one id of this broker's block).
        let fresh_producer_id = if bump_epoch && req.producer_epoch >= i16::MAX - 1 {
            match ctx.apis.next_producer_id().await {
                Ok(id) => id,
                Err(e) => return answer(crate::handlers::errors::controller_error_code(&e)),
            }
        } else {
            -1
        };
        let request = TxnRequest::EndTxn {
            transactional_id: id.clone(),
            producer_id: req.producer_id.0,
            producer_epoch: req.producer_epoch,
            commit: req.committed,
            bump_epoch,
            fresh_producer_id,
        };
        match txn_call::call(&ctx, &id, request).await {
            Ok(TxnResponse::EndTxn(Ok((producer_id, epoch)))) => ResponseKind::EndTxn(EndTxnResponse::default().with_producer_id(ProducerId(producer_id)).with_producer_epoch(epoch)),
            Ok(TxnResponse::EndTxn(Err(e))) => answer(txn_error_code(&e, version >= 2)),
            Ok(_) => answer(E::UnknownServerError.code()),
            Err(code) => answer(code),
        }
    })
}
