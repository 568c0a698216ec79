//! SASL settings of the node: the mechanisms each SASL listener accepts, the OAUTHBEARER
//! validation settings, re-authentication.

use super::listeners::listener_prefix;
use super::{ConfigError, NodeConfig};
use crate::client::SaslCredentials;
use crate::sasl::oauthbearer::OAuthBearerSettings;
use crate::sasl::{jaas_option, SaslMechanism};

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

    /// What this broker authenticates with to other brokers: `None` unless the inter-broker
    /// listener uses SASL; then `sasl.mechanism.inter.broker.protocol` (PLAIN or SCRAM, enabled
    /// on that listener) with the user name and password of the listener's
    /// `listener.name.<l>.<mechanism>.sasl.jaas.config`, as Kafka takes them.
    pub fn inter_broker_sasl(&self) -> Result<Option<SaslCredentials>, ConfigError> {
        let listener = self.inter_broker_listener()?.info;
        if !listener.security_protocol.uses_sasl() {
            return Ok(None);
        }
        const KEY: &str = "sasl.mechanism.inter.broker.protocol";
        let raw = self.get(KEY);
        let invalid = |key: String, value: &str, reason: String| ConfigError::InvalidValue {
            key,
            value: value.to_string(),
            reason,
        };
        let mechanism = match SaslMechanism::parse(&raw.trim().to_ascii_uppercase()) {
            Some(m @ (SaslMechanism::Plain | SaslMechanism::Scram(_))) => m,
            _ => return Err(invalid(KEY.into(), raw, format!("the inter-broker listener {} uses {}: brokers authenticate with PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", listener.name, listener.security_protocol))),
        };
        if !self.sasl_mechanisms(&listener.name)?.contains(&mechanism) {
            return Err(invalid(
                KEY.into(),
                raw,
                format!(
                    "{mechanism} is not in the sasl.enabled.mechanisms of the inter-broker listener {}",
                    listener.name
                ),
            ));
        }
        let jaas_key = format!("{}.sasl.jaas.config", mechanism.name().to_ascii_lowercase());
        let full_key = format!("{}{jaas_key}", listener_prefix(&listener.name));
        let jaas = self
            .listener_override(&listener.name, &jaas_key)
            .unwrap_or("");
        let module = match mechanism {
            SaslMechanism::Plain => "PlainLoginModule",
            _ => "ScramLoginModule",
        };
        if !jaas.contains(module) {
            return Err(invalid(full_key, "", format!("the inter-broker listener {} uses {mechanism}: set it to `org.apache.kafka.common.security.{}.{module} required username=\"...\" password=\"...\";`", listener.name, if module == "PlainLoginModule" { "plain" } else { "scram" })));
        }
        match (jaas_option(jaas, "username"), jaas_option(jaas, "password")) {
            (Some(username), Some(password)) if !username.is_empty() => {
                Ok(Some(SaslCredentials {
                    mechanism,
                    username,
                    password,
                }))
            }
            _ => Err(invalid(
                full_key,
                "(hidden)",
                "needs username=\"...\" and password=\"...\": the broker's own credentials for the inter-broker listener".into(),
            )),
        }
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
    fn inter_broker_credentials_come_from_the_listeners_jaas_config() {
        let base = [
            ("listeners", "INTERNAL://:1,CONTROLLER://:4"),
            (
                "listener.security.protocol.map",
                "INTERNAL:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
            ),
            ("inter.broker.listener.name", "INTERNAL"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| load(&[&base[..], extra].concat());
        let node = with(&[
            ("sasl.mechanism.inter.broker.protocol", "SCRAM-SHA-512"),
            (
                "listener.name.internal.scram-sha-512.sasl.jaas.config",
                r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="b-secret";"#,
            ),
        ])
        .expect("loads");
        let creds = node.inter_broker_sasl().unwrap().expect("SASL");
        assert_eq!(
            (
                creds.mechanism,
                creds.username.as_str(),
                creds.password.as_str()
            ),
            (
                SaslMechanism::Scram(crate::sasl::ScramMechanism::Sha512),
                "broker",
                "b-secret"
            )
        );
        // The password never reaches the config dump.
        assert!(!node.to_toml().contains("b-secret"), "{}", node.to_toml());
        let plain = with(&[(
            "listener.name.INTERNAL.PLAIN.sasl.jaas.config",
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required username=broker password=pw;"#,
        )])
        .expect("PLAIN is the default");
        let creds = plain.inter_broker_sasl().unwrap().expect("SASL");
        assert_eq!(
            (
                creds.mechanism,
                creds.username.as_str(),
                creds.password.as_str()
            ),
            (SaslMechanism::Plain, "broker", "pw")
        );
        for (extra, expect) in [
            (vec![], "listener.name.internal.plain.sasl.jaas.config"),
            (
                vec![("sasl.mechanism.inter.broker.protocol", "GSSAPI")],
                "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
            ),
            (
                vec![
                    ("sasl.mechanism.inter.broker.protocol", "SCRAM-SHA-256"),
                    ("sasl.enabled.mechanisms", "PLAIN"),
                ],
                "not in the sasl.enabled.mechanisms",
            ),
            (
                vec![(
                    "listener.name.internal.plain.sasl.jaas.config",
                    "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"b\";",
                )],
                "needs username",
            ),
        ] {
            let err = with(&extra).expect_err("refused");
            assert!(err.to_string().contains(expect), "{err}");
        }
        // A key password is hidden alike, at node level and per listener.
        let node = load(&[
            ("ssl.key.password", "kpw-node"),
            ("listener.name.plaintext.ssl.key.password", "kpw-listener"),
        ])
        .expect("loads");
        let printed = node.to_toml();
        assert!(
            !printed.contains("kpw-") && printed.contains("[hidden]"),
            "{printed}"
        );
        assert!(crate::config::is_sensitive("ssl.key.password"));
        assert!(!crate::config::is_sensitive("ssl.keystore.location"));
        // Not a SASL inter-broker listener: no credentials needed.
        let node = load(&[]).expect("loads");
        assert_eq!(node.inter_broker_sasl().unwrap(), None);
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
