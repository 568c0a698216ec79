//! DescribeAcls: the ACLs a filter selects, grouped by resource pattern. Needs DESCRIBE on the
//! cluster; a filter with an unknown field is INVALID_REQUEST.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::authz::message;
use super::{Reply, RequestContext};
use crate::protocol::str_bytes;
use crate::security::acl::{
    AccessControlEntry, AclBindingFilter, AclOperation, AclPermissionType, PatternType,
    ResourcePattern, ResourceType,
};

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 3 };

pub fn handle(ctx: RequestContext, req: DescribeAclsRequest) -> Reply {
    let error = |code: i16, msg: String| {
        Reply::Now(ResponseKind::DescribeAcls(
            DescribeAclsResponse::default()
                .with_error_code(code)
                .with_error_message(Some(str_bytes(msg))),
        ))
    };
    if let Err(code) = ctx.authorize_cluster(AclOperation::Describe) {
        return error(code, message(code));
    }
    let filter = AclBindingFilter {
        resource_type: ResourceType::from_code(req.resource_type_filter),
        name: req.resource_name_filter.map(|s| s.to_string()),
        pattern_type: PatternType::from_code(req.pattern_type_filter),
        principal: req.principal_filter.map(|s| s.to_string()),
        host: req.host_filter.map(|s| s.to_string()),
        operation: AclOperation::from_code(req.operation),
        permission_type: AclPermissionType::from_code(req.permission_type),
    };
    if let Err(e) = filter.validate() {
        return error(E::InvalidRequest.code(), e.to_string());
    }
    let image = ctx.apis.image();
    let mut by_pattern: BTreeMap<&ResourcePattern, Vec<&AccessControlEntry>> = BTreeMap::new();
    for (_, b) in image.acls.matching(&filter) {
        by_pattern.entry(&b.pattern).or_default().push(&b.entry);
    }
    let resources = by_pattern
        .into_iter()
        .map(|(p, entries)| {
            DescribeAclsResource::default()
                .with_resource_type(p.resource_type.code())
                .with_resource_name(str_bytes(p.name.clone()))
                .with_pattern_type(p.pattern_type.code())
                .with_acls(entries.into_iter().map(description).collect())
        })
        .collect();
    Reply::Now(ResponseKind::DescribeAcls(DescribeAclsResponse::default().with_resources(resources)))
}

fn description(e: &AccessControlEntry) -> AclDescription {
    AclDescription::default()
        .with_principal(str_bytes(e.principal.clone()))
        .with_host(str_bytes(e.host.clone()))
        .with_operation(e.operation.code())
        .with_permission_type(e.permission_type.code())
}
