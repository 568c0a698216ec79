"""ACLs with real admin clients: kafka-python's and confluent-kafka's (librdkafka) create, describe
and delete round-trip bindings with every field intact, MATCH filters find prefixed ACLs, a
malformed binding is refused, `strata acls` lists what the clients wrote, and a librdkafka
producer is refused a topic that an ACL governs.

Without authentication every client is User:ANONYMOUS and the broker's default
allow.everyone.if.no.acl.found=true lets it manage ACLs while no ACL names the cluster.
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
    ResourcePatternFilter,
)
from kafka.admin import ResourceType as KpResourceType

import helpers as h
from conftest import strata_cli

TIMEOUT_S = 15


def kp_key(acl) -> tuple:
    p = acl.resource_pattern
    return (p.resource_type, p.resource_name, p.pattern_type, acl.principal, acl.host, acl.operation, acl.permission_type)


def test_kafka_python_round_trips_acls(broker):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=TIMEOUT_S * 1000)
    try:
        read_orders = ACL(
            principal="User:alice",
            host="*",
            operation=ACLOperation.READ,
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(KpResourceType.TOPIC, "orders.", ACLResourcePatternType.PREFIXED),
        )
        deny_group = ACL(
            principal="User:bob",
            host="10.0.0.1",
            operation=ACLOperation.DELETE,
            permission_type=ACLPermissionType.DENY,
            resource_pattern=ResourcePattern(KpResourceType.GROUP, "billing", ACLResourcePatternType.LITERAL),
        )
        created = admin.create_acls([read_orders, deny_group])
        assert len(created["succeeded"]) == 2 and created["failed"] == [], created

        everything = ACLFilter(
            principal=None,
            host=None,
            operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(KpResourceType.ANY, None, ACLResourcePatternType.ANY),
        )
        acls, error = admin.describe_acls(everything)
        assert error.errno == 0
        assert sorted(map(kp_key, acls)) == sorted(map(kp_key, [read_orders, deny_group]))

        # MATCH: the ACLs that apply to topic orders.eu — the prefixed one, not the group's.
        matching = ACLFilter(
            principal=None,
            host=None,
            operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(KpResourceType.TOPIC, "orders.eu", ACLResourcePatternType.MATCH),
        )
        acls, error = admin.describe_acls(matching)
        assert error.errno == 0 and list(map(kp_key, acls)) == [kp_key(read_orders)]

        bobs = ACLFilter(
            principal="User:bob",
            host=None,
            operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(KpResourceType.ANY, None, ACLResourcePatternType.ANY),
        )
        [(_, deleted, error)] = admin.delete_acls([bobs])
        assert error.errno == 0
        assert [kp_key(acl) for acl in deleted] == [kp_key(deny_group)]
        acls, _ = admin.describe_acls(everything)
        assert list(map(kp_key, acls)) == [kp_key(read_orders)]
    finally:
        admin.close()

    listed = strata_cli("acls", broker, "list").stdout.splitlines()
    assert listed == ["TOPIC:PREFIXED:orders.\tUser:alice\t*\tREAD\tALLOW"]


def ck_key(b) -> tuple:
    return (b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type)


def test_confluent_kafka_round_trips_acls_and_its_producer_is_refused(broker):
    admin = h.admin(broker.bootstrap)
    h.create_topic(admin, "pinned")
    h.create_topic(admin, "open")
    write_pinned = AclBinding(
        ResourceType.TOPIC, "pinned", ResourcePatternType.LITERAL, "User:alice", "*", AclOperation.WRITE, AclPermissionType.ALLOW
    )
    # Not on the cluster: an ACL there would close ACL administration to ANONYMOUS too.
    read_apps = AclBinding(
        ResourceType.GROUP, "app-", ResourcePatternType.PREFIXED, "User:*", "10.0.0.1", AclOperation.READ, AclPermissionType.DENY
    )
    for f in admin.create_acls([write_pinned, read_apps], request_timeout=TIMEOUT_S).values():
        assert f.result() is None

    bad = AclBinding(
        ResourceType.TOPIC, "", ResourcePatternType.LITERAL, "User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW
    )
    [fut] = admin.create_acls([bad], request_timeout=TIMEOUT_S).values()
    with pytest.raises(KafkaException) as refused:
        fut.result()
    assert refused.value.args[0].code() == KafkaError.INVALID_REQUEST

    everything = AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY, AclPermissionType.ANY
    )
    described = admin.describe_acls(everything, request_timeout=TIMEOUT_S).result()
    assert sorted(map(ck_key, described)) == sorted(map(ck_key, [write_pinned, read_apps]))

    # The ACL for alice governs `pinned` for every principal (KAFKA-14435); `open` has none.
    p = h.producer(broker.bootstrap, **{"message.timeout.ms": 5000})
    errors = {}

    def report(err, msg):
        errors[msg.topic()] = err

    p.produce("open", b"o", on_delivery=report)
    p.produce("pinned", b"p", on_delivery=report)
    p.flush(15)
    assert errors["open"] is None
    assert errors["pinned"] is not None and errors["pinned"].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errors

    only_pinned = AclBindingFilter(
        ResourceType.TOPIC, "pinned", ResourcePatternType.LITERAL, None, None, AclOperation.ANY, AclPermissionType.ANY
    )
    [fut] = admin.delete_acls([only_pinned], request_timeout=TIMEOUT_S).values()
    assert list(map(ck_key, fut.result())) == [ck_key(write_pinned)]
    described = admin.describe_acls(everything, request_timeout=TIMEOUT_S).result()
    assert list(map(ck_key, described)) == [ck_key(read_apps)]
