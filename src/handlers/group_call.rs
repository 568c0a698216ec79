//! Shared plumbing of the group handlers: route a request to its group's coordinator shard and
//! turn the reply (or why there is none) into a response.

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::ResponseKind;

use super::authz::GROUP_AUTHORIZATION_FAILED;
use super::{Reply, RequestContext};
use crate::group::{CoordinatorError, GroupRequest, GroupResponse};
use crate::handlers::errors::coordinator_error_code;
use crate::security::acl::{AclOperation, Resource};

/// Sends `request` to the shard of `group_id` if the principal may do `operation` on the
/// group (GROUP_AUTHORIZATION_FAILED otherwise); `respond` builds the response from the reply,
/// or from an error code when there is none (`None`).
pub(super) fn call(
    ctx: &RequestContext,
    group_id: &str,
    operation: AclOperation,
    request: GroupRequest,
    respond: impl Fn(Option<GroupResponse>, i16) -> ResponseKind + Send + 'static,
) -> Reply {
    if !ctx.authorize(operation, &Resource::group(group_id)) {
        return Reply::Now(respond(None, GROUP_AUTHORIZATION_FAILED));
    }
    let answer = |rx: Result<_, _>| async move {
        match rx {
            Err(e) => respond(None, coordinator_error_code(&e)),
            Ok(rx) => match rx.await {
                Ok(r) => respond(Some(r), 0),
                // The shard stopped (lost leadership, failed write) before answering.
                Err(_) => respond(None, E::NotCoordinator.code()),
            },
        }
    };
    match ctx.apis.groups.call(group_id, request.clone()) {
        Err(CoordinatorError::LoadInProgress) => {
            let groups = ctx.apis.groups.clone();
            let group_id = group_id.to_string();
            Reply::later(
                async move { answer(groups.call_when_loaded(group_id, request).await).await },
            )
        }
        rx => Reply::later(answer(rx)),
    }
}

/// The reply of `group_id`'s shard to `request`, for a handler already off the ordered path
/// that authorized the group itself; or the code to answer.
pub(super) async fn ask(
    ctx: &RequestContext,
    group_id: &str,
    request: GroupRequest,
) -> Result<GroupResponse, i16> {
    let groups = ctx.apis.groups.clone();
    let rx = groups
        .call_when_loaded(group_id.to_string(), request)
        .await
        .map_err(|e| coordinator_error_code(&e))?;
    // The shard stopped (lost leadership, failed write) before answering.
    rx.await.map_err(|_| E::NotCoordinator.code())
}

pub(super) fn client_id(ctx: &RequestContext) -> String {
    ctx.header
        .client_id
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_default()
}

/// As Kafka shows it: `/` and the address.
pub(super) fn client_host(ctx: &RequestContext) -> String {
    ctx.peer.map(|p| format!("/{}", p.ip())).unwrap_or_default()
}
