//! Kafka's ACL model: an [`AclBinding`] is a [`ResourcePattern`] (what) and an
//! [`AccessControlEntry`] (who, from where, doing what, allowed or denied). An
//! [`AclBindingFilter`] selects bindings for DescribeAcls and DeleteAcls.
//!
//! The enums carry Kafka's wire codes (`ResourceType`, `PatternType`, `AclOperation`,
//! `AclPermissionType` in `org.apache.kafka.common`): a code this broker does not know parses
//! to `Unknown`, which no binding may hold and no filter may use (INVALID_REQUEST).

mod authorize;
mod index;

pub use authorize::{authorize, authorize_by_resource_type, AuthorizerSettings, Decision};
pub use index::{AclId, AclIndex};

use serde::{Deserialize, Serialize};

/// The resource name that a LITERAL pattern uses to mean every resource of its type.
pub const WILDCARD_RESOURCE: &str = "*";
/// The host of an entry that matches every client address.
pub const WILDCARD_HOST: &str = "*";
/// The name of the one CLUSTER resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $code:literal => $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name { $($variant),* }

        impl $name {
            /// Every value, in wire-code order.
            pub const ALL_VALUES: &'static [$name] = &[$($name::$variant),*];

            /// Kafka's wire code.
            pub fn code(self) -> i8 {
                match self { $($name::$variant => $code),* }
            }

            /// The value of a wire code; codes this broker does not know are `Unknown`.
            pub fn from_code(code: i8) -> $name {
                match code { $($code => $name::$variant,)* _ => $name::Unknown }
            }

            /// Kafka's name, as kafka-acls.sh prints it.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }

            /// Parses Kafka's name case-insensitively, with or without `_` or `-` between the
            /// words (`IDEMPOTENT_WRITE`, `IdempotentWrite` as kafka-acls.sh writes it,
            /// `idempotent-write`).
            pub fn parse(s: &str) -> Option<$name> {
                let squash = |t: &str| t.chars().filter(|c| *c != '_' && *c != '-').collect::<String>().to_ascii_uppercase();
                let wanted = squash(s.trim());
                Self::ALL_VALUES.iter().copied().find(|v| squash(v.as_str()) == wanted)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// What kind of thing an ACL protects.
    ResourceType {
        Unknown = 0 => "UNKNOWN",
        Any = 1 => "ANY",
        Topic = 2 => "TOPIC",
        Group = 3 => "GROUP",
        Cluster = 4 => "CLUSTER",
        TransactionalId = 5 => "TRANSACTIONAL_ID",
        DelegationToken = 6 => "DELEGATION_TOKEN",
        User = 7 => "USER",
    }
);

wire_enum!(
    /// How an ACL's resource name matches: LITERAL (the name, or `*` for all) or PREFIXED
    /// (names starting with it). ANY and MATCH occur in filters only.
    PatternType {
        Unknown = 0 => "UNKNOWN",
        Any = 1 => "ANY",
        Match = 2 => "MATCH",
        Literal = 3 => "LITERAL",
        Prefixed = 4 => "PREFIXED",
    }
);

wire_enum!(
    /// What a request does to a resource.
    AclOperation {
        Unknown = 0 => "UNKNOWN",
        Any = 1 => "ANY",
        All = 2 => "ALL",
        Read = 3 => "READ",
        Write = 4 => "WRITE",
        Create = 5 => "CREATE",
        Delete = 6 => "DELETE",
        Alter = 7 => "ALTER",
        Describe = 8 => "DESCRIBE",
        ClusterAction = 9 => "CLUSTER_ACTION",
        DescribeConfigs = 10 => "DESCRIBE_CONFIGS",
        AlterConfigs = 11 => "ALTER_CONFIGS",
        IdempotentWrite = 12 => "IDEMPOTENT_WRITE",
        CreateTokens = 13 => "CREATE_TOKENS",
        DescribeTokens = 14 => "DESCRIBE_TOKENS",
        TwoPhaseCommit = 15 => "TWO_PHASE_COMMIT",
    }
);

wire_enum!(
    /// Whether a matching ACL allows or denies. ANY occurs in filters only.
    AclPermissionType {
        Unknown = 0 => "UNKNOWN",
        Any = 1 => "ANY",
        Deny = 2 => "DENY",
        Allow = 3 => "ALLOW",
    }
);

impl ResourceType {
    /// The operations that mean something on a resource of this type (Kafka's
    /// `AclEntry.supportedOperations`): those an `authorized_operations` bit field reports.
    pub fn supported_operations(self) -> &'static [AclOperation] {
        use AclOperation::*;
        match self {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Describe,
                Delete,
                Alter,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            ResourceType::TransactionalId => &[Describe, Write, TwoPhaseCommit],
            ResourceType::DelegationToken => &[Describe],
            ResourceType::User => &[CreateTokens, DescribeTokens],
            ResourceType::Unknown | ResourceType::Any => &[],
        }
    }
}

/// A resource a request acts on: its type and its name (`kafka-cluster` for the cluster).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resource<'a> {
    pub resource_type: ResourceType,
    pub name: &'a str,
}

