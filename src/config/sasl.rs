//! SASL settings of the node: the mechanisms each SASL listener accepts, the OAUTHBEARER
//! validation settings, re-authentication.

use super::listeners::listener_prefix;
use super::{ConfigError, NodeConfig};
use crate::sasl::oauthbearer::OAuthBearerSettings;
use crate::sasl::SaslMechanism;

impl NodeConfig {
    /// `sasl.enabled.mechanisms` of `listener` (its `listener.name.<name>.` override first).
    pub fn sasl_mechanisms(&self, listener: &str) -> Result<Vec<SaslMechanism>, ConfigError> {
        let raw = self.listener_get(listener, "sasl.enabled.mechanisms");
        let key = || {
            if self.listener_overrides().any(|(k, _, _)| {
                k == format!("{}sasl.enabled.mechanisms", listener_prefix(listener))
            }) {
                format!("{}sasl.enabled.mechanisms", listener_prefix(listener))
            } else {
                "sasl.enabled.mechanisms".to_string()
            }
        };
        let mut out = Vec::new();
        for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let m = SaslMechanism::parse(&name.to_ascii_uppercase()).ok_or_else(|| ConfigError::InvalidValue {
                key: key(),
                value: raw.to_string(),
                reason: format!("unknown mechanism {name}: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER are supported"),
            })?;
            if !out.contains(&m) {
                out.push(m);
            }
        }
        if out.is_empty() {
            return Err(ConfigError::InvalidValue {
                key: key(),
                value: raw.to_string(),
                reason: format!("listener {listener} uses SASL and needs at least one mechanism"),
            });
        }
        if out.contains(&SaslMechanism::OAuthBearer)
            && self.get("sasl.oauthbearer.jwks.endpoint.url").is_empty()
        {
            return Err(ConfigError::InvalidValue {
                key: "sasl.oauthbearer.jwks.endpoint.url".into(),
                value: String::new(),
                reason: format!("listener {listener} enables OAUTHBEARER, whose tokens are checked against this JWKS"),
            });
        }
        Ok(out)
    }

    pub fn oauthbearer_settings(&self) -> OAuthBearerSettings {
        let issuer = self.get("sasl.oauthbearer.expected.issuer");
        OAuthBearerSettings {
            expected_issuer: (!issuer.is_empty()).then(|| issuer.to_string()),
            expected_audience: self
                .get("sasl.oauthbearer.expected.audience")
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(String::from)
                .collect(),
            sub_claim_name: self.get("sasl.oauthbearer.sub.claim.name").to_string(),
            clock_skew_s: self.get_i32("sasl.oauthbearer.clock.skew.seconds").max(0) as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(sets: &[(&str, &str)]) -> Result<NodeConfig, ConfigError> {
        let sets: Vec<(String, String)> = sets
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        NodeConfig::load(None, &[], &sets)
    }

    #[test]
    fn mechanisms_per_listener() {
        let node = load(&[
            (
                "listeners",
                "PLAINTEXT://:1,SASL_PLAINTEXT://:2,CONTROLLER://:4",
            ),
            (
                "listener.name.sasl_plaintext.sasl.enabled.mechanisms",
                "SCRAM-SHA-512",
            ),
        ])
        .expect("loads");
        assert_eq!(
            node.sasl_mechanisms("SASL_PLAINTEXT").unwrap(),
            vec![SaslMechanism::Scram(crate::sasl::ScramMechanism::Sha512)]
        );
        assert_eq!(node.sasl_mechanisms("SASL_SSL").unwrap().len(), 3);
        let err = load(&[
            (
                "listeners",
                "PLAINTEXT://:1,SASL_PLAINTEXT://:2,CONTROLLER://:4",
            ),
            ("sasl.enabled.mechanisms", "GSSAPI"),
        ])
        .expect_err("unknown");
        assert!(
            err.to_string().contains("unknown mechanism GSSAPI"),
            "{err}"
        );
        let err = load(&[
            (
                "listeners",
                "PLAINTEXT://:1,SASL_PLAINTEXT://:2,CONTROLLER://:4",
            ),
            ("sasl.enabled.mechanisms", "OAUTHBEARER"),
        ])
        .expect_err("no jwks");
        assert!(
            err.to_string()
                .contains("sasl.oauthbearer.jwks.endpoint.url"),
            "{err}"
        );
    }
}
