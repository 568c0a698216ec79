"""Authorization of authenticated principals with a real client (confluent-kafka over SCRAM):
a user without ACLs is refused on produce, fetch, group join and topic deletion with Kafka's
error codes; a prefixed ALLOW lets it in; a DENY beats an ALLOW; a super user passes without
ACLs.

The broker's clients come in on a SASL_PLAINTEXT listener, so allow.everyone.if.no.acl.found is
false by default and nobody but `User:admin` (a super user) may do anything until ACLs say so.
"""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

import helpers as h
from conftest import StrataBroker, free_port, wait_until

MECHANISM = "SCRAM-SHA-256"
TIMEOUT_S = 15


def sasl(user: str) -> dict[str, str]:
    return {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": MECHANISM,
        "sasl.username": user,
        "sasl.password": f"{user}-secret",
    }


@pytest.fixture
def secured(tmp_path):
    b = StrataBroker(tmp_path, None)
    creds = tmp_path / "bootstrap-creds"
    creds.write_text("".join(f"{MECHANISM}=[name={u},password={u}-secret]\n" for u in ("admin", "alice")))
    b.extra_sets.update(
        {
            # Brokers reach each other over PLAINTEXT (inter-broker SASL is not built); a
            # client there is User:ANONYMOUS, which no ACL here names.
            "listeners": f"SASL_PLAINTEXT://127.0.0.1:{b.port},PLAINTEXT://127.0.0.1:{free_port()},"
            f"CONTROLLER://127.0.0.1:{b.controller_port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.scram.bootstrap.credentials.file": str(creds),
            "super.users": "User:admin",
        }
    )
    b.start()
    yield b
    b.stop()


def admin_as(b, user):
    return h.admin(b.bootstrap, **sasl(user))


def produce_one(b, user, topic, value: bytes):
    """Produces one record as `user`; the delivery error code (None when acknowledged)."""
    p = h.producer(b.bootstrap, **sasl(user), **{"message.timeout.ms": 10000, "retries": 0})
    outcome = []
    p.produce(topic, value=value, key=b"k", on_delivery=lambda err, msg: outcome.append(err))
    p.flush(TIMEOUT_S)
    assert len(outcome) == 1, "delivery report"
    return None if outcome[0] is None else outcome[0].code()


def consume(b, user, topic, group, want: int) -> tuple[list[bytes], int | None]:
    """Reads `topic` from the start as `user` in `group` (subscribed, so the group is joined)
    until `want` values or the first error: (values read, that error's code or None)."""
    c = h.consumer(
        b.bootstrap,
        **sasl(user),
        **{"group.id": group, "auto.offset.reset": "earliest", "enable.partition.eof": False},
    )
    values: list[bytes] = []
    error = None
    deadline = time.monotonic() + TIMEOUT_S
    try:
        c.subscribe([topic])
        while time.monotonic() < deadline and len(values) < want and error is None:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                error = m.error().code()
            else:
                values.append(m.value())
        return values, error
    finally:
        c.close()


def high_watermark(b, topic) -> int:
    c = h.consumer(b.bootstrap, **sasl("admin"))
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT_S)[1]
    finally:
        c.close()


def acl(principal, resource_type, name, pattern, operation, permission=AclPermissionType.ALLOW):
    return AclBinding(resource_type, name, pattern, principal, "*", operation, permission)


def create_acls(a, bindings):
    for f in a.create_acls(bindings, request_timeout=TIMEOUT_S).values():
        f.result()


def test_principal_without_acls_is_refused_until_granted(secured):
    b = secured
    topic = f"orders.{uuid.uuid4().hex[:8]}"
    a = admin_as(b, "admin")
    # The super user needs no ACL.
    for f in a.create_topics([NewTopic(topic, 1, 1)], request_timeout=TIMEOUT_S).values():
        f.result()
    assert produce_one(b, "admin", topic, b"from-admin") is None

    # alice has no ACL: every action is refused with Kafka's codes.
    assert produce_one(b, "alice", topic, b"refused") == KafkaError.TOPIC_AUTHORIZATION_FAILED
    values, error = consume(b, "alice", topic, "alice-group", 1)
    assert values == []
    assert error in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED)
    alice_admin = admin_as(b, "alice")
    with pytest.raises(KafkaException) as refused:
        alice_admin.delete_topics([topic], request_timeout=TIMEOUT_S)[topic].result()
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    # Topic ACLs alone: the group join is refused on the group.
    create_acls(
        a,
        [
            acl("User:alice", ResourceType.TOPIC, "orders.", ResourcePatternType.PREFIXED, AclOperation.WRITE),
            acl("User:alice", ResourceType.TOPIC, "orders.", ResourcePatternType.PREFIXED, AclOperation.READ),
        ],
    )
    wait_until(lambda: produce_one(b, "alice", topic, b"alice-1") is None, TIMEOUT_S, "alice may write")
    values, error = consume(b, "alice", topic, "alice-group", 1)
    assert values == [] and error == KafkaError.GROUP_AUTHORIZATION_FAILED

    # With READ on her groups (prefixed) she reads exactly what was written, in order.
    create_acls(a, [acl("User:alice", ResourceType.GROUP, "alice-", ResourcePatternType.PREFIXED, AclOperation.READ)])
    values, error = consume(b, "alice", topic, "alice-group", 2)
    assert values[:2] == [b"from-admin", b"alice-1"]

    # Deleting still needs DELETE.
    with pytest.raises(KafkaException) as refused:
        alice_admin.delete_topics([topic], request_timeout=TIMEOUT_S)[topic].result()
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    # A literal DENY of WRITE on this one topic beats the prefixed ALLOW.
    create_acls(
        a,
        [acl("User:alice", ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, AclOperation.WRITE, AclPermissionType.DENY)],
    )
    wait_until(
        lambda: produce_one(b, "alice", topic, b"denied") == KafkaError.TOPIC_AUTHORIZATION_FAILED,
        TIMEOUT_S,
        "the deny to apply",
    )
    # Nothing refused was appended: the log holds exactly the acknowledged records.
    assert high_watermark(b, topic) == 2
    values, _ = consume(b, "admin", topic, "admin-check", 2)
    assert values == [b"from-admin", b"alice-1"]