impl<'a> Resource<'a> {
    pub fn topic(name: &'a str) -> Resource<'a> {
        Resource {
            resource_type: ResourceType::Topic,
            name,
        }
    }

    pub fn group(name: &'a str) -> Resource<'a> {
        Resource {
            resource_type: ResourceType::Group,
            name,
        }
    }

    pub fn transactional_id(name: &'a str) -> Resource<'a> {
        Resource {
            resource_type: ResourceType::TransactionalId,
            name,
        }
    }

    pub fn cluster() -> Resource<'static> {
        Resource {
            resource_type: ResourceType::Cluster,
            name: CLUSTER_NAME,
        }
    }
}

/// Which resources an ACL covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourcePattern {
    pub resource_type: ResourceType,
    pub name: String,
    pub pattern_type: PatternType,
}

/// Who may (or may not) do what from where. `principal` is `type:name` (`User:alice`;
/// `User:*` is every user), `host` an IP address or `*`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AccessControlEntry {
    pub principal: String,
    pub host: String,
    pub operation: AclOperation,
    pub permission_type: AclPermissionType,
}

/// One ACL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub pattern: ResourcePattern,
    pub entry: AccessControlEntry,
}

impl std::fmt::Display for AclBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "(resource={}:{}:{}, principal={}, host={}, operation={}, permission={})",
            self.pattern.resource_type,
            self.pattern.pattern_type,
            self.pattern.name,
            self.entry.principal,
            self.entry.host,
            self.entry.operation,
            self.entry.permission_type
        )
    }
}

/// Why a binding or a filter is refused; every kind is INVALID_REQUEST on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("invalid resource type {0}")]
    InvalidResourceType(ResourceType),
    #[error("invalid pattern type {0}")]
    InvalidPatternType(PatternType),
    #[error("invalid operation {0}")]
    InvalidOperation(AclOperation),
    #[error("invalid permission type {0}")]
    InvalidPermissionType(AclPermissionType),
    #[error("resource name should not be empty")]
    EmptyResourceName,
    #[error("could not parse principal from `{0}` (no colon is present separating the principal type from the principal name)")]
    InvalidPrincipal(String),
    #[error("the ACL filter has an unknown field")]
    UnknownFilter,
}

impl AclBinding {
    /// Kafka's checks on a binding to create (`AclControlManager.validateNewAcl`).
    pub fn validate(&self) -> Result<(), AclError> {
        let p = &self.pattern;
        if matches!(p.resource_type, ResourceType::Unknown | ResourceType::Any) {
            return Err(AclError::InvalidResourceType(p.resource_type));
        }
        if !matches!(p.pattern_type, PatternType::Literal | PatternType::Prefixed) {
            return Err(AclError::InvalidPatternType(p.pattern_type));
        }
        if matches!(
            self.entry.operation,
            AclOperation::Unknown | AclOperation::Any
        ) {
            return Err(AclError::InvalidOperation(self.entry.operation));
        }
        if !matches!(
            self.entry.permission_type,
            AclPermissionType::Allow | AclPermissionType::Deny
        ) {
            return Err(AclError::InvalidPermissionType(self.entry.permission_type));
        }
        if p.name.is_empty() {
            return Err(AclError::EmptyResourceName);
        }
        if !self.entry.principal.contains(':') {
            return Err(AclError::InvalidPrincipal(self.entry.principal.clone()));
        }
        Ok(())
    }
}

/// Selects bindings (DescribeAcls, DeleteAcls): `None` and the ANY values match everything;
/// pattern type MATCH selects the bindings that would apply to the named resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclBindingFilter {
    pub resource_type: ResourceType,
    pub name: Option<String>,
    pub pattern_type: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: AclOperation,
    pub permission_type: AclPermissionType,
}

impl AclBindingFilter {
    /// The filter that matches every binding.
    pub fn any() -> AclBindingFilter {
        AclBindingFilter {
            resource_type: ResourceType::Any,
            name: None,
            pattern_type: PatternType::Any,
            principal: None,
            host: None,
            operation: AclOperation::Any,
            permission_type: AclPermissionType::Any,
        }
    }

    /// A filter with an UNKNOWN field is refused, as Kafka refuses it.
    pub fn validate(&self) -> Result<(), AclError> {
        if self.resource_type == ResourceType::Unknown
            || self.pattern_type == PatternType::Unknown
            || self.operation == AclOperation::Unknown
            || self.permission_type == AclPermissionType::Unknown
        {
            return Err(AclError::UnknownFilter);
        }
        Ok(())
    }

    /// Whether the filter selects `pattern` (Kafka's `ResourcePatternFilter.matches`).
    pub fn matches_pattern(&self, pattern: &ResourcePattern) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != pattern.resource_type {
            return false;
        }
        if !matches!(self.pattern_type, PatternType::Any | PatternType::Match)
            && self.pattern_type != pattern.pattern_type
        {
            return false;
        }
        let Some(name) = &self.name else {
            return true;
        };
        if self.pattern_type == PatternType::Any || self.pattern_type == pattern.pattern_type {
            return *name == pattern.name;
        }
        // MATCH: the patterns that would cover a resource of this name.
        match pattern.pattern_type {
            PatternType::Literal => *name == pattern.name || pattern.name == WILDCARD_RESOURCE,
            PatternType::Prefixed => name.starts_with(&pattern.name),
            _ => false,
        }
    }

    /// Whether the filter selects `entry` (Kafka's `AccessControlEntryFilter.matches`).
    pub fn matches_entry(&self, entry: &AccessControlEntry) -> bool {
        self.principal
            .as_ref()
            .is_none_or(|p| *p == entry.principal)
            && self.host.as_ref().is_none_or(|h| *h == entry.host)
            && (self.operation == AclOperation::Any || self.operation == entry.operation)
            && (self.permission_type == AclPermissionType::Any
                || self.permission_type == entry.permission_type)
    }

    pub fn matches(&self, binding: &AclBinding) -> bool {
        self.matches_pattern(&binding.pattern) && self.matches_entry(&binding.entry)
    }
}

#[cfg(test)]
mod tests;
