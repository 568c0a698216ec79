use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::security::KafkaPrincipal;

fn binding(
    rt: ResourceType,
    name: &str,
    pt: PatternType,
    principal: &str,
    host: &str,
    op: AclOperation,
    perm: AclPermissionType,
) -> AclBinding {
    AclBinding {
        pattern: ResourcePattern {
            resource_type: rt,
            name: name.into(),
            pattern_type: pt,
        },
        entry: AccessControlEntry {
            principal: principal.into(),
            host: host.into(),
            operation: op,
            permission_type: perm,
        },
    }
}

fn allow_topic(name: &str, pt: PatternType, principal: &str, op: AclOperation) -> AclBinding {
    binding(
        ResourceType::Topic,
        name,
        pt,
        principal,
        "*",
        op,
        AclPermissionType::Allow,
    )
}

fn deny_topic(name: &str, pt: PatternType, principal: &str, op: AclOperation) -> AclBinding {
    binding(
        ResourceType::Topic,
        name,
        pt,
        principal,
        "*",
        op,
        AclPermissionType::Deny,
    )
}

fn index(acls: &[AclBinding]) -> AclIndex {
    let mut index = AclIndex::default();
    for (i, b) in acls.iter().enumerate() {
        index.add(AclId(uuid::Uuid::from_u128(i as u128 + 1)), b.clone());
    }
    index
}

fn strict() -> AuthorizerSettings {
    AuthorizerSettings {
        super_users: BTreeSet::new(),
        allow_everyone_if_no_acl_found: false,
    }
}

fn open() -> AuthorizerSettings {
    AuthorizerSettings {
        super_users: BTreeSet::new(),
        allow_everyone_if_no_acl_found: true,
    }
}

fn alice() -> KafkaPrincipal {
    KafkaPrincipal::user("alice")
}

fn check(
    acls: &[AclBinding],
    settings: &AuthorizerSettings,
    who: &KafkaPrincipal,
    op: AclOperation,
    topic: &str,
) -> Decision {
    authorize(
        &index(acls),
        settings,
        who,
        "10.0.0.1",
        op,
        &Resource::topic(topic),
    )
}

use AclOperation::*;
use PatternType::{Literal, Prefixed};

#[test]
fn no_acl_denies_unless_allow_everyone() {
    assert_eq!(
        check(&[], &strict(), &alice(), Read, "t"),
        Decision::DeniedNoAclFound
    );
    assert_eq!(
        check(&[], &open(), &alice(), Read, "t"),
        Decision::AllowedNoAclFound
    );
}

#[test]
fn super_users_bypass_acls_including_deny() {
    let mut s = strict();
    s.super_users.insert("User:alice".into());
    let deny = [deny_topic("t", Literal, "User:alice", All)];
    assert_eq!(
        check(&deny, &s, &alice(), Write, "t"),
        Decision::AllowedSuperUser
    );
    // Only the exact principal: the same name of another type is not a super user.
    let other_type = KafkaPrincipal {
        principal_type: "Group".into(),
        name: "alice".into(),
    };
    assert_eq!(
        check(&[], &s, &other_type, Write, "t"),
        Decision::DeniedNoAclFound
    );
}

#[test]
fn literal_acl_allows_only_its_name_and_operation() {
    let acls = [allow_topic("t", Literal, "User:alice", Write)];
    assert_eq!(
        check(&acls, &strict(), &alice(), Write, "t"),
        Decision::AllowedByAcl
    );
    assert_eq!(
        check(&acls, &strict(), &alice(), Read, "t"),
        Decision::DeniedNoMatchingAllow
    );
    assert_eq!(
        check(&acls, &strict(), &alice(), Write, "t2"),
        Decision::DeniedNoAclFound
    );
    assert_eq!(
        check(&acls, &strict(), &KafkaPrincipal::user("bob"), Write, "t"),
        Decision::DeniedNoMatchingAllow
    );
}

