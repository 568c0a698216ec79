//! The audit trail: one structured line (tracing target `strata::audit`) for every denied
//! request and every security change (ACLs created or deleted, client quotas altered, and
//! whatever else calls [`security_change`], such as credential changes), and the counter
//! `strata_authorization_total`.
//!
//! Lines carry `event` (`authorization`, `acl_create`, `acl_delete`, or the kind given to
//! [`security_change`]) and key=value fields, so a log pipeline can select them by target.

use std::collections::HashMap;
use std::sync::RwLock;

use prometheus::{IntCounterVec, Registry};

use super::acl::{AclBinding, AclId, AclOperation, Decision, Resource, ResourceType};
use super::{KafkaPrincipal, Requester};
use crate::metrics::counter_vec;

/// The tracing target of audit lines.
pub const TARGET: &str = "strata::audit";

/// Distinct principals that get their own label value; later ones are counted as `other`, so
/// a flood of one-off principals cannot grow the series without bound.
pub const MAX_PRINCIPAL_LABELS: usize = 100;

/// Authorization outcomes, by principal, operation, resource type and result.
#[derive(Debug)]
pub struct AuditMetrics {
    pub authorizations: IntCounterVec,
    /// Denials by resource type, without the principal: few series, every one exported at zero
    /// from the start so that an alert on a burst of denials has a series to watch.
    pub denials: IntCounterVec,
    /// Principals with their own label value, and that value. Read on every check, written
    /// once per new principal; never held across an await.
    labelled: RwLock<HashMap<KafkaPrincipal, String>>,
}

impl AuditMetrics {
    pub fn new(r: &Registry) -> AuditMetrics {
        let denials = counter_vec(
            r,
            "strata_authorization_denied_total",
            "Requests refused by the authorizer, by resource type (strata_authorization_total has the principal and operation).",
            &["resource_type"],
        );
        for t in ResourceType::ALL_VALUES {
            if !matches!(t, ResourceType::Unknown | ResourceType::Any) {
                denials.with_label_values(&[t.as_str()]);
            }
        }
        AuditMetrics {
            denials,
            authorizations: counter_vec(
                r,
                "strata_authorization_total",
                "Authorization checks by principal (the first 100 distinct principals; the rest as 'other'), operation, resource type and result (allowed, denied).",
                &["principal", "operation", "resource_type", "result"],
            ),
            labelled: RwLock::new(HashMap::new()),
        }
    }

    fn count_with(&self, principal: &KafkaPrincipal, labels: [&str; 3]) {
        let [operation, resource_type, result] = labels;
        let inc = |p: &str| {
            self.authorizations
                .with_label_values(&[p, operation, resource_type, result])
                .inc()
        };
        if let Some(label) = self
            .labelled
            .read()
            .ok()
            .and_then(|m| m.get(principal).cloned())
        {
            return inc(&label);
        }
        let label = match self.labelled.write() {
            Ok(mut m) if m.len() < MAX_PRINCIPAL_LABELS || m.contains_key(principal) => m
                .entry(principal.clone())
                .or_insert_with(|| principal.to_string())
                .clone(),
            _ => "other".to_string(),
        };
        inc(&label)
    }

    pub fn count(
        &self,
        principal: &KafkaPrincipal,
        operation: AclOperation,
        resource_type: ResourceType,
        decision: Decision,
    ) {
        let result = if decision.is_allowed() {
            "allowed"
        } else {
            self.denials
                .with_label_values(&[resource_type.as_str()])
                .inc();
            "denied"
        };
        self.count_with(
            principal,
            [operation.as_str(), resource_type.as_str(), result],
        );
    }
}

/// Kafka's name of an API key (`Produce`).
fn api_name(key: i16) -> String {
    kafka_protocol::messages::ApiKey::try_from(key)
        .map(|k| format!("{k:?}"))
        .unwrap_or_else(|_| key.to_string())
}

/// A request refused.
pub fn denied(
    who: Requester<'_>,
    operation: AclOperation,
    resource: &Resource<'_>,
    decision: Decision,
) {
    tracing::info!(
        target: TARGET,
        event = "authorization",
        result = "denied",
        principal = %who.principal,
        host = who.host,
        api = api_name(who.api_key),
        operation = operation.as_str(),
        resource_type = resource.resource_type.as_str(),
        resource_name = resource.name,
        reason = decision.reason(),
        "request denied"
    );
}

