"""`strata groups list|describe|reset-offsets|delete` against a live group."""

from __future__ import annotations

import subprocess
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import strata_bin


def cli(b, *args, check=True) -> str:
    out = subprocess.run([str(strata_bin()), "groups", "--bootstrap-server", b.bootstrap, *args], capture_output=True, text=True, timeout=60)
    if check:
        assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


def test_groups_cli(broker_factory):
    b = broker_factory({"group.initial.rebalance.delay.ms": "0", "offsets.topic.num.partitions": "3"})
    topic = f"cli-{uuid.uuid4().hex[:8]}"
    group = f"clig-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)]).values():
        f.result(30)
    p = Producer({"bootstrap.servers": b.bootstrap})
    for i in range(20):
        p.produce(topic, value=b"x", partition=i % 2)
    assert p.flush(30) == 0

    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "client.id": "cli-consumer", "enable.auto.commit": False})
    c.subscribe([topic])
    # Read nothing; commit 4 on partition 0 and 7 on partition 1 once assigned.
    while not c.assignment():
        c.poll(0.2)
    c.commit(offsets=[TopicPartition(topic, 0, 4), TopicPartition(topic, 1, 7)], asynchronous=False)

    listed = cli(b, "list")
    assert group in listed and "Stable" in listed
    described = cli(b, "describe", group)
    rows = {tuple(line.split()[:5]) for line in described.splitlines() if line.startswith(topic)}
    assert (topic, "0", "4", "10", "6") in rows and (topic, "1", "7", "10", "3") in rows, described
    assert "cli-consumer" in described and "/127.0.0.1" in described

    # Active members: resetting and deleting are refused.
    assert "active members" in cli(b, "reset-offsets", group, "--topic", topic, "--to-earliest", "--execute", check=False)
    assert "NonEmptyGroup" in cli(b, "delete", group, check=False)
    c.close()

    assert "dry run" in cli(b, "reset-offsets", group, "--topic", topic, "--to-latest")
    cli(b, "reset-offsets", group, "--topic", topic, "--to-offset", "2", "--execute")
    rows = {tuple(line.split()[:5]) for line in cli(b, "describe", group).splitlines() if line.startswith(topic)}
    assert rows == {(topic, "0", "2", "10", "8"), (topic, "1", "2", "10", "8")}, rows
    assert "deleted group" in cli(b, "delete", group)
    assert group not in cli(b, "list")