#[test]
fn wildcard_resource_and_prefixed_patterns_cover_names() {
    let acls = [
        allow_topic("*", Literal, "User:alice", Read),
        allow_topic("orders.", Prefixed, "User:bob", Read),
    ];
    let bob = KafkaPrincipal::user("bob");
    assert_eq!(
        check(&acls, &strict(), &alice(), Read, "anything"),
        Decision::AllowedByAcl
    );
    assert_eq!(
        check(&acls, &strict(), &bob, Read, "orders.eu"),
        Decision::AllowedByAcl
    );
    assert_eq!(
        check(&acls, &strict(), &bob, Read, "orders."),
        Decision::AllowedByAcl
    );
    assert_eq!(
        check(&acls, &strict(), &bob, Read, "orders"),
        Decision::DeniedNoMatchingAllow
    );
    assert_eq!(
        check(&acls, &strict(), &bob, Read, "payments"),
        Decision::DeniedNoMatchingAllow
    );
    // A prefixed `*` is a literal prefix, not a wildcard.
    let star_prefix = [allow_topic("*", Prefixed, "User:bob", Read)];
    assert_eq!(
        check(&star_prefix, &strict(), &bob, Read, "t"),
        Decision::DeniedNoAclFound
    );
    // A literal name is not a prefix.
    let lit = [allow_topic("orders", Literal, "User:bob", Read)];
    assert_eq!(
        check(&lit, &strict(), &bob, Read, "orders.eu"),
        Decision::DeniedNoAclFound
    );
}

#[test]
fn prefixes_of_multibyte_names_are_found() {
    let acls = [allow_topic("é", Prefixed, "User:alice", Read)];
    assert_eq!(
        check(&acls, &strict(), &alice(), Read, "éte"),
        Decision::AllowedByAcl
    );
}

#[test]
fn wildcard_principal_is_per_principal_type() {
    let acls = [allow_topic("t", Literal, "User:*", Read)];
    assert_eq!(
        check(&acls, &strict(), &alice(), Read, "t"),
        Decision::AllowedByAcl
    );
    let service = KafkaPrincipal {
        principal_type: "Service".into(),
        name: "x".into(),
    };
    assert_eq!(
        check(&acls, &strict(), &service, Read, "t"),
        Decision::DeniedNoMatchingAllow
    );
}

#[test]
fn host_must_match_or_be_wildcard() {
    let at = |host: &str| {
        binding(
            ResourceType::Topic,
            "t",
            Literal,
            "User:alice",
            host,
            Read,
            AclPermissionType::Allow,
        )
    };
    let idx = index(&[at("10.0.0.2")]);
    let ask = |host: &str| authorize(&idx, &strict(), &alice(), host, Read, &Resource::topic("t"));
    assert_eq!(ask("10.0.0.2"), Decision::AllowedByAcl);
    assert_eq!(ask("10.0.0.1"), Decision::DeniedNoMatchingAllow);
    let any = index(&[at("*")]);
    assert_eq!(
        authorize(
            &any,
            &strict(),
            &alice(),
            "192.168.1.1",
            Read,
            &Resource::topic("t")
        ),
        Decision::AllowedByAcl
    );
}

#[test]
fn deny_wins_over_allow_from_any_pattern() {
    let acls = [
        allow_topic("*", Literal, "User:alice", All),
        deny_topic("secret.", Prefixed, "User:*", Write),
    ];
    assert_eq!(
        check(&acls, &strict(), &alice(), Write, "secret.x"),
        Decision::DeniedByAcl
    );
    assert_eq!(
        check(&acls, &strict(), &alice(), Read, "secret.x"),
        Decision::AllowedByAcl
    );
    assert_eq!(
        check(&acls, &strict(), &alice(), Write, "public"),
        Decision::AllowedByAcl
    );
    // Deny ALL denies every operation; a deny on another host does not apply.
    let all = [
        allow_topic("t", Literal, "User:alice", All),
        deny_topic("t", Literal, "User:alice", All),
    ];
    assert_eq!(
        check(&all, &strict(), &alice(), Describe, "t"),
        Decision::DeniedByAcl
    );
    let elsewhere = [
        allow_topic("t", Literal, "User:alice", Read),
        binding(
            ResourceType::Topic,
            "t",
            Literal,
            "User:alice",
            "10.9.9.9",
            Read,
            AclPermissionType::Deny,
        ),
    ];
    assert_eq!(
        check(&elsewhere, &strict(), &alice(), Read, "t"),
        Decision::AllowedByAcl
    );
    // Deny wins even with allow.everyone.if.no.acl.found.
    assert_eq!(
        check(&acls, &open(), &alice(), Write, "secret.x"),
        Decision::DeniedByAcl
    );
}

