//! Kafka's listener model: `listeners`, `advertised.listeners`, `listener.security.protocol.map`,
//! `inter.broker.listener.name`, `controller.listener.names`, and the per-listener overrides
//! `listener.name.<name>.<key>` (the listener name lower-cased, as Kafka writes it).
//!
//! Every accepted connection belongs to one listener and knows its [`ListenerInfo`]; clients are
//! answered with the addresses of the listener they connected on, so a client of the SSL port is
//! never sent to a plaintext one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::defs::node_key;
use super::{parse_listeners, ConfigError, ConfigSource, Listener, NodeConfig};
use crate::net::tls::{ClientAuth, KeyPassword, PrincipalMapper, TlsSettings};

/// How a listener secures its connections (Kafka's `SecurityProtocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(s: &str) -> Option<SecurityProtocol> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(SecurityProtocol::Plaintext),
            "SSL" => Some(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Some(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Some(SecurityProtocol::SaslSsl),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// The connection runs inside TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// The client authenticates with SASL before its first other request.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl std::fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The listener a connection arrived on: what the connection code and handlers know of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListenerInfo {
    /// The listener's name as configured (`PLAINTEXT`, `SSL`, `INTERNAL`, ...).
    pub name: String,
    pub security_protocol: SecurityProtocol,
}

impl ListenerInfo {
    pub fn plaintext() -> ListenerInfo {
        ListenerInfo {
            name: "PLAINTEXT".into(),
            security_protocol: SecurityProtocol::Plaintext,
        }
    }
}

/// One client listener: where it binds and the address clients are told to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaListenerConfig {
    pub info: ListenerInfo,
    pub bind: Listener,
    pub advertised: Listener,
}

/// The prefix of a per-listener override of `key` (`listener.name.ssl.` + key).
pub fn listener_prefix(listener: &str) -> String {
    format!("listener.name.{}.", listener.to_ascii_lowercase())
}

/// The lower-cased mechanism of a `<mechanism>.sasl.jaas.config` key.
fn jaas_mechanism(inner: &str) -> Option<String> {
    let mechanism = inner
        .strip_suffix(".sasl.jaas.config")?
        .to_ascii_lowercase();
    crate::sasl::SaslMechanism::parse(&mechanism.to_ascii_uppercase()).map(|_| mechanism)
}

/// Keys that may be set per listener.
fn listener_scoped(key: &str) -> bool {
    key.starts_with("ssl.")
        || key == "sasl.enabled.mechanisms"
        || key == "max.connections"
        || key == "max.connection.creation.rate"
}

impl NodeConfig {
    /// Sets `listener.name.<name>.<key>` if `key` names such an override; `Ok(false)` if it is
    /// not of that shape.
    pub(super) fn set_listener_override(
        &mut self,
        key: &str,
        value: &str,
        source: ConfigSource,
    ) -> Result<bool, ConfigError> {
        let Some(rest) = key.strip_prefix("listener.name.") else {
            return Ok(false);
        };
        let Some((listener, inner)) = rest.split_once('.') else {
            return Ok(false);
        };
        if let Some(mechanism) = jaas_mechanism(inner) {
            // Kafka's `listener.name.<l>.<mechanism>.sasl.jaas.config`: the broker's own
            // credentials for that mechanism on that listener (see `inter_broker_sasl`).
            self.listener_values.insert(
                format!("{}{mechanism}.sasl.jaas.config", listener_prefix(listener)),
                (value.trim().to_string(), source),
            );
            return Ok(true);
        }
        let Some(def) = node_key(inner).filter(|d| listener_scoped(d.name)) else {
            return Err(ConfigError::UnknownKey {
                key: key.to_string(),
                source_name: format!("{source} (not a key that can be set per listener)"),
            });
        };
        let canonical = super::validate_value(def.name, def.kind, value)?;
        self.listener_values.insert(
            format!("{}{}", listener_prefix(listener), def.name),
            (canonical, source),
        );
        Ok(true)
    }

