//! Shared plumbing of the transactional handlers: route a request to its transactional id's
//! coordinator shard and turn why there is no reply into a Kafka code.

use kafka_protocol::error::ResponseError as E;

use super::RequestContext;
use crate::handlers::errors::{coordinator_error_code, txn_write_error_code};
use crate::txn::{TxnRequest, TxnResponse};

/// The shard's reply to `request`, or the code to answer instead.
pub(super) async fn call(
    ctx: &RequestContext,
    transactional_id: &str,
    request: TxnRequest,
) -> Result<TxnResponse, i16> {
    let rx = ctx
        .apis
        .txns
        .call(transactional_id, request)
        .map_err(|e| coordinator_error_code(&e))?;
    match rx.await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(txn_write_error_code(&e)),
        // The shard stopped (lost leadership, failed write) before answering.
        Err(_) => Err(E::NotCoordinator.code()),
    }
}