#[test]
fn allow_implies_describe_and_describe_configs() {
    for op in [Read, Write, Delete, Alter, All] {
        let acls = [allow_topic("t", Literal, "User:alice", op)];
        assert_eq!(
            check(&acls, &strict(), &alice(), Describe, "t"),
            Decision::AllowedByAcl,
            "{op} implies DESCRIBE"
        );
    }
    for op in [
        Create,
        ClusterAction,
        DescribeConfigs,
        AlterConfigs,
        IdempotentWrite,
    ] {
        let acls = [allow_topic("t", Literal, "User:alice", op)];
        assert_eq!(
            check(&acls, &strict(), &alice(), Describe, "t"),
            Decision::DeniedNoMatchingAllow,
            "{op} does not imply DESCRIBE"
        );
    }
    let alter_configs = [allow_topic("t", Literal, "User:alice", AlterConfigs)];
    assert_eq!(
        check(&alter_configs, &strict(), &alice(), DescribeConfigs, "t"),
        Decision::AllowedByAcl
    );
    let alter = [allow_topic("t", Literal, "User:alice", Alter)];
    assert_eq!(
        check(&alter, &strict(), &alice(), DescribeConfigs, "t"),
        Decision::DeniedNoMatchingAllow
    );
    // Implication is one way: DESCRIBE does not allow READ.
    let describe = [allow_topic("t", Literal, "User:alice", Describe)];
    assert_eq!(
        check(&describe, &strict(), &alice(), Read, "t"),
        Decision::DeniedNoMatchingAllow
    );
}

#[test]
fn implications_are_for_allow_only() {
    // A DENY of READ does not deny DESCRIBE, which an ALLOW of DESCRIBE grants.
    let acls = [
        allow_topic("t", Literal, "User:alice", Describe),
        deny_topic("t", Literal, "User:alice", Read),
    ];
    assert_eq!(
        check(&acls, &strict(), &alice(), Describe, "t"),
        Decision::AllowedByAcl
    );
    assert_eq!(
        check(&acls, &strict(), &alice(), Read, "t"),
        Decision::DeniedByAcl
    );
    let deny_alter_configs = [
        allow_topic("t", Literal, "User:alice", All),
        deny_topic("t", Literal, "User:alice", AlterConfigs),
    ];
    assert_eq!(
        check(
            &deny_alter_configs,
            &strict(),
            &alice(),
            DescribeConfigs,
            "t"
        ),
        Decision::AllowedByAcl
    );
}

#[test]
fn any_acl_on_a_resource_disables_allow_everyone_for_it() {
    // KAFKA-14435: an ACL for bob governs the topic for alice too.
    let acls = [allow_topic("t", Literal, "User:bob", Read)];
    assert_eq!(
        check(&acls, &open(), &alice(), Read, "t"),
        Decision::DeniedNoMatchingAllow
    );
    // Also when the ACL is a prefix or the wildcard, and when it is a deny for someone else.
    let prefixed = [allow_topic("t", Prefixed, "User:bob", Read)];
    assert_eq!(
        check(&prefixed, &open(), &alice(), Read, "tx"),
        Decision::DeniedNoMatchingAllow
    );
    let deny_bob = [deny_topic("*", Literal, "User:bob", Read)];
    assert_eq!(
        check(&deny_bob, &open(), &alice(), Read, "t"),
        Decision::DeniedNoMatchingAllow
    );
    // Other resources stay open.
    assert_eq!(
        check(&acls, &open(), &alice(), Read, "u"),
        Decision::AllowedNoAclFound
    );
}