    /// `key` for `listener`: its `listener.name.<listener>.<key>` override, else the node value.
    pub fn listener_get(&self, listener: &str, key: &str) -> &str {
        self.listener_values
            .get(&format!("{}{key}", listener_prefix(listener)))
            .map(|(v, _)| v.as_str())
            .unwrap_or_else(|| self.get(key))
    }

    /// `listener.name.<listener>.<key>` if it is set.
    pub fn listener_override(&self, listener: &str, key: &str) -> Option<&str> {
        self.listener_values
            .get(&format!("{}{key}", listener_prefix(listener)))
            .map(|(v, _)| v.as_str())
    }

    /// Every per-listener override, by full key.
    pub fn listener_overrides(&self) -> impl Iterator<Item = (&str, &str, ConfigSource)> {
        self.listener_values
            .iter()
            .map(|(k, (v, s))| (k.as_str(), v.as_str(), *s))
    }

    pub fn controller_listener_names(&self) -> Vec<String> {
        self.get("controller.listener.names")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn is_controller_listener(&self, name: &str) -> bool {
        self.controller_listener_names().iter().any(|n| n == name)
    }

    /// `listener.security.protocol.map`, parsed.
    pub fn security_protocol_map(&self) -> Result<BTreeMap<String, SecurityProtocol>, ConfigError> {
        let raw = self.get("listener.security.protocol.map");
        let mut out = BTreeMap::new();
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let invalid = |reason: &str| ConfigError::InvalidValue {
                key: "listener.security.protocol.map".into(),
                value: item.into(),
                reason: reason.into(),
            };
            let (name, protocol) = item
                .split_once(':')
                .ok_or_else(|| invalid("expected NAME:PROTOCOL"))?;
            let protocol = SecurityProtocol::parse(protocol)
                .ok_or_else(|| invalid("protocols are PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"))?;
            out.insert(name.trim().to_string(), protocol);
        }
        Ok(out)
    }

    /// The security protocol of listener `name`. A controller listener missing from the map is
    /// PLAINTEXT (Kafka does the same for its default map).
    pub fn security_protocol(&self, name: &str) -> Result<SecurityProtocol, ConfigError> {
        if let Some(p) = self.security_protocol_map()?.get(name) {
            return Ok(*p);
        }
        if self.is_controller_listener(name) {
            return Ok(SecurityProtocol::Plaintext);
        }
        Err(ConfigError::InvalidValue {
            key: "listener.security.protocol.map".into(),
            value: self.get("listener.security.protocol.map").into(),
            reason: format!("listener {name} has no security protocol in the map"),
        })
    }

    /// The client listeners (every listener but the controller's), each with its protocol and
    /// advertised address, in `listeners` order.
    pub fn kafka_listeners(&self) -> Result<Vec<KafkaListenerConfig>, ConfigError> {
        let advertised = parse_listeners("advertised.listeners", self.get("advertised.listeners"))?;
        let listeners = self.listeners()?;
        for a in &advertised {
            if !listeners.iter().any(|l| l.name == a.name) {
                return Err(ConfigError::InvalidValue {
                    key: "advertised.listeners".into(),
                    value: self.get("advertised.listeners").into(),
                    reason: format!("{} is not in listeners", a.name),
                });
            }
        }
        let mut out = Vec::new();
        for bind in listeners {
            if self.is_controller_listener(&bind.name) {
                continue;
            }
            if out
                .iter()
                .any(|l: &KafkaListenerConfig| l.info.name == bind.name)
            {
                return Err(ConfigError::InvalidValue {
                    key: "listeners".into(),
                    value: self.get("listeners").into(),
                    reason: format!("listener {} is named twice", bind.name),
                });
            }
            let advertised = advertised
                .iter()
                .find(|a| a.name == bind.name)
                .cloned()
                .unwrap_or_else(|| {
                    let mut l = bind.clone();
                    if l.host.is_empty() || l.host == "0.0.0.0" || l.host == "::" {
                        l.host = "127.0.0.1".into();
                    }
                    l
                });
            out.push(KafkaListenerConfig {
                info: ListenerInfo {
                    security_protocol: self.security_protocol(&bind.name)?,
                    name: bind.name.clone(),
                },
                bind,
                advertised,
            });
        }
        if out.is_empty() {
            return Err(ConfigError::InvalidValue {
                key: "listeners".into(),
                value: self.get("listeners").into(),
                reason: "no client listener (only controller listeners)".into(),
            });
        }
        Ok(out)
    }

