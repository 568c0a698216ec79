//! DescribeTransactions: the coordinator's state of each transactional id asked for, from the
//! broker that coordinates it (NOT_COORDINATOR elsewhere). DESCRIBE on the transactional id;
//! topics the principal may not DESCRIBE are left out of the partitions listed, as in Kafka.

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, ResponseKind, TopicName};
use kafka_protocol::protocol::VersionRange;

use super::authz::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
use super::{txn_call, Reply, RequestContext};
use crate::protocol::str_bytes;
use crate::security::acl::{AclOperation, Resource};
use crate::txn::{TxnMetadata, TxnRequest, TxnResponse};

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

pub fn handle(ctx: RequestContext, req: DescribeTransactionsRequest) -> Reply {
    Reply::later(async move {
        let mut states = Vec::with_capacity(req.transactional_ids.len());
        for id in req.transactional_ids {
            let id = id.to_string();
            let base = TransactionState::default().with_transactional_id(kafka_protocol::messages::TransactionalId(str_bytes(id.clone()))).with_transaction_state(str_bytes("")).with_producer_id(ProducerId(-1)).with_producer_epoch(-1).with_transaction_start_time_ms(-1);
            if !ctx.authorize(AclOperation::Describe, &Resource::transactional_id(&id)) {
                states.push(base.with_error_code(TRANSACTIONAL_ID_AUTHORIZATION_FAILED));
                continue;
            }
            let state = match txn_call::call(&ctx, &id, TxnRequest::Describe { transactional_ids: vec![id.clone()] }).await {
                Ok(TxnResponse::Describe(mut found)) => match found.pop().and_then(|(_, m)| m) {
                    Some(m) => describe(&ctx, base, &m),
                    None => base.with_error_code(E::TransactionalIdNotFound.code()),
                },
                Ok(_) => base.with_error_code(E::UnknownServerError.code()),
                Err(code) => base.with_error_code(code),
            };
            states.push(state);
        }
        ResponseKind::DescribeTransactions(DescribeTransactionsResponse::default().with_transaction_states(states))
    })
}

fn describe(ctx: &RequestContext, base: TransactionState, m: &TxnMetadata) -> TransactionState {
    let image = ctx.apis.image();
    let mut topics: Vec<TopicData> = Vec::new();
    for tp in &m.partitions {
        if !ctx.may_list(&image, AclOperation::Describe, &Resource::topic(&tp.topic)) {
            continue;
        }
        match topics.iter_mut().find(|t| t.topic.0.as_str() == tp.topic) {
            Some(t) => t.partitions.push(tp.partition.0),
            None => topics.push(TopicData::default().with_topic(TopicName(str_bytes(tp.topic.clone()))).with_partitions(vec![tp.partition.0])),
        }
    }
    base.with_error_code(0)
        .with_transaction_state(str_bytes(m.state.name()))
        .with_transaction_timeout_ms(m.timeout_ms)
        .with_transaction_start_time_ms(m.start_ms)
        .with_producer_id(ProducerId(m.producer_id))
        .with_producer_epoch(m.producer_epoch)
        .with_topics(topics)
}
