"""Mirror links between two local single-node clusters (a three-node target, transactions
and failback are in test_mirror_failback.py).

A regex link copies topics byte for byte at the same offsets: plain, zstd, lz4 and
idempotent data with keys, headers and timestamps, compared record by record with a real
client on both sides; a topic created after the link is picked up; produce to a mirror topic
is refused until it is promoted; a SIGKILLed source broker comes back and the link
converges; promote makes the topic writable at the offset it reached.
"""

from __future__ import annotations

import re
import time
import urllib.request

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from conftest import REPO, strata_cli, wait_until
from test_tls import certs, ssl_sets  # noqa: F401 (a session fixture, used by name)
from helpers import (
    Deliveries,
    admin,
    consumer,
    create_topic,
    flush_all,
    producer,
    read_partitions,
    sort_po,
    watermarks,
)

pytestmark = pytest.mark.timeout(120)


def produce_mix(bootstrap: str, topic: str, partitions: int, n: int, tag: str) -> int:
    """n records per codec (none, zstd, lz4 idempotent) with keys, headers and timestamps."""
    total = 0
    base_ts = int(time.time() * 1000) - 60_000
    for codec, extra in [
        ("none", {}),
        ("zstd", {}),
        ("lz4", {"enable.idempotence": True}),
    ]:
        p = producer(bootstrap, **{"compression.type": codec, **extra})
        d = Deliveries()
        for i in range(n):
            p.produce(
                topic,
                key=f"{tag}-{codec}-k{i}".encode(),
                value=f"{tag}-{codec}-v{i}".encode() * (1 + i % 7),
                headers=[("h", f"{i}".encode()), ("codec", codec.encode())],
                timestamp=base_ts + i,
                partition=i % partitions,
                on_delivery=d,
            )
        flush_all(p)
        d.assert_all_ok(n)
        total += n
    return total


def ends(bootstrap: str, topic: str, partitions: int) -> list[int]:
    return [watermarks(bootstrap, topic, p)[1] for p in range(partitions)]


def topics_of(bootstrap: str) -> dict[str, int]:
    md = admin(bootstrap).list_topics(timeout=10)
    return {name: len(t.partitions) for name, t in md.topics.items() if not t.error}


def assert_same_records(src: str, dst: str, topic: str, partitions: int):
    a = sort_po(read_partitions(src, topic, range(partitions)))
    b = sort_po(read_partitions(dst, topic, range(partitions)))
    assert len(a) == len(b) and a, f"{topic}: {len(a)} source records, {len(b)} mirrored"
    for x, y in zip(a, b):
        assert x == y, f"{topic}: source {x} != mirror {y}"


def converged(src: str, dst: str, topic: str, partitions: int) -> bool:
    try:
        return topics_of(dst).get(topic) == partitions and ends(dst, topic, partitions) == ends(
            src, topic, partitions
        )
    except KafkaException:
        # Metadata may list a new mirror topic a moment before its broker hosts the partition
        # (UNKNOWN_TOPIC_OR_PART from the watermark query): not converged yet.
        return False


def wait_converged(src: str, dst: str, topic: str, partitions: int, timeout: float = 30):
    wait_until(
        lambda: converged(src, dst, topic, partitions),
        timeout,
        f"{topic} mirrored to the source's end offsets",
        interval=0.3,
    )


