//! ListTransactions: the transactional ids this broker coordinates, filtered by state, producer
//! id, how long the transaction has been open (v1+) and a regular expression on the id (v2+).
//! Only ids the principal may DESCRIBE are listed. A state name Kafka does not know is
//! answered in `unknown_state_filters` and matches nothing.

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse, ProducerId, ResponseKind, TransactionalId};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext};
use crate::handlers::errors::{coordinator_error_code, txn_write_error_code};
use crate::protocol::str_bytes;
use crate::security::acl::{AclOperation, Resource};
use crate::txn::{TxnRequest, TxnResponse, TxnState};

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

fn answer(code: i16) -> ResponseKind {
    ResponseKind::ListTransactions(ListTransactionsResponse::default().with_error_code(code))
}

pub fn handle(ctx: RequestContext, req: ListTransactionsRequest) -> Reply {
    let pattern = match req.transactional_id_pattern.as_deref().filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => match regex::Regex::new(p) {
            Ok(r) => Some(r),
            Err(_) => return Reply::Now(answer(E::InvalidRegularExpression.code())),
        },
    };
    let states: Vec<String> = req.state_filters.iter().map(|s| s.to_string()).collect();
    let unknown: Vec<String> = states.iter().filter(|s| !TxnState::ALL.iter().any(|k| k.name() == s.as_str())).cloned().collect();
    let request = TxnRequest::List {
        // An unknown state alone must match nothing, not everything.
        states: if !states.is_empty() && states.len() == unknown.len() { vec!["-".into()] } else { states },
        producer_ids: req.producer_id_filters.iter().map(|p| p.0).collect(),
        min_duration_ms: if ctx.version() >= 1 { req.duration_filter } else { -1 },
        pattern,
    };
    let receivers = match ctx.apis.txns.call_all(request) {
        Ok(r) => r,
        Err(e) => return Reply::Now(answer(coordinator_error_code(&e))),
    };
    Reply::later(async move {
        let image = ctx.apis.image();
        let mut listed = Vec::new();
        for rx in receivers {
            match rx.await {
                Ok(Ok(TxnResponse::List(txns))) => listed.extend(txns),
                Ok(Ok(_)) => return answer(E::UnknownServerError.code()),
                Ok(Err(e)) => return answer(txn_write_error_code(&e)),
                Err(_) => return answer(E::NotCoordinator.code()),
            }
        }
        let states = listed
            .into_iter()
            .filter(|m| ctx.may_list(&image, AclOperation::Describe, &Resource::transactional_id(&m.transactional_id)))
            .map(|m| TransactionState::default().with_transactional_id(TransactionalId(str_bytes(m.transactional_id))).with_producer_id(ProducerId(m.producer_id)).with_transaction_state(str_bytes(m.state.name())))
            .collect();
        ResponseKind::ListTransactions(ListTransactionsResponse::default().with_unknown_state_filters(unknown.into_iter().map(str_bytes).collect()).with_transaction_states(states))
    })
}