#[test]
fn resource_types_are_separate() {
    let acls = [binding(
        ResourceType::Group,
        "t",
        Literal,
        "User:alice",
        "*",
        Read,
        AclPermissionType::Allow,
    )];
    assert_eq!(
        check(&acls, &strict(), &alice(), Read, "t"),
        Decision::DeniedNoAclFound
    );
    let idx = index(&acls);
    assert_eq!(
        authorize(&idx, &strict(), &alice(), "h", Read, &Resource::group("t")),
        Decision::AllowedByAcl
    );
    let cluster = index(&[binding(
        ResourceType::Cluster,
        CLUSTER_NAME,
        Literal,
        "User:alice",
        "*",
        IdempotentWrite,
        AclPermissionType::Allow,
    )]);
    assert_eq!(
        authorize(
            &cluster,
            &strict(),
            &alice(),
            "h",
            IdempotentWrite,
            &Resource::cluster()
        ),
        Decision::AllowedByAcl
    );
}

#[test]
fn validation_refuses_what_kafka_refuses() {
    let good = allow_topic("t", Literal, "User:alice", Read);
    assert_eq!(good.validate(), Ok(()));
    let mut b = good.clone();
    b.pattern.resource_type = ResourceType::Any;
    assert_eq!(
        b.validate(),
        Err(AclError::InvalidResourceType(ResourceType::Any))
    );
    let mut b = good.clone();
    b.pattern.pattern_type = PatternType::Match;
    assert_eq!(
        b.validate(),
        Err(AclError::InvalidPatternType(PatternType::Match))
    );
    let mut b = good.clone();
    b.entry.operation = AclOperation::Any;
    assert_eq!(
        b.validate(),
        Err(AclError::InvalidOperation(AclOperation::Any))
    );
    let mut b = good.clone();
    b.entry.permission_type = AclPermissionType::Unknown;
    assert_eq!(
        b.validate(),
        Err(AclError::InvalidPermissionType(AclPermissionType::Unknown))
    );
    let mut b = good.clone();
    b.pattern.name.clear();
    assert_eq!(b.validate(), Err(AclError::EmptyResourceName));
    let mut b = good;
    b.entry.principal = "alice".into();
    assert_eq!(
        b.validate(),
        Err(AclError::InvalidPrincipal("alice".into()))
    );
    let mut f = AclBindingFilter::any();
    assert_eq!(f.validate(), Ok(()));
    f.operation = AclOperation::from_code(99);
    assert_eq!(f.validate(), Err(AclError::UnknownFilter));
}

#[test]
fn wire_codes_round_trip_and_names_parse() {
    for v in ResourceType::ALL_VALUES {
        assert_eq!(ResourceType::from_code(v.code()), *v);
    }
    for v in AclOperation::ALL_VALUES {
        assert_eq!(AclOperation::from_code(v.code()), *v);
        assert_eq!(AclOperation::parse(v.as_str()), Some(*v));
    }
    assert_eq!(
        AclOperation::parse("idempotent-write"),
        Some(IdempotentWrite)
    );
    assert_eq!(PatternType::from_code(4), PatternType::Prefixed);
    assert_eq!(AclPermissionType::from_code(3), AclPermissionType::Allow);
    assert_eq!(ResourceType::from_code(42), ResourceType::Unknown);
}

