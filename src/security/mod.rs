//! Who a client is and what it may do: the principal, the ACL model and the authorization
//! decision ([`acl`]), the [`Authorizer`] every broker consults from its own metadata image,
//! and the audit log of denials and security changes ([`audit`]).
//!
//! The ACLs themselves are metadata (records in `controller`, folded into the image's
//! [`acl::AclIndex`]); this module holds no state of its own beyond the node's settings and
//! the metrics.

pub mod acl;
pub mod audit;

use std::collections::BTreeSet;

use prometheus::Registry;

use crate::config::NodeConfig;
use acl::{AclIndex, AclOperation, AuthorizerSettings, Decision, Resource};
pub use audit::AuditMetrics;

/// An authenticated identity, `type:name` as Kafka writes it (`User:alice`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KafkaPrincipal {
    pub principal_type: String,
    pub name: String,
}

impl KafkaPrincipal {
    /// `User:ANONYMOUS`, the principal of a connection nothing authenticated.
    pub fn anonymous() -> KafkaPrincipal {
        KafkaPrincipal::user(crate::quota::ANONYMOUS_USER)
    }

    pub fn user(name: &str) -> KafkaPrincipal {
        KafkaPrincipal {
            principal_type: "User".into(),
            name: name.into(),
        }
    }

    /// Parses `type:name`; the name may itself contain colons.
    pub fn parse(s: &str) -> Option<KafkaPrincipal> {
        let (t, name) = s.split_once(':')?;
        Some(KafkaPrincipal {
            principal_type: t.into(),
            name: name.into(),
        })
    }
}

impl std::fmt::Display for KafkaPrincipal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.principal_type, self.name)
    }
}

/// Whether any client listener authenticates its clients (SASL, or TLS with
/// `ssl.client.auth=required`). With none, every client is `User:ANONYMOUS` and
/// `allow.everyone.if.no.acl.found` defaults to true so that an unsecured broker stays open.
pub fn authentication_configured(node: &NodeConfig) -> bool {
    // An unparsable listener config fails the broker's start elsewhere; here it counts as
    // authenticating, the closed side.
    let Ok(listeners) = node.kafka_listeners() else {
        return true;
    };
    listeners.iter().any(|l| {
        l.info.security_protocol.uses_sasl()
            || (l.info.security_protocol.uses_tls()
                && node.listener_get(&l.info.name, "ssl.client.auth") == "required")
    })
}

/// The authorizer settings of a node config: `super.users` (semicolon-separated principals)
/// and `allow.everyone.if.no.acl.found` (empty: true exactly when no listener authenticates).
pub fn authorizer_settings(node: &NodeConfig) -> AuthorizerSettings {
    let super_users: BTreeSet<String> = node
        .get("super.users")
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let allow_everyone_if_no_acl_found = match node.get("allow.everyone.if.no.acl.found") {
        "true" => true,
        "false" => false,
        _ => !authentication_configured(node),
    };
    AuthorizerSettings {
        super_users,
        allow_everyone_if_no_acl_found,
    }
}

/// Kafka's `Authorizer`: decides from the ACLs of the caller's image and audits. Handlers
/// reach it through `KafkaApis`.
#[derive(Debug)]
pub struct Authorizer {
    settings: AuthorizerSettings,
    metrics: AuditMetrics,
}

/// The request side of a check: who asks, from where, through which API.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub principal: &'a KafkaPrincipal,
    /// The client's IP address as text (`127.0.0.1`), or empty when unknown.
    pub host: &'a str,
    /// The request's API key, named in the audit line.
    pub api_key: i16,
}

impl Authorizer {
    pub fn new(settings: AuthorizerSettings, registry: &Registry) -> Authorizer {
        Authorizer {
            settings,
            metrics: AuditMetrics::new(registry),
        }
    }

    pub fn settings(&self) -> &AuthorizerSettings {
        &self.settings
    }

    pub fn metrics(&self) -> &AuditMetrics {
        &self.metrics
    }

    /// Decides, counts the outcome and writes an audit line when it is a denial.
    pub fn authorize(
        &self,
        acls: &AclIndex,
        who: Requester<'_>,
        operation: AclOperation,
        resource: &Resource<'_>,
    ) -> bool {
        let decision = self.decide(acls, who, operation, resource);
        self.metrics
            .count(who.principal, operation, resource.resource_type, decision);
        if !decision.is_allowed() {
            audit::denied(who, operation, resource, decision);
        }
        decision.is_allowed()
    }