    /// The listener brokers replicate over: `inter.broker.listener.name`, else the first client
    /// listener. Its advertised address is the one a broker registers as its own.
    pub fn inter_broker_listener(&self) -> Result<KafkaListenerConfig, ConfigError> {
        let listeners = self.kafka_listeners()?;
        let name = self.get("inter.broker.listener.name");
        if name.is_empty() {
            return Ok(listeners
                .into_iter()
                .next()
                .expect("kafka_listeners is never empty"));
        }
        listeners
            .into_iter()
            .find(|l| l.info.name == name)
            .ok_or_else(|| ConfigError::InvalidValue {
                key: "inter.broker.listener.name".into(),
                value: name.into(),
                reason: "not a client listener in listeners".into(),
            })
    }

    /// The controller listener this node listens on (the first of `controller.listener.names`
    /// found in `listeners`), with its protocol.
    pub fn controller_listener(&self) -> Result<Option<(Listener, SecurityProtocol)>, ConfigError> {
        let listeners = self.listeners()?;
        for name in self.controller_listener_names() {
            if let Some(l) = listeners.iter().find(|l| l.name == name) {
                return Ok(Some((l.clone(), self.security_protocol(&name)?)));
            }
        }
        Ok(None)
    }

    /// The protocol of the controller RPC between nodes: the first controller listener name's.
    pub fn controller_security_protocol(&self) -> Result<SecurityProtocol, ConfigError> {
        match self.controller_listener_names().first() {
            Some(name) => self.security_protocol(name),
            None => Ok(SecurityProtocol::Plaintext),
        }
    }

