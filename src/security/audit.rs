//! The audit trail: one structured line (tracing target `strata::audit`) for every denied
//! request and every security change (ACLs created or deleted, client quotas altered, and
//! whatever else calls [`security_change`], such as credential changes), and the counter
//! `strata_authorization_total`.
//!
//! Lines carry `event` (`authorization`, `acl_create`, `acl_delete`, or the kind given to
//! [`security_change`]) and key=value fields, so a log pipeline can select them by target.

use std::collections::HashSet;
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
    /// Principals with their own label value. Read on every check, written once per new
    /// principal; never held across an await.
    labelled: RwLock<HashSet<String>>,
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
            labelled: RwLock::new(HashSet::new()),
        }
    }

    fn principal_label(&self, principal: &KafkaPrincipal) -> String {
        let name = principal.to_string();
        let known = self
            .labelled
            .read()
            .map(|set| set.contains(&name))
            .unwrap_or(false);
        if known {
            return name;
        }
        match self.labelled.write() {
            Ok(mut set) if set.len() < MAX_PRINCIPAL_LABELS => {
                set.insert(name.clone());
                name
            }
            _ => "other".into(),
        }
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
        self.authorizations
            .with_label_values(&[
                &self.principal_label(principal),
                operation.as_str(),
                resource_type.as_str(),
                result,
            ])
            .inc();
    }
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
        api = who.api,
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
        api = by.api,
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
        api = by.api,
        subject,
        "security change"
    );
}