#[test]
fn filters_match_as_kafka_does() {
    let lit = allow_topic("orders.eu", Literal, "User:alice", Read);
    let pre = allow_topic("orders.", Prefixed, "User:alice", Read);
    let star = allow_topic("*", Literal, "User:bob", Write);
    let group = binding(
        ResourceType::Group,
        "orders.eu",
        Literal,
        "User:alice",
        "*",
        Read,
        AclPermissionType::Deny,
    );
    let all = [lit.clone(), pre.clone(), star.clone(), group.clone()];
    let select = |f: &AclBindingFilter| {
        all.iter()
            .filter(|b| f.matches(b))
            .cloned()
            .collect::<Vec<_>>()
    };

    assert_eq!(select(&AclBindingFilter::any()), all.to_vec());
    let named = |pt: PatternType| AclBindingFilter {
        resource_type: ResourceType::Topic,
        name: Some("orders.eu".into()),
        pattern_type: pt,
        ..AclBindingFilter::any()
    };
    // ANY and LITERAL: the exact name only; MATCH: every pattern that covers it.
    assert_eq!(select(&named(PatternType::Any)), vec![lit.clone()]);
    assert_eq!(select(&named(Literal)), vec![lit.clone()]);
    assert_eq!(select(&named(Prefixed)), Vec::<AclBinding>::new());
    assert_eq!(
        select(&named(PatternType::Match)),
        vec![lit.clone(), pre.clone(), star.clone()]
    );
    let entry = AclBindingFilter {
        principal: Some("User:alice".into()),
        permission_type: AclPermissionType::Deny,
        ..AclBindingFilter::any()
    };
    assert_eq!(select(&entry), vec![group]);
    let op = AclBindingFilter {
        operation: Write,
        host: Some("*".into()),
        ..AclBindingFilter::any()
    };
    assert_eq!(select(&op), vec![star]);
}

#[test]
fn index_adds_removes_finds_and_round_trips_through_serde() {
    let a = allow_topic("t", Literal, "User:alice", Read);
    let b = allow_topic("t", Prefixed, "User:alice", Read);
    let mut idx = index(&[a.clone(), b.clone()]);
    assert_eq!(idx.len(), 2);
    assert_eq!(idx.find(&a), Some(AclId(uuid::Uuid::from_u128(1))));
    assert_eq!(idx.covering(&Resource::topic("t")).len(), 2);
    let json = serde_json::to_string(&idx).expect("encode");
    let back: AclIndex = serde_json::from_str(&json).expect("decode");
    assert_eq!(back, idx);
    assert_eq!(idx.remove(AclId(uuid::Uuid::from_u128(1))), Some(a.clone()));
    assert_eq!(idx.remove(AclId(uuid::Uuid::from_u128(1))), None);
    assert_eq!(idx.find(&a), None);
    assert_eq!(idx.covering(&Resource::topic("t")), vec![&b]);
    idx.remove(AclId(uuid::Uuid::from_u128(2)));
    assert_eq!(idx, AclIndex::default());
}

#[test]
fn write_on_any_topic_unless_denied() {
    let by_type = |acls: &[AclBinding], s: &AuthorizerSettings| {
        authorize_by_resource_type(
            &index(acls),
            s,
            &alice(),
            "10.0.0.1",
            Write,
            ResourceType::Topic,
        )
    };
    assert!(!by_type(&[], &strict()));
    assert!(by_type(&[], &open()));
    let mut su = strict();
    su.super_users.insert("User:alice".into());
    assert!(by_type(&[deny_topic("*", Literal, "User:alice", All)], &su));
    // Some ALLOW of WRITE (or ALL) is enough; READ is not.
    assert!(by_type(
        &[allow_topic("t", Literal, "User:alice", Write)],
        &strict()
    ));
    assert!(by_type(
        &[allow_topic("t", Prefixed, "User:*", All)],
        &strict()
    ));
    assert!(!by_type(
        &[allow_topic("t", Literal, "User:alice", Read)],
        &strict()
    ));
    assert!(!by_type(
        &[allow_topic("t", Literal, "User:bob", Write)],
        &strict()
    ));
    // A DENY that covers the ALLOW's pattern takes it back; one beside it does not.
    let allow = allow_topic("orders.eu", Literal, "User:alice", Write);
    assert!(!by_type(
        &[
            allow.clone(),
            deny_topic("orders.", Prefixed, "User:alice", Write)
        ],
        &strict()
    ));
    assert!(!by_type(
        &[allow.clone(), deny_topic("*", Literal, "User:*", All)],
        &strict()
    ));
    assert!(!by_type(
        &[
            allow.clone(),
            deny_topic("orders.eu", Literal, "User:alice", Write)
        ],
        &strict()
    ));
    assert!(by_type(
        &[
            allow.clone(),
            deny_topic("payments", Literal, "User:alice", Write)
        ],
        &strict()
    ));
    assert!(by_type(
        &[
            allow,
            deny_topic("orders.eu.x", Prefixed, "User:alice", Write)
        ],
        &strict()
    ));
    // Other resource types do not count.
    let group = binding(
        ResourceType::Group,
        "g",
        Literal,
        "User:alice",
        "*",
        Write,
        AclPermissionType::Allow,
    );
    assert!(!by_type(&[group], &strict()));
}