    /// The TLS settings of `listener` (its `listener.name.<name>.ssl.*` over `ssl.*`).
    /// `ssl.keystore.location` (key and chain in one PEM file) wins over the librdkafka-style
    /// `ssl.certificate.location` + `ssl.key.location`; `ssl.truststore.location` over
    /// `ssl.ca.location`.
    pub fn tls_settings(&self, listener: &str) -> TlsSettings {
        let path = |k: &str| {
            Some(self.listener_get(listener, k))
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let list = |k: &str| {
            self.listener_get(listener, k)
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        };
        let (certificate, key) = match path("ssl.keystore.location") {
            Some(p) => (Some(p.clone()), Some(p)),
            None => (path("ssl.certificate.location"), path("ssl.key.location")),
        };
        TlsSettings {
            certificate,
            key,
            truststore: path("ssl.truststore.location").or_else(|| path("ssl.ca.location")),
            client_auth: match self.listener_get(listener, "ssl.client.auth") {
                "required" => ClientAuth::Required,
                "requested" => ClientAuth::Requested,
                _ => ClientAuth::None,
            },
            verify_hostname: self.listener_get(listener, "ssl.endpoint.identification.algorithm")
                == "https",
            handshake_timeout: Duration::from_millis(
                self.listener_get(listener, "ssl.handshake.timeout.ms")
                    .parse::<i64>()
                    .unwrap_or(10_000)
                    .max(1) as u64,
            ),
            key_password: Some(self.listener_get(listener, "ssl.key.password"))
                .filter(|p| !p.is_empty())
                .map(|p| KeyPassword(p.to_string())),
            enabled_protocols: list("ssl.enabled.protocols"),
            cipher_suites: list("ssl.cipher.suites"),
        }
    }

    /// `ssl.principal.mapping.rules` of `listener`, parsed.
    pub fn principal_mapper(&self, listener: &str) -> Result<PrincipalMapper, ConfigError> {
        let rules = self.listener_get(listener, "ssl.principal.mapping.rules");
        PrincipalMapper::parse(rules).map_err(|e| ConfigError::InvalidValue {
            key: format!("{}ssl.principal.mapping.rules", listener_prefix(listener)),
            value: rules.into(),
            reason: e.to_string(),
        })
    }

    /// Listener checks that single values cannot express.
    pub(super) fn check_listeners(&self) -> Result<(), ConfigError> {
        let listeners = self.kafka_listeners()?;
        self.inter_broker_sasl()?;
        self.controller_listener()?;
        for l in &listeners {
            refuse_unsupported(self, &l.info)?;
            if l.info.security_protocol.uses_tls() {
                self.principal_mapper(&l.info.name)?;
                if self.tls_settings(&l.info.name).certificate.is_none() {
                    return Err(ConfigError::InvalidValue {
                        key: format!("{}ssl.keystore.location", listener_prefix(&l.info.name)),
                        value: String::new(),
                        reason: format!("listener {} uses {} and needs a certificate: set ssl.keystore.location, or ssl.certificate.location and ssl.key.location", l.info.name, l.info.security_protocol),
                    });
                }
            }
        }
        if let Some(name) = self.controller_listener_names().first() {
            let tls = self.tls_settings(name);
            if self.security_protocol(name)?.uses_tls()
                && (tls.certificate.is_none() || tls.truststore.is_none())
            {
                return Err(ConfigError::InvalidValue {
                    key: format!("{}ssl.keystore.location", listener_prefix(name)),
                    value: String::new(),
                    reason: format!("the controller listener {name} uses SSL: nodes present a certificate and verify their peers', so it needs ssl.keystore.location (or ssl.certificate.location and ssl.key.location) and ssl.truststore.location"),
                });
            }
        }
        if self.controller_security_protocol()?.uses_sasl() {
            return Err(ConfigError::InvalidValue {
                key: "listener.security.protocol.map".into(),
                value: self.get("listener.security.protocol.map").into(),
                reason: "the controller RPC is not the Kafka protocol and has no SASL: secure it with SSL (nodes authenticate one another with certificates)".into(),
            });
        }
        for key in ["ssl.keystore.type", "ssl.truststore.type"] {
            if !self.get(key).eq_ignore_ascii_case("PEM") {
                return Err(ConfigError::InvalidValue {
                    key: key.into(),
                    value: self.get(key).into(),
                    reason: "only PEM is supported".into(),
                });
            }
        }
        Ok(())
    }
}

/// A listener whose protocol this broker cannot serve yet.
fn refuse_unsupported(node: &NodeConfig, info: &ListenerInfo) -> Result<(), ConfigError> {
    if info.security_protocol.uses_sasl() {
        node.sasl_mechanisms(&info.name)?;
    }
    Ok(())
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
    fn defaults_are_one_plaintext_listener() {
        let cfg = load(&[]).expect("load");
        let ls = cfg.kafka_listeners().expect("listeners");
        assert_eq!(ls.len(), 1);
        assert_eq!(ls[0].info, ListenerInfo::plaintext());
        assert_eq!(ls[0].bind.port, 9092);
        assert_eq!(
            cfg.inter_broker_listener().expect("ib").info.name,
            "PLAINTEXT"
        );
        let (c, p) = cfg.controller_listener().expect("ok").expect("controller");
        assert_eq!(
            (c.name.as_str(), c.port, p),
            ("CONTROLLER", 9093, SecurityProtocol::Plaintext)
        );
    }

    #[test]
    fn several_listeners_with_the_map_and_advertised_addresses() {
        let cfg = load(&[
            (
                "listeners",
                "INTERNAL://0.0.0.0:9094,PLAINTEXT://0.0.0.0:9092,SSL://:9093,CONTROLLER://127.0.0.1:9095",
            ),
            ("advertised.listeners", "SSL://broker1.example:19093,INTERNAL://10.0.0.1:9094"),
            (
                "listener.security.protocol.map",
                "INTERNAL:SSL,PLAINTEXT:PLAINTEXT,SSL:SSL",
            ),
            ("inter.broker.listener.name", "INTERNAL"),
            ("listener.name.ssl.ssl.client.auth", "required"),
            ("ssl.keystore.location", "/etc/strata/broker.pem"),
            ("ssl.truststore.location", "/etc/strata/ca.pem"),
            ("listener.name.ssl.ssl.keystore.location", ""),
            ("listener.name.ssl.ssl.certificate.location", "/etc/strata/public.pem"),
            ("listener.name.ssl.ssl.key.location", "/etc/strata/public.key"),
            ("listener.name.ssl.ssl.ca.location", "/etc/strata/clients-ca.pem"),
            ("listener.name.ssl.ssl.truststore.location", ""),
        ])
        .expect("load");
        let ls = cfg.kafka_listeners().expect("listeners");
        let names: Vec<_> = ls.iter().map(|l| l.info.name.as_str()).collect();
        assert_eq!(names, ["INTERNAL", "PLAINTEXT", "SSL"]);
        assert_eq!(ls[0].info.security_protocol, SecurityProtocol::Ssl);
        assert_eq!(
            (ls[0].advertised.host.as_str(), ls[0].advertised.port),
            ("10.0.0.1", 9094)
        );
        assert_eq!(
            (ls[1].advertised.host.as_str(), ls[1].advertised.port),
            ("127.0.0.1", 9092)
        );
        assert_eq!(ls[2].advertised.host, "broker1.example");
        assert_eq!(
            cfg.inter_broker_listener().expect("ib").info.name,
            "INTERNAL"
        );
        assert_eq!(cfg.listener_get("SSL", "ssl.client.auth"), "required");
        assert_eq!(cfg.listener_get("INTERNAL", "ssl.client.auth"), "none");
        let internal = cfg.tls_settings("INTERNAL");
        assert_eq!(
            internal.certificate,
            Some(PathBuf::from("/etc/strata/broker.pem"))
        );
        assert_eq!(internal.key, internal.certificate);
        assert_eq!(
            internal.truststore,
            Some(PathBuf::from("/etc/strata/ca.pem"))
        );
        assert!(internal.verify_hostname);
        let ssl = cfg.tls_settings("SSL");
        assert_eq!(
            ssl.certificate,
            Some(PathBuf::from("/etc/strata/public.pem"))
        );
        assert_eq!(ssl.key, Some(PathBuf::from("/etc/strata/public.key")));
        assert_eq!(
            ssl.truststore,
            Some(PathBuf::from("/etc/strata/clients-ca.pem"))
        );
        assert_eq!(ssl.client_auth, ClientAuth::Required);
    }

    #[test]
    fn bad_listener_configs_are_named() {
        let err = load(&[("listeners", "FOO://:1,CONTROLLER://:2")]).expect_err("must fail");
        assert!(
            err.to_string().contains("FOO has no security protocol"),
            "{err}"
        );
        let err = load(&[("inter.broker.listener.name", "SSL")]).expect_err("must fail");
        assert!(
            err.to_string().contains("inter.broker.listener.name"),
            "{err}"
        );
        let err = load(&[("advertised.listeners", "SSL://h:1")]).expect_err("must fail");
        assert!(err.to_string().contains("not in listeners"), "{err}");
        let err = load(&[("listener.name.ssl.log.dirs", "/x")]).expect_err("must fail");
        assert!(
            err.to_string().contains("listener.name.ssl.log.dirs"),
            "{err}"
        );
        let err = load(&[("listeners", "SSL://:1")]).expect_err("must fail");
        assert!(err.to_string().contains("needs a certificate"), "{err}");
        let err = load(&[
            ("listeners", "SSL://:1"),
            ("ssl.keystore.location", "/k.pem"),
            ("ssl.principal.mapping.rules", "RULE:x"),
        ])
        .expect_err("must fail");
        assert!(
            err.to_string().contains("ssl.principal.mapping.rules"),
            "{err}"
        );
        let err = load(&[("ssl.client.auth", "sometimes")]).expect_err("must fail");
        assert!(err.to_string().contains("ssl.client.auth"), "{err}");
        let err =
            load(&[("listener.security.protocol.map", "PLAINTEXT:TLS")]).expect_err("must fail");
        assert!(err.to_string().contains("PLAINTEXT:TLS"), "{err}");
    }
}