def test_a_regex_link_mirrors_byte_for_byte_and_promotes(broker_factory):
    src_broker = broker_factory()
    dst_broker = broker_factory()
    src, dst = src_broker.bootstrap, dst_broker.bootstrap
    create_topic(src, "orders.eu", partitions=3)
    create_topic(src, "unrelated", partitions=1)
    produce_mix(src, "orders.eu", 3, 60, "a")

    strata_cli(
        "mirror", dst, "create", "dr",
        "--source-bootstrap-servers", src,
        "--include", r"orders\..*",
        "--interval-ms", "300",
        "--sync-group-offsets", "--group-include", "app.*",
    )
    # A topic created after the link is selected too.
    create_topic(src, "orders.us", partitions=2)
    produce_mix(src, "orders.us", 2, 20, "b")

    wait_converged(src, dst, "orders.eu", 3)
    wait_converged(src, dst, "orders.us", 2)
    assert "unrelated" not in topics_of(dst)
    assert_same_records(src, dst, "orders.eu", 3)
    assert_same_records(src, dst, "orders.us", 2)

    # Producing to a mirror topic is refused with INVALID_REQUEST, and nothing is appended.
    before = ends(dst, "orders.eu", 3)
    p = producer(dst, retries=0)
    d = Deliveries()
    p.produce("orders.eu", value=b"nope", partition=0, on_delivery=d)
    p.flush(10)
    assert len(d.failed) == 1 and not d.ok
    assert d.failed[0][0].code() == KafkaError.INVALID_REQUEST, d.failed[0][0]
    assert ends(dst, "orders.eu", 3) == before

    # A group's offsets on the source are copied; a consumer on the target resumes there.
    committed = [TopicPartition("orders.eu", p, 7 + p) for p in range(3)]
    c = consumer(src, **{"group.id": "app-1"})
    c.commit(offsets=committed, asynchronous=False)
    got = [t.offset for t in c.committed([TopicPartition("orders.eu", p) for p in range(3)], timeout=10)]
    assert got == [7, 8, 9], got
    c.close()
    c = consumer(dst, **{"group.id": "app-1"})
    try:
        wait_until(
            lambda: [t.offset for t in c.committed([TopicPartition("orders.eu", p) for p in range(3)], timeout=5)]
            == [7, 8, 9],
            20,
            "group offsets synced to the target",
            interval=0.3,
        )
        c.assign([TopicPartition("orders.eu", p) for p in range(3)])
        first: dict[int, int] = {}
        deadline = time.monotonic() + 20
        while len(first) < 3 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                first.setdefault(m.partition(), m.offset())
        assert first == {0: 7, 1: 8, 2: 9}, first
    finally:
        c.close()

    listed = strata_cli("mirror", dst, "list").stdout
    assert "link dr\tstate=Active" in listed, listed
    assert "topic orders.eu\tlink=dr\tpartitions=3\tstate=mirroring" in listed, listed

    # The source dies hard for a few seconds; the link reconnects and converges.
    src_broker.kill()
    time.sleep(3)
    src_broker.start()
    produce_mix(src, "orders.eu", 3, 15, "c")
    wait_converged(src, dst, "orders.eu", 3, timeout=40)
    assert_same_records(src, dst, "orders.eu", 3)

    # Every mirror series the dashboard and alerts use is exported by the mirroring broker
    # (fetch errors counted while the source was down).
    text = urllib.request.urlopen(f"http://127.0.0.1:{dst_broker.http_port}/metrics", timeout=10).read().decode()
    exported = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    used = set(re.findall(r"\b(strata_mirror_[a-z0-9_]+)", (REPO / "docs" / "grafana" / "strata.json").read_text()))
    used |= set(re.findall(r"\b(strata_mirror_[a-z0-9_]+)", (REPO / "docs" / "prometheus" / "strata-alerts.yml").read_text()))
    assert len(used) >= 4 and not used - exported, sorted(used - exported)
    states = [
        line for line in text.splitlines()
        if line.startswith("strata_mirror_partition_state{") and 'link="dr"' in line
        and 'topic="orders.eu"' in line
    ]
    assert len(states) == 3 and all(line.endswith(" 1") for line in states), states

    # Promote right after new records reach the source: the final catch-up copies them
    # first, then the topic is writable at the source's end.
    produce_mix(src, "orders.eu", 3, 10, "d")
    strata_cli("mirror", dst, "promote", "orders.eu")
    assert ends(dst, "orders.eu", 3) == ends(src, "orders.eu", 3)
    end0 = ends(dst, "orders.eu", 3)[0]
    d = Deliveries()
    p = producer(dst)
    p.produce("orders.eu", value=b"after-promote", partition=0, on_delivery=d)
    flush_all(p)
    d.assert_all_ok(1)
    assert d.ok[0].offset() == end0
    assert "topic orders.eu\tlink=dr\tpartitions=3\tstate=promoted" in strata_cli("mirror", dst, "list").stdout
    # A promoted topic's mirror series are gone, so no alert fires for it.
    text = urllib.request.urlopen(f"http://127.0.0.1:{dst_broker.http_port}/metrics", timeout=10).read().decode()
    assert 'topic="orders.eu"' not in "\n".join(
        line for line in text.splitlines() if line.startswith("strata_mirror_partition_state")
    )
    # orders.us is still mirroring: deleting the link is refused until it is promoted.
    out = strata_cli("mirror", dst, "delete", "dr", ok=False)
    assert "orders.us" in out.stderr, out.stderr
    strata_cli("mirror", dst, "failover", "dr")
    strata_cli("mirror", dst, "delete", "dr")
    assert "link dr" not in strata_cli("mirror", dst, "list").stdout