    /// Decides without counting or auditing: for listings that leave out what the principal
    /// may not see (all-topics metadata, ListGroups), where a left-out item is not a refusal.
    pub fn is_allowed(
        &self,
        acls: &AclIndex,
        who: Requester<'_>,
        operation: AclOperation,
        resource: &Resource<'_>,
    ) -> bool {
        self.decide(acls, who, operation, resource).is_allowed()
    }

    /// Whether the principal may do `operation` on some resource of `resource_type`
    /// ([`acl::authorize_by_resource_type`]); not audited (callers audit the check it backs).
    pub fn is_allowed_on_some(
        &self,
        acls: &AclIndex,
        who: Requester<'_>,
        operation: AclOperation,
        resource_type: acl::ResourceType,
    ) -> bool {
        acl::authorize_by_resource_type(
            acls,
            &self.settings,
            who.principal,
            who.host,
            operation,
            resource_type,
        )
    }

    /// Kafka's `authorized_operations` bit field: bit `op.code()` set for each operation the
    /// resource type supports that the principal may do on it. Not audited.
    pub fn authorized_operations(
        &self,
        acls: &AclIndex,
        who: Requester<'_>,
        resource: &Resource<'_>,
    ) -> i32 {
        resource
            .resource_type
            .supported_operations()
            .iter()
            .filter(|op| self.is_allowed(acls, who, **op, resource))
            .fold(0, |bits, op| bits | (1 << op.code()))
    }

    /// The decision itself, for callers that need the rule (tests, diagnostics).
    pub fn decide(
        &self,
        acls: &AclIndex,
        who: Requester<'_>,
        operation: AclOperation,
        resource: &Resource<'_>,
    ) -> Decision {
        acl::authorize(
            acls,
            &self.settings,
            who.principal,
            who.host,
            operation,
            resource,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(sets: &[(&str, &str)]) -> AuthorizerSettings {
        let sets: Vec<(String, String)> = sets
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        authorizer_settings(&NodeConfig::load(None, &[], &sets).expect("config"))
    }

    #[test]
    fn allow_everyone_defaults_to_open_only_while_nothing_authenticates() {
        assert!(settings(&[]).allow_everyone_if_no_acl_found);
        let sasl = [
            (
                "listeners",
                "SASL_PLAINTEXT://127.0.0.1:9092,PLAINTEXT://127.0.0.1:9094",
            ),
            ("inter.broker.listener.name", "PLAINTEXT"),
        ];
        assert!(!settings(&sasl).allow_everyone_if_no_acl_found);
        let open = [sasl[0], sasl[1], ("allow.everyone.if.no.acl.found", "true")];
        assert!(settings(&open).allow_everyone_if_no_acl_found);
        assert!(
            !settings(&[("allow.everyone.if.no.acl.found", "false")])
                .allow_everyone_if_no_acl_found
        );
        // TLS authenticates only when client certificates are required, per listener too.
        let tls = |extra: Option<(&'static str, &'static str)>| {
            let mut sets = vec![
                ("listeners", "SSL://127.0.0.1:9092"),
                ("ssl.certificate.location", "broker.pem"),
                ("ssl.key.location", "broker.key"),
            ];
            sets.extend(extra);
            settings(&sets).allow_everyone_if_no_acl_found
        };
        assert!(tls(None));
        assert!(tls(Some(("ssl.client.auth", "requested"))));
        assert!(!tls(Some(("ssl.client.auth", "required"))));
        assert!(!tls(Some((
            "listener.name.ssl.ssl.client.auth",
            "required"
        ))));
    }

    #[test]
    fn super_users_are_semicolon_separated_principals() {
        let s = settings(&[("super.users", "User:admin; User:ops;")]);
        assert_eq!(
            s.super_users.iter().map(String::as_str).collect::<Vec<_>>(),
            ["User:admin", "User:ops"]
        );
        let bad = vec![("super.users".to_string(), "admin".to_string())];
        assert!(NodeConfig::load(None, &[], &bad).is_err());
        let bad = vec![(
            "allow.everyone.if.no.acl.found".to_string(),
            "maybe".to_string(),
        )];
        assert!(NodeConfig::load(None, &[], &bad).is_err());
    }

    #[test]
    fn principals_parse_at_the_first_colon() {
        assert_eq!(
            KafkaPrincipal::parse("User:CN=a:b"),
            Some(KafkaPrincipal::user("CN=a:b"))
        );
        assert_eq!(KafkaPrincipal::parse("alice"), None);
        assert_eq!(KafkaPrincipal::anonymous().to_string(), "User:ANONYMOUS");
    }
}
