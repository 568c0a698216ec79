//! DescribeCluster: the cluster id, the active controller and the brokers.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId as WireBrokerId, DescribeClusterRequest, DescribeClusterResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::authz::message;
use super::{Reply, RequestContext};
use crate::security::acl::{AclOperation, Resource};
use crate::protocol::str_bytes;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

const ENDPOINT_BROKERS: i8 = 1;

pub fn handle(ctx: RequestContext, req: DescribeClusterRequest) -> Reply {
    let image = ctx.apis.image();
    // Authorization: DESCRIBE on the cluster.
    if let Err(code) = ctx.authorize_cluster(AclOperation::Describe) {
        let resp = DescribeClusterResponse::default().with_error_code(code).with_error_message(Some(str_bytes(message(code))));
        return Reply::Now(ResponseKind::DescribeCluster(resp));
    }
    let resp = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(ctx.apis.cluster_id.clone()))
        .with_controller_id(WireBrokerId(super::metadata::active_controller(&ctx.apis)))
        .with_endpoint_type(req.endpoint_type);
    if ctx.version() >= 1 && req.endpoint_type != ENDPOINT_BROKERS {
        // Controller endpoints (KIP-919) are served once controllers run as their own quorum.
        let resp = resp
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(str_bytes("only broker endpoints are served")));
        return Reply::Now(ResponseKind::DescribeCluster(resp));
    }
    let brokers = image
        .brokers
        .values()
        .filter(|b| req.include_fenced_brokers || !b.fenced)
        .filter_map(|b| b.endpoint(&ctx.listener.name).map(|e| (b, e)))
        .map(|(b, (host, port))| {
            DescribeClusterBroker::default()
                .with_broker_id(WireBrokerId(b.broker_id.0))
                .with_host(str_bytes(host.to_string()))
                .with_port(i32::from(port))
                .with_rack(b.rack.clone().map(str_bytes))
                .with_is_fenced(ctx.version() >= 2 && b.fenced)
        })
        .collect();
    let resp = if req.include_cluster_authorized_operations {
        resp.with_cluster_authorized_operations(ctx.authorized_operations(&image, &Resource::cluster()))
    } else {
        resp
    };
    Reply::Now(ResponseKind::DescribeCluster(resp.with_brokers(brokers)))
}
