//! The authorization decision, a pure function of the ACLs, the settings and the request's
//! (principal, host, operation, resource). Kafka's `StandardAuthorizer` rules:
//!
//! 1. A super user (`super.users`) may do anything.
//! 2. The ACLs that cover the resource are those of its literal name, of the literal wildcard
//!    `*`, and of every prefixed pattern the name starts with. Of these, an ACL applies to the
//!    request when it names the principal or `type:*` of the principal's type, and the client's
//!    host or `*`.
//! 3. A DENY that applies for the operation (or ALL) denies, whatever else allows.
//! 4. An ALLOW that applies for the operation (or ALL) allows. An ALLOW of READ, WRITE, DELETE
//!    or ALTER also allows DESCRIBE, and ALTER_CONFIGS allows DESCRIBE_CONFIGS; the implication
//!    is for ALLOW only (a DENY of READ does not deny DESCRIBE).
//! 5. Otherwise the request is denied, except when no ACL at all covers the resource (for any
//!    principal: KAFKA-14435) and `allow.everyone.if.no.acl.found` is true.

use std::collections::BTreeSet;

use super::{AclIndex, AclOperation, AclPermissionType, Resource, WILDCARD_HOST};
use crate::security::KafkaPrincipal;

/// The authorizer's node settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerSettings {
    /// Principals (`User:admin`) that bypass ACLs.
    pub super_users: BTreeSet<String>,
    /// Whether a resource no ACL covers is open to everyone.
    pub allow_everyone_if_no_acl_found: bool,
}

/// The outcome, with the rule that decided it (for the audit log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    AllowedSuperUser,
    AllowedByAcl,
    /// No ACL covers the resource and `allow.everyone.if.no.acl.found` is true.
    AllowedNoAclFound,
    DeniedByAcl,
    /// ACLs cover the resource but none allows this principal this operation from this host.
    DeniedNoMatchingAllow,
    /// No ACL covers the resource and `allow.everyone.if.no.acl.found` is false.
    DeniedNoAclFound,
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        matches!(
            self,
            Decision::AllowedSuperUser | Decision::AllowedByAcl | Decision::AllowedNoAclFound
        )
    }

    /// A short name for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Decision::AllowedSuperUser => "super_user",
            Decision::AllowedByAcl => "allow_acl",
            Decision::AllowedNoAclFound => "no_acl_found",
            Decision::DeniedByAcl => "deny_acl",
            Decision::DeniedNoMatchingAllow => "no_matching_allow",
            Decision::DeniedNoAclFound => "no_acl_found",
        }
    }
}

/// Whether an ALLOW of `granted` allows `requested`.
fn allow_implies(granted: AclOperation, requested: AclOperation) -> bool {
    use AclOperation::*;
    granted == All
        || granted == requested
        || (requested == Describe && matches!(granted, Read | Write | Delete | Alter))
        || (requested == DescribeConfigs && granted == AlterConfigs)
}

/// Whether an ACL's principal (`type:name`) names `principal` or every principal of its type.
fn principal_matches(acl_principal: &str, principal: &KafkaPrincipal) -> bool {
    match acl_principal.split_once(':') {
        Some((t, name)) => t == principal.principal_type && (name == principal.name || name == "*"),
        None => false,
    }
}

pub fn authorize(
    acls: &AclIndex,
    settings: &AuthorizerSettings,
    principal: &KafkaPrincipal,
    host: &str,
    operation: AclOperation,
    resource: &Resource<'_>,
) -> Decision {
    if !settings.super_users.is_empty() && settings.super_users.contains(&principal.to_string()) {
        return Decision::AllowedSuperUser;
    }
    let covering = acls.covering(resource);
    if covering.is_empty() {
        return if settings.allow_everyone_if_no_acl_found {
            Decision::AllowedNoAclFound
        } else {
            Decision::DeniedNoAclFound
        };
    }
    let mut allowed = false;
    for acl in covering {
        let e = &acl.entry;
        if !principal_matches(&e.principal, principal)
            || (e.host != WILDCARD_HOST && e.host != host)
        {
            continue;
        }
        match e.permission_type {
            AclPermissionType::Deny
                if e.operation == AclOperation::All || e.operation == operation =>
            {
                return Decision::DeniedByAcl;
            }
            AclPermissionType::Allow if allow_implies(e.operation, operation) => allowed = true,
            _ => {}
        }
    }
    if allowed {
        Decision::AllowedByAcl
    } else {
        Decision::DeniedNoMatchingAllow
    }
}

/// Whether `principal` may do `operation` on at least one resource of `resource_type`
/// (Kafka's `Authorizer.authorizeByResourceType`, KIP-679: an idempotent producer needs
/// IDEMPOTENT_WRITE on the cluster or WRITE on some topic). True when a resource no ACL names
/// would be allowed (super users, `allow.everyone.if.no.acl.found`, a wildcard ALLOW);
/// otherwise when some ALLOW for this principal, host and operation is not covered by a DENY
/// for them (a DENY of the literal `*` covers everything; a DENY pattern covers an ALLOW
/// pattern whose names all start with it, or that names exactly it).
pub fn authorize_by_resource_type(
    acls: &AclIndex,
    settings: &AuthorizerSettings,
    principal: &KafkaPrincipal,
    host: &str,
    operation: AclOperation,
    resource_type: super::ResourceType,
) -> bool {
    // A name no ACL can name exactly, so only super users, the wildcard and the default decide.
    let unnamed = Resource {
        resource_type,
        name: "\u{0}",
    };
    if authorize(acls, settings, principal, host, operation, &unnamed).is_allowed() {
        return true;
    }
    let applies = |b: &&super::AclBinding| {
        b.pattern.resource_type == resource_type
            && principal_matches(&b.entry.principal, principal)
            && (b.entry.host == WILDCARD_HOST || b.entry.host == host)
            && (b.entry.operation == AclOperation::All || b.entry.operation == operation)
    };
    let denies: Vec<&super::ResourcePattern> = acls
        .iter()
        .map(|(_, b)| b)
        .filter(applies)
        .filter(|b| b.entry.permission_type == AclPermissionType::Deny)
        .map(|b| &b.pattern)
        .collect();
    let denied = |allow: &super::ResourcePattern| {
        denies.iter().any(|d| {
            use super::PatternType::{Literal, Prefixed};
            match (d.pattern_type, allow.pattern_type) {
                (Literal, _) if d.name == super::WILDCARD_RESOURCE => true,
                (Literal, Literal) => d.name == allow.name,
                (Prefixed, Literal | Prefixed) => allow.name.starts_with(&d.name),
                _ => false,
            }
        })
    };
    acls.iter()
        .map(|(_, b)| b)
        .filter(applies)
        .filter(|b| b.entry.permission_type == AclPermissionType::Allow)
        .any(|b| !denied(&b.pattern))
}
