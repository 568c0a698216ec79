//! ApiVersions: the table of supported APIs, derived from the handler list.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::{supported_apis, Reply, RequestContext};

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

pub fn handle(_ctx: RequestContext, _req: ApiVersionsRequest) -> Reply {
    Reply::Now(ResponseKind::ApiVersions(response(0)))
}

/// The response, also sent (at v0) with UNSUPPORTED_VERSION when a client asks for a newer
/// ApiVersions than this broker has, so it can retry with one it supports.
pub fn response(error_code: i16) -> ApiVersionsResponse {
    let api_keys = supported_apis()
        .iter()
        .map(|(key, range)| ApiVersion::default().with_api_key(*key as i16).with_min_version(range.min).with_max_version(range.max))
        .collect();
    ApiVersionsResponse::default().with_error_code(error_code).with_api_keys(api_keys)
}
