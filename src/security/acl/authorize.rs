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
    if settings.super_users.contains(&principal.to_string()) {
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
