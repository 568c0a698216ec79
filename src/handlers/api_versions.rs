//! ApiVersions: the table of supported APIs, derived from the handler list.

use kafka_protocol::messages::api_versions_response::{ApiVersion, FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::{supported_apis, Reply, RequestContext};
use crate::protocol::str_bytes;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

/// Kafka's feature for the transaction protocol (KIP-890 part 2 at level 2), and the broker
/// config that sets its finalized level.
const TRANSACTION_VERSION: &str = "transaction.version";
const TRANSACTION_VERSION_KEY: &str = "strata.feature.transaction.version";

pub fn handle(ctx: RequestContext, _req: ApiVersionsRequest) -> Reply {
    let image = ctx.apis.image();
    let level = match image.broker_configs.get(TRANSACTION_VERSION_KEY) {
        Some(v) => v.parse().unwrap_or(0),
        None => ctx.apis.metadata.static_node_config().get_i32(TRANSACTION_VERSION_KEY) as i16,
    };
    // The features (v3+): what this broker supports, and the level clients are to use. The
    // epoch orders answers of brokers that saw different metadata (clients keep the newest).
    let resp = response(0)
        .with_supported_features(vec![SupportedFeatureKey::default().with_name(str_bytes(TRANSACTION_VERSION)).with_min_version(0).with_max_version(2)])
        .with_finalized_features_epoch(image.offset as i64)
        .with_finalized_features(if level > 0 {
            vec![FinalizedFeatureKey::default().with_name(str_bytes(TRANSACTION_VERSION)).with_min_version_level(level).with_max_version_level(level)]
        } else {
            Vec::new()
        });
    Reply::Now(ResponseKind::ApiVersions(resp))
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kafka_protocol::messages::ApiKey;

    use super::*;

    /// The table of docs/protocol.md: api key -> (name, Kafka 4.1's range, Strata's range or
    /// None where Strata does not serve the API).
    fn documented() -> BTreeMap<i16, (String, (i16, i16), Option<(i16, i16)>)> {
        fn range(s: &str) -> Option<(i16, i16)> {
            let (min, max) = s.split_once('-')?;
            Some((min.trim().parse().ok()?, max.trim().parse().ok()?))
        }
        let doc = include_str!("../../docs/protocol.md");
        let mut table = BTreeMap::new();
        for line in doc.lines().filter(|l| l.starts_with("| ")) {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let Ok(key) = cells[0].parse::<i16>() else { continue };
            let kafka = range(cells[2]).unwrap_or_else(|| panic!("bad Kafka range in {line:?}"));
            let strata = match cells[3] {
                "not served" => None,
                s => Some(range(s).unwrap_or_else(|| panic!("bad Strata range in {line:?}"))),
            };
            assert!(table.insert(key, (cells[1].to_string(), kafka, strata)).is_none(), "key {key} twice");
        }
        assert!(table.len() > 60, "the table in docs/protocol.md was not found");
        table
    }

    #[test]
    fn advertised_ranges_are_kafka_4_1s() {
        let documented = documented();
        let advertised = response(0).api_keys;
        for api in &advertised {
            let key = ApiKey::try_from(api.api_key).expect("a known key");
            let (name, kafka, strata) = documented
                .get(&api.api_key)
                .unwrap_or_else(|| panic!("{key:?} is advertised but Kafka 4.1 has no such API"));
            assert_eq!(name, &format!("{key:?}"), "the name of key {}", api.api_key);
            let ours = (api.min_version, api.max_version);
            assert_eq!(ours, *kafka, "{key:?}: advertised {ours:?}, Kafka 4.1 advertises {kafka:?}");
            assert_eq!(Some(ours), *strata, "{key:?}: docs/protocol.md says Strata serves {strata:?}");
        }
        for (key, (name, _, strata)) in &documented {
            if strata.is_some() {
                assert!(
                    advertised.iter().any(|a| a.api_key == *key),
                    "docs/protocol.md lists {name} as served, but it is not advertised"
                );
            }
        }
    }

    /// kafka-python infers the release from the newest version of marker APIs; these are the
    /// markers around 4.1 (its `infer_broker_version_from_api_versions`).
    #[test]
    fn a_release_inferring_client_concludes_4_1() {
        let max = |key: ApiKey| {
            response(0)
                .api_keys
                .iter()
                .find(|a| a.api_key == key as i16)
                .map(|a| a.max_version)
        };
        assert_eq!(max(ApiKey::Produce), Some(13), "4.1 is told by Produce v13");
        assert!(max(ApiKey::ListOffsets) < Some(11), "4.2 would be told by ListOffsets v11");
        assert!(max(ApiKey::DescribeLogDirs).is_none_or(|v| v < 5), "4.3 would be told by DescribeLogDirs v5");
        assert_eq!(max(ApiKey::ListOffsets), Some(10), "a 4.0/4.1 client sends ListOffsets v10");
    }
}