fn op_strategy() -> impl Strategy<Value = AclOperation> {
    prop::sample::select(vec![
        All,
        Read,
        Write,
        Create,
        Delete,
        Alter,
        Describe,
        ClusterAction,
        DescribeConfigs,
        AlterConfigs,
        IdempotentWrite,
    ])
}

fn acl_strategy() -> impl Strategy<Value = AclBinding> {
    (
        prop::sample::select(vec!["a", "ab", "abc", "b", "*"]),
        prop::bool::ANY,
        prop::sample::select(vec!["User:alice", "User:bob", "User:*"]),
        prop::sample::select(vec!["*", "10.0.0.1", "10.0.0.2"]),
        op_strategy(),
        prop::bool::ANY,
    )
        .prop_map(|(name, prefixed, principal, host, op, allow)| {
            binding(
                ResourceType::Topic,
                name,
                if prefixed { Prefixed } else { Literal },
                principal,
                host,
                op,
                if allow {
                    AclPermissionType::Allow
                } else {
                    AclPermissionType::Deny
                },
            )
        })
}

proptest! {
    /// The indexed decision equals a scan of every ACL with the rules written out directly.
    #[test]
    fn indexed_decision_equals_a_full_scan(
        acls in prop::collection::vec(acl_strategy(), 0..12),
        name in prop::sample::select(vec!["a", "ab", "abc", "b", "c"]),
        op in op_strategy(),
        everyone in prop::bool::ANY,
    ) {
        let settings = AuthorizerSettings { super_users: BTreeSet::new(), allow_everyone_if_no_acl_found: everyone };
        let covers = |b: &AclBinding| match b.pattern.pattern_type {
            PatternType::Literal => b.pattern.name == name || b.pattern.name == "*",
            _ => name.starts_with(b.pattern.name.as_str()),
        };
        let applies = |b: &AclBinding| (b.entry.principal == "User:alice" || b.entry.principal == "User:*")
            && (b.entry.host == "*" || b.entry.host == "10.0.0.1");
        let covering: Vec<&AclBinding> = acls.iter().filter(|b| covers(b)).collect();
        let denied = covering.iter().any(|b| applies(b) && b.entry.permission_type == AclPermissionType::Deny
            && (b.entry.operation == All || b.entry.operation == op));
        let implied = |g: AclOperation| g == All || g == op
            || (op == Describe && [Read, Write, Delete, Alter].contains(&g))
            || (op == DescribeConfigs && g == AlterConfigs);
        let allowed = covering.iter().any(|b| applies(b) && b.entry.permission_type == AclPermissionType::Allow && implied(b.entry.operation));
        let expected = if covering.is_empty() { everyone } else { !denied && allowed };
        let got = authorize(&index(&acls), &settings, &alice(), "10.0.0.1", op, &Resource::topic(name));
        prop_assert_eq!(got.is_allowed(), expected);
    }
}