/// An ACL created (`event=acl_create`) or deleted (`event=acl_delete`) by `by`.
pub fn acl_change(event: &'static str, by: Requester<'_>, id: AclId, binding: &AclBinding) {
    tracing::info!(
        target: TARGET,
        event,
        principal = %by.principal,
        host = by.host,
        api = api_name(by.api_key),
        acl_id = %id,
        acl = %binding,
        "acl changed"
    );
}

/// Any other security-relevant change (client quotas, credentials): `kind` names it
/// (`client_quota`, `scram_credential`), `subject` what changed (an entity, a user).
pub fn security_change(kind: &'static str, by: Requester<'_>, subject: &str) {
    tracing::info!(
        target: TARGET,
        event = kind,
        principal = %by.principal,
        host = by.host,
        api = api_name(by.api_key),
        subject,
        "security change"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines `f` writes on the audit target, as the fmt subscriber prints them.
    fn audit_lines(f: impl FnOnce()) -> String {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("buffer").extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let out = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .without_time()
            .with_env_filter(tracing_subscriber::EnvFilter::new(format!("{TARGET}=info")))
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buffer.0.lock().expect("buffer").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn denials_and_changes_are_one_structured_line_each() {
        use crate::security::acl::{
            AccessControlEntry, AclPermissionType, PatternType, ResourcePattern,
        };
        let principal = KafkaPrincipal::user("mallory");
        let who = Requester {
            principal: &principal,
            host: "10.0.0.7",
            api_key: 0,
        };
        let line = audit_lines(|| {
            denied(
                who,
                AclOperation::Write,
                &Resource::topic("orders"),
                Decision::DeniedByAcl,
            )
        });
        assert_eq!(
            line.trim(),
            "INFO strata::audit: request denied event=\"authorization\" result=\"denied\" principal=User:mallory \
             host=\"10.0.0.7\" api=\"Produce\" operation=\"WRITE\" resource_type=\"TOPIC\" resource_name=\"orders\" \
             reason=\"deny_acl\""
        );
        let binding = AclBinding {
            pattern: ResourcePattern {
                resource_type: ResourceType::Group,
                name: "g".into(),
                pattern_type: PatternType::Literal,
            },
            entry: AccessControlEntry {
                principal: "User:alice".into(),
                host: "*".into(),
                operation: AclOperation::Read,
                permission_type: AclPermissionType::Allow,
            },
        };
        let who = Requester {
            principal: &principal,
            host: "10.0.0.7",
            api_key: 30,
        };
        let line =
            audit_lines(|| acl_change("acl_create", who, AclId(uuid::Uuid::nil()), &binding));
        assert!(line.contains("event=\"acl_create\""), "{line}");
        assert!(line.contains("api=\"CreateAcls\""), "{line}");
        assert!(line.contains("acl=(resource=GROUP:LITERAL:g, principal=User:alice, host=*, operation=READ, permission=ALLOW)"), "{line}");
        let line = audit_lines(|| security_change("client_quota", who, "client-id=app"));
        assert!(
            line.contains("event=\"client_quota\"") && line.contains("subject=\"client-id=app\""),
            "{line}"
        );
        assert_eq!(line.lines().count(), 1);
    }

    #[test]
    fn principal_labels_are_capped() {
        let m = AuditMetrics::new(&Registry::new());
        for i in 0..MAX_PRINCIPAL_LABELS + 5 {
            let p = KafkaPrincipal::user(&format!("u{i}"));
            m.count(
                &p,
                AclOperation::Read,
                ResourceType::Topic,
                Decision::DeniedByAcl,
            );
        }
        m.count(
            &KafkaPrincipal::user("u0"),
            AclOperation::Read,
            ResourceType::Topic,
            Decision::AllowedByAcl,
        );
        let get = |p: &str, result: &str| {
            m.authorizations
                .with_label_values(&[p, "READ", "TOPIC", result])
                .get()
        };
        assert_eq!(get("User:u0", "denied"), 1);
        assert_eq!(get("User:u0", "allowed"), 1);
        assert_eq!(get("other", "denied"), 5);
        assert_eq!(get(&format!("User:u{}", MAX_PRINCIPAL_LABELS), "denied"), 0);
    }
}
