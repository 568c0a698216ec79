//! DescribeClientQuotas: the quota entities a filter matches, with all their values, from this
//! broker's metadata image (as a KRaft broker answers from its metadata cache).

use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::authz::message;
use super::{Reply, RequestContext};
use crate::security::acl::AclOperation;
use crate::handlers::errors::quota_error_code;
use crate::protocol::str_bytes;
use crate::quota::QuotaFilter;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

pub fn handle(ctx: RequestContext, req: DescribeClientQuotasRequest) -> Reply {
    let filter = QuotaFilter::from_components(
        req.components.iter().map(|c| (c.entity_type.as_str(), c.match_type, c._match.as_deref())),
        req.strict,
    );
    // Authorization: DESCRIBE_CONFIGS on the cluster.
    if let Err(code) = ctx.authorize_cluster(AclOperation::DescribeConfigs) {
        let resp = DescribeClientQuotasResponse::default().with_error_code(code).with_error_message(Some(str_bytes(message(code)))).with_entries(None);
        return Reply::Now(ResponseKind::DescribeClientQuotas(resp));
    }
    let resp = match filter {
        Err(e) => DescribeClientQuotasResponse::default()
            .with_error_code(quota_error_code(&e))
            .with_error_message(Some(str_bytes(e.to_string())))
            .with_entries(None),
        Ok(filter) => {
            let image = ctx.apis.image();
            let entries = image
                .client_quotas
                .describe(&filter)
                .map(|(entity, values)| {
                    EntryData::default()
                        .with_entity(
                            entity
                                .components()
                                .into_iter()
                                .map(|(t, n)| EntityData::default().with_entity_type(str_bytes(t)).with_entity_name(n.map(str_bytes)))
                                .collect(),
                        )
                        .with_values(values.iter().map(|(k, v)| ValueData::default().with_key(str_bytes(k.as_str())).with_value(*v)).collect())
                })
                .collect();
            DescribeClientQuotasResponse::default().with_entries(Some(entries))
        }
    };
    Reply::Now(ResponseKind::DescribeClientQuotas(resp))
}