def test_bad_links_are_refused_with_the_reason(broker_factory):
    dst = broker_factory().bootstrap
    out = strata_cli(
        "mirror", dst, "create", "x",
        "--source-bootstrap-servers", "127.0.0.1:1",
        "--include", "(",
        ok=False,
    )
    assert "invalid topic regex" in out.stderr, out.stderr
    out = strata_cli(
        "mirror", dst, "create", "x",
        "--source-bootstrap-servers", "127.0.0.1:1",
        "--source-security-protocol", "SASL_PLAINTEXT",
        "--source-sasl-mechanism", "PLAIN",
        "--source-sasl-username", "u",
        ok=False,
    )
    assert "credential reference" in out.stderr, out.stderr
    out = strata_cli("mirror", dst, "promote", "nope", ok=False)
    assert "not a mirror topic" in out.stderr, out.stderr


def mirror_states(broker, topic: str) -> list[str]:
    """The values of `strata_mirror_partition_state` for `topic` on `broker`."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{broker.http_port}/metrics", timeout=10).read().decode()
    return [
        line[line.rindex(" "):]
        for line in text.splitlines()
        if line.startswith("strata_mirror_partition_state{") and f'topic="{topic}"' in line
    ]


def test_source_truncation_fails_the_mirror_topic_with_the_reason(broker_factory):
    src_broker = broker_factory()
    dst_broker = broker_factory()
    src, dst = src_broker.bootstrap, dst_broker.bootstrap
    create_topic(src, "t", partitions=1)
    produce_mix(src, "t", 1, 10, "a")
    strata_cli(
        "mirror", dst, "create", "dr",
        "--source-bootstrap-servers", src, "--topic", "t", "--interval-ms", "300",
    )
    wait_converged(src, dst, "t", 1)
    # While the link is paused the source gains records and deletes them: the mirror can no
    # longer be an exact copy, and says so instead of skipping the gap.
    strata_cli("mirror", dst, "pause", "dr")
    produce_mix(src, "t", 1, 10, "b")
    end = ends(src, "t", 1)[0]
    a = admin(src)
    [f] = a.delete_records([TopicPartition("t", 0, end)], request_timeout=10).values()
    f.result(timeout=15)
    strata_cli("mirror", dst, "resume", "dr")

    def failed():
        out = strata_cli("mirror", dst, "list").stdout
        return out if "state=failed (" in out else None

    out = wait_until(failed, 20, "the mirror topic failed")
    assert f"the source's log starts at {end}, past this mirror's end 30" in out, out
    assert ends(dst, "t", 1) == [30]
    assert mirror_states(dst_broker, "t") == [" -1"]
    # Still read-only until promoted; promoting it makes it writable where it stopped.
    strata_cli("mirror", dst, "promote", "t")
    d = Deliveries()
    p = producer(dst)
    p.produce("t", value=b"x", on_delivery=d)
    flush_all(p)
    d.assert_all_ok(1)
    assert d.ok[0].offset() == 30
    assert mirror_states(dst_broker, "t") == []


def test_a_sasl_source_is_read_with_a_password_from_a_file(broker_factory, tmp_path):
    from test_sasl import SaslBroker

    (tmp_path / "sasl-source").mkdir()
    source = SaslBroker(tmp_path / "sasl-source")
    try:
        create_topic(source.plaintext, "s", partitions=2)
        produce_mix(source.plaintext, "s", 2, 10, "a")
        dst = broker_factory().bootstrap
        password = tmp_path / "source-password"
        password.write_text("alice-secret\n")
        strata_cli(
            "mirror", dst, "create", "secure",
            "--source-bootstrap-servers", source.sasl,
            "--source-security-protocol", "SASL_PLAINTEXT",
            "--source-sasl-mechanism", "SCRAM-SHA-512",
            "--source-sasl-username", "alice",
            "--source-password-file", str(password),
            "--topic", "s", "--interval-ms", "300",
        )
        wait_converged(source.plaintext, dst, "s", 2)
        assert_same_records(source.plaintext, dst, "s", 2)
        # The metadata names where the secret is, never the secret.
        described = strata_cli("mirror", dst, "describe", "secure").stdout
        assert "alice-secret" not in described and "link secure" in described
    finally:
        source.broker.cleanup()


def test_group_offsets_sync_into_a_cluster_whose_brokers_use_sasl(broker_factory, tmp_path):
    """The link's group offset sync talks to this cluster's own brokers on their inter-broker
    listener, here SASL_PLAINTEXT: it authenticates with the broker's credentials."""
    from test_sasl import SaslBroker

    src = broker_factory().bootstrap
    create_topic(src, "g-sasl", partitions=2)
    produce_mix(src, "g-sasl", 2, 20, "a")
    c = consumer(src, **{"group.id": "app-sasl"})
    c.commit(offsets=[TopicPartition("g-sasl", p, 5 + p) for p in range(2)], asynchronous=False)
    c.close()
    (tmp_path / "sasl-target").mkdir()
    target = SaslBroker(tmp_path / "sasl-target", {
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config":
            'org.apache.kafka.common.security.scram.ScramLoginModule required '
            'username="alice" password="alice-secret";',
    })
    try:
        dst = target.plaintext
        strata_cli(
            "mirror", dst, "create", "to-sasl",
            "--source-bootstrap-servers", src, "--topic", "g-sasl", "--interval-ms", "300",
            "--sync-group-offsets", "--group-include", "app.*",
        )
        wait_converged(src, dst, "g-sasl", 2)
        c = consumer(dst, **{"group.id": "app-sasl"})
        try:
            wait_until(
                lambda: [t.offset for t in c.committed([TopicPartition("g-sasl", p) for p in range(2)], timeout=5)]
                == [5, 6],
                20,
                "group offsets synced to the target",
                interval=0.3,
            )
        finally:
            c.close()
        assert "group offsets not synced" not in target.broker.log_text()
    finally:
        target.broker.cleanup()


