//! DeleteAcls: remove every ACL each filter selects, in one commit. Needs ALTER on the
//! cluster; a filter with an unknown field is INVALID_REQUEST on its own and deletes nothing.

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::authz::message;
use super::{Reply, RequestContext};
use crate::controller::decide_delete_acls;
use crate::handlers::errors::controller_error_code;
use crate::protocol::str_bytes;
use crate::security::acl::{
    AclBinding, AclBindingFilter, AclOperation, AclPermissionType, PatternType, ResourceType,
};
use crate::security::audit;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 3 };

fn filter(f: &DeleteAclsFilter) -> AclBindingFilter {
    AclBindingFilter {
        resource_type: ResourceType::from_code(f.resource_type_filter),
        name: f.resource_name_filter.as_ref().map(|s| s.to_string()),
        pattern_type: PatternType::from_code(f.pattern_type_filter),
        principal: f.principal_filter.as_ref().map(|s| s.to_string()),
        host: f.host_filter.as_ref().map(|s| s.to_string()),
        operation: AclOperation::from_code(f.operation),
        permission_type: AclPermissionType::from_code(f.permission_type),
    }
}

fn failed(code: i16, msg: String) -> DeleteAclsFilterResult {
    DeleteAclsFilterResult::default()
        .with_error_code(code)
        .with_error_message(Some(str_bytes(msg)))
}

fn matching(b: &AclBinding) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl::default()
        .with_resource_type(b.pattern.resource_type.code())
        .with_resource_name(str_bytes(b.pattern.name.clone()))
        .with_pattern_type(b.pattern.pattern_type.code())
        .with_principal(str_bytes(b.entry.principal.clone()))
        .with_host(str_bytes(b.entry.host.clone()))
        .with_operation(b.entry.operation.code())
        .with_permission_type(b.entry.permission_type.code())
}

pub fn handle(ctx: RequestContext, req: DeleteAclsRequest) -> Reply {
    if let Err(code) = ctx.authorize_cluster(AclOperation::Alter) {
        let results = req.filters.iter().map(|_| failed(code, message(code))).collect();
        return Reply::Now(ResponseKind::DeleteAcls(DeleteAclsResponse::default().with_filter_results(results)));
    }
    let parsed: Vec<Result<AclBindingFilter, String>> = req
        .filters
        .iter()
        .map(|f| {
            let f = filter(f);
            f.validate().map(|()| f).map_err(|e| e.to_string())
        })
        .collect();
    Reply::later(async move {
        let valid: Vec<AclBindingFilter> = parsed.iter().filter_map(|p| p.as_ref().ok()).cloned().collect();
        let committed = if valid.is_empty() {
            Ok(Vec::new())
        } else {
            ctx.apis.commit(|image| Ok(decide_delete_acls(image, &valid))).await
        };
        let results = match committed {
            Err(e) => {
                tracing::warn!(error = %e, "committing ACL deletions failed");
                let code = controller_error_code(&e);
                parsed
                    .iter()
                    .map(|p| match p {
                        Ok(_) => failed(code, e.to_string()),
                        Err(m) => failed(E::InvalidRequest.code(), m.clone()),
                    })
                    .collect()
            }
            Ok(matched) => {
                let mut audited = std::collections::BTreeSet::new();
                let mut matched = matched.into_iter();
                parsed
                    .iter()
                    .map(|p| match p {
                        Err(m) => failed(E::InvalidRequest.code(), m.clone()),
                        Ok(_) => {
                            let acls = matched.next().unwrap_or_default();
                            for (id, b) in &acls {
                                if audited.insert(*id) {
                                    ctx.with_requester(|who| audit::acl_change("acl_delete", who, *id, b));
                                }
                            }
                            DeleteAclsFilterResult::default()
                                .with_matching_acls(acls.iter().map(|(_, b)| matching(b)).collect())
                        }
                    })
                    .collect()
            }
        };
        ResponseKind::DeleteAcls(DeleteAclsResponse::default().with_filter_results(results))
    })
}
