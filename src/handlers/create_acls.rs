//! CreateAcls: add ACLs, committed to the metadata log together. Needs ALTER on the cluster.
//! Each creation succeeds or fails alone: a malformed binding is INVALID_REQUEST with Kafka's
//! message; an ACL equal to an existing one is a success that writes nothing.

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::create_acls_request::AclCreation as WireCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::authz::message;
use super::{Reply, RequestContext};
use crate::controller::{decide_create_acls, AclCreation};
use crate::handlers::errors::controller_error_code;
use crate::protocol::str_bytes;
use crate::security::acl::{
    AccessControlEntry, AclBinding, AclId, AclOperation, AclPermissionType, PatternType,
    ResourcePattern, ResourceType,
};
use crate::security::audit;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 3 };

fn binding(c: &WireCreation) -> AclBinding {
    AclBinding {
        pattern: ResourcePattern {
            resource_type: ResourceType::from_code(c.resource_type),
            name: c.resource_name.to_string(),
            pattern_type: PatternType::from_code(c.resource_pattern_type),
        },
        entry: AccessControlEntry {
            principal: c.principal.to_string(),
            host: c.host.to_string(),
            operation: AclOperation::from_code(c.operation),
            permission_type: AclPermissionType::from_code(c.permission_type),
        },
    }
}

fn failed(code: i16, msg: String) -> AclCreationResult {
    AclCreationResult::default()
        .with_error_code(code)
        .with_error_message(Some(str_bytes(msg)))
}

pub fn handle(ctx: RequestContext, req: CreateAclsRequest) -> Reply {
    if let Err(code) = ctx.authorize_cluster(AclOperation::Alter) {
        let results = req.creations.iter().map(|_| failed(code, message(code))).collect();
        return Reply::Now(ResponseKind::CreateAcls(CreateAclsResponse::default().with_results(results)));
    }
    // Each valid creation with the id it gets if it is new.
    let parsed: Vec<Result<(AclId, AclBinding), String>> = req
        .creations
        .iter()
        .map(|c| {
            let b = binding(c);
            b.validate().map(|()| (AclId(uuid::Uuid::new_v4()), b)).map_err(|e| e.to_string())
        })
        .collect();
    Reply::later(async move {
        let valid: Vec<(AclId, AclBinding)> = parsed.iter().filter_map(|p| p.as_ref().ok()).cloned().collect();
        let committed = if valid.is_empty() {
            Ok(Vec::new())
        } else {
            ctx.apis
                .commit(|image| {
                    let (outcomes, records) = decide_create_acls(image, &valid);
                    Ok((outcomes, records))
                })
                .await
        };
        let results = match committed {
            Err(e) => {
                tracing::warn!(error = %e, "committing ACLs failed");
                let code = controller_error_code(&e);
                parsed
                    .iter()
                    .map(|p| match p {
                        Ok(_) => failed(code, e.to_string()),
                        Err(m) => failed(E::InvalidRequest.code(), m.clone()),
                    })
                    .collect()
            }
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter().zip(&valid);
                parsed
                    .iter()
                    .map(|p| match p {
                        Err(m) => failed(E::InvalidRequest.code(), m.clone()),
                        Ok(_) => {
                            if let Some((AclCreation::Created(id), (_, b))) = outcomes.next() {
                                ctx.with_requester(|who| audit::acl_change("acl_create", who, id, b));
                            }
                            AclCreationResult::default()
                        }
                    })
                    .collect()
            }
        };
        ResponseKind::CreateAcls(CreateAclsResponse::default().with_results(results))
    })
}