def test_a_tls_source_requiring_client_certificates(broker_factory, tmp_path, certs):
    from conftest import StrataBroker, free_port

    d = tmp_path / "tls-source"
    d.mkdir()
    src_broker = StrataBroker(d)
    ssl_port = free_port()
    src_broker.extra_sets.update(
        {
            "listeners": f"PLAINTEXT://127.0.0.1:{src_broker.port},SSL://127.0.0.1:{ssl_port},"
            f"CONTROLLER://127.0.0.1:{src_broker.controller_port}",
            "listener.name.ssl.ssl.client.auth": "required",
            "allow.everyone.if.no.acl.found": "true",
            **ssl_sets(certs),
        }
    )
    try:
        src_broker.start()
        src = src_broker.bootstrap
        create_topic(src, "tls", partitions=1)
        produce_mix(src, "tls", 1, 10, "a")
        keystore = tmp_path / "link-client.pem"
        keystore.write_text((certs / "client.pem").read_text() + (certs / "client.key").read_text())
        dst = broker_factory().bootstrap
        strata_cli(
            "mirror", dst, "create", "tls",
            "--source-bootstrap-servers", f"localhost:{ssl_port}",
            "--source-security-protocol", "SSL",
            "--source-ssl-truststore-location", str(certs / "ca.pem"),
            "--source-ssl-keystore-location", str(keystore),
            "--topic", "tls", "--interval-ms", "300",
        )
        wait_converged(src, dst, "tls", 1)
        assert_same_records(src, dst, "tls", 1)
    finally:
        src_broker.cleanup()


def test_links_need_alter_and_describe_on_the_cluster(tmp_path):
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )
    from test_sasl import SaslBroker

    (tmp_path / "b").mkdir()
    target = SaslBroker(
        tmp_path / "b",
        {"allow.everyone.if.no.acl.found": "false", "super.users": "User:ANONYMOUS"},
    )
    try:
        config = tmp_path / "alice.properties"
        config.write_text(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\n"
            "sasl.username=alice\nsasl.password=alice-secret\n"
        )
        as_alice = ["--command-config", str(config)]
        out = strata_cli("mirror", target.sasl, "list", *as_alice, ok=False)
        assert "(31)" in out.stderr and "DESCRIBE ON THE CLUSTER" in out.stderr.upper(), out.stderr
        a = admin(target.plaintext)
        describe = AclBinding(
            ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, "User:alice", "*",
            AclOperation.DESCRIBE, AclPermissionType.ALLOW,
        )
        for f in a.create_acls([describe], request_timeout=10).values():
            assert f.result() is None
        # DESCRIBE on the cluster lets alice list links, not create them.
        strata_cli("mirror", target.sasl, "list", *as_alice)
        out = strata_cli(
            "mirror", target.sasl, "create", "x", "--source-bootstrap-servers", "127.0.0.1:1",
            "--topic", "t", *as_alice, ok=False,
        )
        assert "(31)" in out.stderr, out.stderr
        assert "link x" not in strata_cli("mirror", target.plaintext, "list").stdout
    finally:
        target.broker.cleanup()
