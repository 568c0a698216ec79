//! UnregisterBroker (KIP-631): removes a broker's registration from the cluster metadata, so
//! that a broker taken out of service for good stops being listed. Refused while the broker
//! is unfenced (still running) or holds replicas (reassign them first), decided by
//! `controller::elections::decide_unregister_broker`. Needs ALTER on the cluster.

use kafka_protocol::messages::{ResponseKind, UnregisterBrokerRequest, UnregisterBrokerResponse};
use kafka_protocol::protocol::VersionRange;

use super::authz::message;
use super::errors::controller_error_code;
use super::{Reply, RequestContext};
use crate::controller::elections::decide_unregister_broker;
use crate::model::BrokerId;
use crate::protocol::str_bytes;
use crate::security::acl::AclOperation;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

pub fn handle(ctx: RequestContext, req: UnregisterBrokerRequest) -> Reply {
    // Authorization: ALTER on the cluster.
    if let Err(code) = ctx.authorize_cluster(AclOperation::Alter) {
        let resp = UnregisterBrokerResponse::default()
            .with_error_code(code)
            .with_error_message(Some(str_bytes(message(code))));
        return Reply::Now(ResponseKind::UnregisterBroker(resp));
    }
    let broker = BrokerId(req.broker_id.0);
    Reply::later(async move {
        let outcome = ctx
            .apis
            .commit(|image| Ok(((), decide_unregister_broker(image, broker)?)))
            .await;
        let resp = UnregisterBrokerResponse::default();
        ResponseKind::UnregisterBroker(match outcome {
            Ok(()) => resp,
            Err(e) => resp
                .with_error_code(controller_error_code(&e))
                .with_error_message(Some(str_bytes(e.to_string()))),
        })
    })
}
