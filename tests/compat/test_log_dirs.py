"""AlterReplicaLogDirs with a real client: kafka-python 3.0.12's admin client sends the request
(its protocol classes; the admin client has no method for it) and DescribeLogDirs, to a broker
with two log dirs. A partition with records moves to the other dir while a producer writes to
it; every record reads back at its offset, the files are only in the new dir, and DescribeLogDirs
shows the replica there. A dir that is not one of log.dirs is LOG_DIR_NOT_FOUND. A follower's
replica moves too: after its leader stops, it leads with every record."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient
from kafka.protocol.admin import AlterReplicaLogDirsRequest

import helpers as h
from conftest import wait_until
from test_cluster import Cluster

TOPIC = "moving"
LOG_DIR_NOT_FOUND = 57


def alter(
    admin: KafkaAdminClient, path: str, partitions: list[int], node: int = 1
) -> list[tuple[int, int]]:
    d = AlterReplicaLogDirsRequest.AlterReplicaLogDir
    req = AlterReplicaLogDirsRequest(
        dirs=[d(path=path, topics=[d.AlterReplicaLogDirTopic(name=TOPIC, partitions=partitions)])]
    )

    async def send():
        return await admin._manager.send(req, node_id=node)

    resp = admin._manager.run(send)
    return [(p.partition_index, p.error_code) for t in resp.results for p in t.partitions]


def held(admin: KafkaAdminClient, node: int = 1) -> dict[str, list[dict]]:
    """log dir -> the partitions of TOPIC DescribeLogDirs lists there."""
    [answer] = admin.describe_log_dirs(brokers=[node])
    out = {}
    for d in answer["log_dirs"]:
        assert d["error_code"] == 0, d
        out[d["log_dir"]] = [p for t in d["topics"] if t["name"] == TOPIC for p in t["partitions"]]
    return out


@pytest.mark.timeout(120)
def test_a_partition_moves_between_log_dirs_while_produced_to(broker_factory, tmp_path):
    a, b = tmp_path / "dirs" / "a", tmp_path / "dirs" / "b"
    broker = broker_factory(
        {"log.dirs": f"{a},{b}", "replica.alter.log.dirs.io.max.bytes.per.second": "2000000"}
    )
    bootstrap = broker.bootstrap
    h.create_topic(bootstrap, TOPIC, 1, {"segment.bytes": "200000"})
    p = h.producer(bootstrap)
    for i in range(3000):
        p.produce(TOPIC, value=f"v{i:06}".encode() * 50, partition=0)
    h.flush_all(p)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    before = held(admin)
    [source] = [d for d, parts in before.items() if parts]
    target = str(b) if source == str(a) else str(a)

    assert alter(admin, target + "/", [0]) == [(0, 0)]
    assert alter(admin, str(tmp_path / "nowhere"), [0]) == [(0, LOG_DIR_NOT_FOUND)]

    stop = threading.Event()

    def keep_producing():
        i = 3000
        while not stop.is_set() or i < 3200:
            p.produce(TOPIC, value=f"v{i:06}".encode() * 50, partition=0)
            p.poll(0)
            i += 1
            if i % 20 == 0:
                stop.wait(0.01)
        h.flush_all(p)
        keep_producing.end = i

    t = threading.Thread(target=keep_producing)
    t.start()

    def moved():
        now = held(admin)
        return now[source] == [] and [q["is_future_key"] for q in now[target]] == [False]

    wait_until(moved, 60, "the replica in the target dir alone")
    stop.set()
    t.join(60)
    end = keep_producing.end

    recs = h.read_partitions(bootstrap, TOPIC, [0])
    assert [r.offset for r in recs] == list(range(end))
    assert [r.value for r in recs] == [f"v{i:06}".encode() * 50 for i in range(end)]
    assert not (a if source == str(a) else b).joinpath(f"{TOPIC}-0").exists()
    new = (b if source == str(a) else a) / f"{TOPIC}-0"
    assert any(f.suffix == ".log" for f in new.iterdir())
    assert not (new / "future-replica").exists()
    admin.close()


def isr(bootstrap: str) -> tuple[int, list[int]] | None:
    md = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000}).list_topics(TOPIC, timeout=5)
    t = md.topics.get(TOPIC)
    if t is None or t.error or 0 not in t.partitions:
        return None
    return t.partitions[0].leader, sorted(t.partitions[0].isrs)


@pytest.mark.timeout(120)
def test_a_followers_replica_moves_and_then_leads_with_every_record(tmp_path, request):
    cluster = Cluster(tmp_path, n=3, extra={"strata.balancer.enable": "false", "auto.leader.rebalance.enable": "false"})
    request.node._strata_brokers = cluster.nodes
    follower = cluster.node(2)
    second = follower.dir / "data2"
    follower.extra_sets["log.dirs"] = f"{follower.data_dir},{second}"
    try:
        cluster.start_all()
        cluster.wait_ready(3)
        bootstrap = cluster.bootstrap()
        creator = AdminClient({"bootstrap.servers": bootstrap})
        fs = creator.create_topics(
            [NewTopic(TOPIC, num_partitions=1, replica_assignment=[[1, 2]])], operation_timeout=10
        )
        fs[TOPIC].result(timeout=10)
        wait_until(lambda: isr(bootstrap) == (1, [1, 2]), 20, "the partition led by 1, both in the ISR")
        p = h.producer(bootstrap)
        for i in range(2000):
            p.produce(TOPIC, value=f"v{i:06}".encode(), partition=0)
        h.flush_all(p)
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        assert [q["is_future_key"] for q in held(admin, 2)[str(follower.data_dir)]] == [False]

        assert alter(admin, str(second), [0], node=2) == [(0, 0)]
        for i in range(2000, 2500):
            p.produce(TOPIC, value=f"v{i:06}".encode(), partition=0)
            p.poll(0)
        h.flush_all(p)

        def moved():
            now = held(admin, 2)
            return now[str(follower.data_dir)] == [] and [q["is_future_key"] for q in now[str(second)]] == [False]

        wait_until(moved, 30, "the follower's replica in its second dir alone")
        wait_until(lambda: isr(bootstrap) == (1, [1, 2]), 20, "the moved follower in the ISR")
        admin.close()
        assert not (follower.data_dir / f"{TOPIC}-0").exists()

        # Three voters, so the controller outlives broker 1 and moves the leadership.
        cluster.node(1).stop()
        wait_until(lambda: (isr(follower.bootstrap) or (0,))[0] == 2, 30, "broker 2 leading")
        recs = h.read_partitions(follower.bootstrap, TOPIC, [0])
        assert [r.offset for r in recs] == list(range(2500))
        assert [r.value for r in recs] == [f"v{i:06}".encode() for i in range(2500)]
    finally:
        cluster.cleanup()
