//! FindCoordinator: which broker coordinates a group (the leader of its `__consumer_offsets`
//! partition) or a transactional id (key type 1, the leader of its `__transaction_state`
//! partition). Creates the topic on first use.

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId as WireBrokerId, FindCoordinatorRequest, FindCoordinatorResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::authz::{message, GROUP_AUTHORIZATION_FAILED, TRANSACTIONAL_ID_AUTHORIZATION_FAILED};
use super::{Reply, RequestContext};
use crate::security::acl::{AclOperation, Resource};
use super::KafkaApis;
use crate::handlers::errors::coordinator_error_code;
use crate::protocol::str_bytes;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 6 };

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub fn handle(ctx: RequestContext, req: FindCoordinatorRequest) -> Reply {
    let version = ctx.version();
    Reply::later(async move {
        let keys: Vec<String> = if version >= 4 {
            req.coordinator_keys.iter().map(|k| k.to_string()).collect()
        } else {
            vec![req.key.to_string()]
        };
        let mut created = None;
        if req.key_type == KEY_TYPE_GROUP {
            created = Some(ctx.apis.groups.ensure_offsets_topic().await);
        } else if req.key_type == KEY_TYPE_TRANSACTION {
            created = Some(ctx.apis.txns.ensure_state_topic().await);
        }
        let coordinators: Vec<Coordinator> = keys
            .into_iter()
            .map(|key| {
                // Authorization: DESCRIBE on the group or transactional id.
                let (resource, code) = match req.key_type {
                    KEY_TYPE_TRANSACTION => (Resource::transactional_id(&key), TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
                    _ => (Resource::group(&key), GROUP_AUTHORIZATION_FAILED),
                };
                if matches!(req.key_type, KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION) && !ctx.authorize(AclOperation::Describe, &resource) {
                    return Coordinator::default()
                        .with_key(str_bytes(key.clone()))
                        .with_node_id(WireBrokerId(-1))
                        .with_host(str_bytes(""))
                        .with_port(-1)
                        .with_error_code(code)
                        .with_error_message(Some(str_bytes(message(code))));
                }
                lookup(&ctx.apis, &ctx.listener.name, req.key_type, key, created.as_ref())
            })
            .collect();
        let resp = if version >= 4 {
            FindCoordinatorResponse::default().with_coordinators(coordinators)
        } else {
            let c = coordinators.into_iter().next().unwrap_or_default();
            let resp = FindCoordinatorResponse::default()
                .with_error_code(c.error_code)
                .with_node_id(c.node_id)
                .with_host(c.host)
                .with_port(c.port);
            if version >= 1 {
                resp.with_error_message(c.error_message)
            } else {
                resp
            }
        };
        ResponseKind::FindCoordinator(resp)
    })
}

fn lookup(
    apis: &KafkaApis,
    listener: &str,
    key_type: i8,
    key: String,
    created: Option<&Result<(), crate::group::CoordinatorError>>,
) -> Coordinator {
    let base = Coordinator::default().with_key(str_bytes(key.clone())).with_node_id(WireBrokerId(-1)).with_host(str_bytes("")).with_port(-1);
    match key_type {
        KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION => {}
        _ => {
            return base.with_error_code(E::InvalidRequest.code()).with_error_message(Some(str_bytes(format!("unknown key type {key_type}"))));
        }
    }
    if let Some(Err(e)) = created {
        return base.with_error_code(coordinator_error_code(e)).with_error_message(Some(str_bytes(e.to_string())));
    }
    let coordinator = if key_type == KEY_TYPE_TRANSACTION { apis.txns.coordinator_of(&key) } else { apis.groups.coordinator_of(&key) };
    match coordinator {
        Ok(b) => match b.endpoint(listener) {
            Some((host, port)) => base
                .with_error_code(0)
                .with_node_id(WireBrokerId(b.broker_id.0))
                .with_host(str_bytes(host.to_string()))
                .with_port(i32::from(port)),
            // Kafka's answer when the coordinator has no endpoint on the client's listener.
            None => base
                .with_error_code(E::CoordinatorNotAvailable.code())
                .with_error_message(Some(str_bytes(format!("the coordinator has no {listener} listener")))),
        },
        Err(e) => base.with_error_code(coordinator_error_code(&e)).with_error_message(Some(str_bytes(e.to_string()))),
    }
}
