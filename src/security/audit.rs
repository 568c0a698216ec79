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
    /// Principals with their own label value, and that value. Read on every check, written
    /// once per new principal; never held across an await.
    labelled: RwLock<HashMap<KafkaPrincipal, String>>,
}

impl AuditMetrics {
    pub fn new(r: &Registry) -> AuditMetrics {
        AuditMetrics {
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
