"""The admin CLI in the same binary (`strata topics ...`), cross-checked with a real client."""

from __future__ import annotations

import re
import subprocess
import uuid

from confluent_kafka import TopicCollection

from confluent_kafka.admin import ConfigResource, ConfigSource

import helpers as h
from conftest import free_port, strata_cli

T = h.OP_TIMEOUT_S


def strata(broker_or_addr, *args, ok=True) -> subprocess.CompletedProcess:
    return strata_cli("topics", broker_or_addr, *args, ok=ok)


def describe(broker, name):
    """Parses `topics describe`: (topic id, partition count, [partition rows], {config})."""
    out = strata(broker, "describe", name).stdout
    lines = out.splitlines()
    m = re.fullmatch(rf"Topic: {re.escape(name)}\tTopicId: (\S+)\tPartitionCount: (\d+)", lines[0])
    assert m, f"unexpected header line: {lines[0]!r}\n{out}"
    rows = []
    for line in lines[1:-1]:
        fields = dict(f.split(": ", 1) for f in line.strip().split("\t"))
        rows.append(fields)
    assert lines[-1].startswith("\tConfigs: "), out
    configs_text = lines[-1][len("\tConfigs: "):]
    configs = dict(kv.split("=", 1) for kv in configs_text.split(",")) if configs_text else {}
    return m.group(1), int(m.group(2)), rows, configs


def topic_id_of(broker, name) -> str:
    """The topic's id as a real client sees it (DescribeTopics / Metadata v10+), as a UUID."""
    a = h.admin(broker.bootstrap)
    desc = a.describe_topics(TopicCollection([name]), request_timeout=T)[name].result(timeout=T)
    u = desc.topic_id
    value = (u.get_most_significant_bits() & (2**64 - 1)) << 64 | (
        u.get_least_significant_bits() & (2**64 - 1)
    )
    return str(uuid.UUID(int=value))


def test_topics_create_list_describe_alter_delete(broker):
    out = strata(broker, "create", "cli-orders", "--partitions", "3").stdout
    assert re.fullmatch(
        r"created topic cli-orders \(3 partitions, replication factor 1, id [0-9a-f-]{36}\)\n", out
    ), out
    strata(broker, "create", "cli-audit", "--partitions", "1", "--config", "retention.ms=86400000")

    assert strata(broker, "list").stdout.splitlines() == ["cli-audit", "cli-orders"]

    _, count, rows, configs = describe(broker, "cli-orders")
    assert count == 3
    assert [r["Partition"] for r in rows] == ["0", "1", "2"]
    for r in rows:
        assert (r["Leader"], r["Replicas"], r["Isr"]) == ("1", "1", "1"), r
    assert configs == {}

    assert describe(broker, "cli-audit")[3] == {"retention.ms": "86400000"}

    # alter --set, seen by the CLI and by a real client.
    out = strata(broker, "alter", "cli-orders", "--set", "retention.ms=1000").stdout
    assert out == "altered topic cli-orders\n"
    assert describe(broker, "cli-orders")[3] == {"retention.ms": "1000"}
    res = ConfigResource(ConfigResource.Type.TOPIC, "cli-orders")
    a = h.admin(broker.bootstrap)  # keep a reference: a collected client cancels its futures
    cfg = a.describe_configs([res], request_timeout=T)[res].result(timeout=T)
    assert cfg["retention.ms"].value == "1000"
    assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    # alter --delete goes back to the default.
    strata(broker, "alter", "cli-orders", "--set", "segment.bytes=1048576", "--delete", "retention.ms")
    assert describe(broker, "cli-orders")[3] == {"segment.bytes": "1048576"}

    # The topic is usable by clients.
    p = h.producer(broker.bootstrap)
    d = h.Deliveries()
    for i in range(9):
        p.produce("cli-orders", key=b"%d" % i, value=b"x", partition=i % 3, on_delivery=d)
    h.flush_all(p)
    d.assert_all_ok(9)

    out = strata(broker, "delete", "cli-orders").stdout
    assert out == "deleted topic cli-orders\n"
    assert strata(broker, "list").stdout.splitlines() == ["cli-audit"]


def test_topics_print_the_real_topic_id(broker):
    out = strata(broker, "create", "cli-ids", "--partitions", "2").stdout
    real_id = topic_id_of(broker, "cli-ids")
    assert real_id != str(uuid.UUID(int=0))
    assert f", id {real_id})" in out, f"create printed {out!r}; the topic's id is {real_id}"
    topic_id, _, _, _ = describe(broker, "cli-ids")
    assert topic_id == real_id, f"describe printed TopicId {topic_id}; the topic's id is {real_id}"


def test_topics_describe_missing_topic_fails_without_creating_it(broker):
    err = strata(broker, "describe", "cli-missing", ok=False).stderr
    assert "cli-missing" in err, err
    # Describing must not create it (auto-creation is for clients that write or read).
    assert strata(broker, "list").stdout.splitlines() == []


def test_topics_errors(broker):
    strata(broker, "create", "cli-dup", "--partitions", "2")
    err = strata(broker, "create", "cli-dup", "--partitions", "2", ok=False).stderr
    assert "cli-dup" in err and re.search(r"exist", err, re.I), err

    err = strata(broker, "create", "cli-badcfg", "--config", "retention.ms=abc", ok=False).stderr
    assert "cli-badcfg" in err, err
    err = strata(broker, "create", "bad/name", ok=False).stderr
    assert err, "no error message"
    assert strata(broker, "list").stdout.splitlines() == ["cli-dup"]

    err = strata(broker, "delete", "cli-missing", ok=False).stderr
    assert "cli-missing" in err, err
    err = strata(broker, "alter", "cli-dup", "--set", "no.such.key=1", ok=False).stderr
    assert "cli-dup" in err, err
    err = strata(broker, "alter", "cli-dup", "--set", "retention.ms", ok=False).stderr
    assert "KEY=VALUE" in err, err

    # Nothing listening: a prompt, clear failure.
    dead = f"127.0.0.1:{free_port()}"
    err = strata(dead, "list", ok=False).stderr
    assert dead in err, err
