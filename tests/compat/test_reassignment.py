"""Moving partitions between brokers with Kafka's own admin APIs, through kafka-python's
KafkaAdminClient (AlterPartitionReassignments, ListPartitionReassignments, DescribeLogDirs,
ElectLeaders; confluent-kafka 2.16 has no reassignment or log-dir calls) on four `strata serve`
processes: three voters that are brokers, and a broker-only fourth node started after the
topic exists.

A partition on brokers 1 and 2 moves to 2 and 4. The fourth broker is stopped while the move
starts, so ListPartitionReassignments shows it in progress (adding 4, removing 1) for certain;
once it is back it catches up through its follower fetcher, joins the ISR and the move
completes. Records produced before, during and after are all read back in order from the new
replica set, broker 1 no longer holds the partition (on disk or in DescribeLogDirs), and the
sizes DescribeLogDirs reports are the bytes of the segment files on disk. Then the preferred
leader is killed and, back in the ISR, made leader again with ElectLeaders (preferred), and
`strata cluster drain` empties broker 4.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, TopicPartition as CTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient, TopicPartition

from conftest import strata_cli, wait_until
from helpers import consumer, flush_all, producer
from test_cluster import Cluster

TOPIC = "moving"


def partition_view(bootstrap: str) -> tuple[list[int], int, list[int]] | None:
    """The partition's (replicas, leader, sorted ISR) as Metadata reports it."""
    md = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000}).list_topics(TOPIC, timeout=5)
    t = md.topics.get(TOPIC)
    if t is None or t.error or 0 not in t.partitions:
        return None
    p = t.partitions[0]
    return list(p.replicas), p.leader, sorted(p.isrs)


def produce(bootstrap: str, values: list[str]):
    p = producer(bootstrap, **{"enable.idempotence": True, "acks": "all"})
    errors = []
    for v in values:
        p.produce(TOPIC, v.encode(), partition=0, on_delivery=lambda err, _m: err and errors.append(err))
    flush_all(p)
    assert not errors, errors


def read_all(bootstrap: str, count: int) -> list[str]:
    c = consumer(bootstrap)
    c.assign([CTopicPartition(TOPIC, 0, 0)])
    out: list[str] = []
    deadline = time.monotonic() + 30
    while len(out) < count and time.monotonic() < deadline:
        for m in c.consume(500, timeout=1.0):
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                continue
            out.append(m.value().decode())
    c.close()
    return out


def segment_bytes(node_dir: Path) -> int:
    return sum(f.stat().st_size for f in (node_dir / "data" / f"{TOPIC}-0").glob("*.log"))


def log_dir_partitions(admin: KafkaAdminClient, broker: int) -> dict[int, dict]:
    [answer] = admin.describe_log_dirs(brokers=[broker])
    [log_dir] = answer["log_dirs"]
    assert log_dir["error_code"] == 0, log_dir
    return {
        p["partition_index"]: p
        for t in log_dir["topics"]
        if t["name"] == TOPIC
        for p in t["partitions"]
    }


@pytest.mark.timeout(300)
def test_a_replica_moves_to_a_new_broker_and_the_preferred_leader_returns(tmp_path, request):
    # Only the moves the test makes: the balancer would fill the empty broker 4 by itself.
    cluster = Cluster(tmp_path, n=3, broker_only=1, extra={"auto.leader.rebalance.enable": "false", "strata.balancer.enable": "false"})
    request.node._strata_brokers = cluster.nodes
    try:
        for b in cluster.nodes[:3]:
            b.start()
        cluster.wait_ready(3)
        bootstrap = cluster.bootstrap()
        creator = AdminClient({"bootstrap.servers": bootstrap})
        fs = creator.create_topics(
            [NewTopic(TOPIC, num_partitions=1, replica_assignment=[[1, 2]])], operation_timeout=10
        )
        fs[TOPIC].result(timeout=10)
        wait_until(lambda: partition_view(bootstrap) == ([1, 2], 1, [1, 2]), 20, "the topic on brokers 1 and 2")
        before = [f"before-{i}" for i in range(300)]
        produce(bootstrap, before)

        # The fourth broker joins after the topic; it registers, then stops (and is fenced).
        fourth = cluster.node(4)
        fourth.start()
        cluster.wait_ready(4)
        fourth.terminate()

        def fourth_fenced():
            d = cluster.describe(cluster.node(1))
            return d and any(b[0] == 4 and b[3] for b in d["brokers"])

        # Until then clients may still be told to use it.
        wait_until(fourth_fenced, 15, "broker 4 fenced")
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        tp = TopicPartition(TOPIC, 0)
        assert admin.alter_partition_reassignments({tp: [2, 4]}) == {tp: None}
        ongoing = admin.list_partition_reassignments()
        assert ongoing == {tp: {"replicas": [2, 4, 1], "adding_replicas": [4], "removing_replicas": [1]}}, ongoing
        during = [f"during-{i}" for i in range(300)]
        produce(bootstrap, during[:150])
        assert admin.list_partition_reassignments() == ongoing, "the move waits for broker 4"

        fourth.start()
        produce(bootstrap, during[150:])
        wait_until(lambda: admin.list_partition_reassignments() == {}, 30, "the move to finish")
        view = partition_view(bootstrap)
        assert view is not None and view[0] == [2, 4] and view[2] == [2, 4], view
        assert view[1] == 2, "the leader on the removed broker 1 handed over to the first target replica"
        after = [f"after-{i}" for i in range(300)]
        produce(bootstrap, after)

        assert read_all(bootstrap, 900) == before + during + after

        # Broker 1 dropped its copy; 2 and 4 report what their segment files hold. (A new
        # client: the first one met broker 4 fenced and does not know its address.)
        admin.close()
        admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap(), request_timeout_ms=10_000)
        wait_until(lambda: not (cluster.node(1).dir / "data" / f"{TOPIC}-0").exists(), 10, "broker 1 to delete the replica")
        assert log_dir_partitions(admin, 1) == {}
        def sizes_settled():
            sizes = {b: log_dir_partitions(admin, b)[0]["partition_size"] for b in (2, 4)}
            on_disk = {b: segment_bytes(cluster.node(b).dir) for b in (2, 4)}
            return sizes if sizes == on_disk and sizes[2] == sizes[4] else None
        sizes = wait_until(sizes_settled, 10, "both replicas' sizes to match their files")
        assert sizes[2] > 900 * len("during-0"), sizes

        # The preferred leader (2) dies: 4 leads. Back and in the ISR, ElectLeaders returns it.
        cluster.node(2).kill()
        wait_until(lambda: (partition_view(cluster.bootstrap()) or [None, None])[1] == 4, 15, "broker 4 to lead")
        cluster.node(2).start()
        wait_until(lambda: partition_view(cluster.bootstrap()) == ([2, 4], 4, [2, 4]), 30, "broker 2 back in the ISR")
        admin.close()
        admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap(), request_timeout_ms=10_000)
        resp = admin.elect_leaders(0, {TOPIC: [0]})
        codes = [p.error_code for r in resp.replica_election_results for p in r.partition_result]
        assert codes == [0], resp
        assert partition_view(cluster.bootstrap()) == ([2, 4], 2, [2, 4])
        resp = admin.elect_leaders(0, {TOPIC: [0]}, raise_errors=False)
        codes = [p.error_code for r in resp.replica_election_results for p in r.partition_result]
        assert codes == [84], "ELECTION_NOT_NEEDED once the preferred replica leads"

        # `strata cluster drain` moves broker 4's replica to a broker without one.
        out = strata_cli("cluster", cluster.node(1).bootstrap, "drain", "4").stdout
        assert f"{TOPIC}-0: broker 4 -> " in out, out

        def drained():
            status = strata_cli("cluster", cluster.node(1).bootstrap, "balance", "status").stdout
            return "no reassignments in progress" in status and partition_view(cluster.bootstrap())

        view = wait_until(drained, 30, "broker 4 drained")
        assert view[0][0] == 2 and view[0][1] in (1, 3) and view[2] == sorted(view[0]), view
        assert read_all(cluster.bootstrap(), 900) == before + during + after
        admin.close()
    finally:
        cluster.cleanup()


BENCH_MB = int(os.environ.get("STRATA_MOVE_BENCH_MB", "0"))


@pytest.mark.skipif(BENCH_MB <= 0, reason="set STRATA_MOVE_BENCH_MB to measure a move (docs/BENCHMARKS.md)")
@pytest.mark.timeout(900)
def test_move_throughput(tmp_path, request):
    """How long moving one replica of a STRATA_MOVE_BENCH_MB MiB partition to a new broker takes,
    from AlterPartitionReassignments to ListPartitionReassignments showing nothing (the new
    replica caught up and in the ISR, the old one removed)."""
    cluster = Cluster(tmp_path, n=3, broker_only=1, extra={"strata.balancer.enable": "false"})
    request.node._strata_brokers = cluster.nodes
    try:
        for b in cluster.nodes[:3]:
            b.start()
        cluster.wait_ready(3)
        boot = cluster.node(1).bootstrap
        creator = AdminClient({"bootstrap.servers": boot})
        creator.create_topics([NewTopic(TOPIC, num_partitions=1, replica_assignment=[[1, 2]])])[TOPIC].result(10)
        wait_until(lambda: partition_view(boot) == ([1, 2], 1, [1, 2]), 20, "the topic")
        p = producer(boot, **{"acks": "all", "linger.ms": 20, "batch.size": 1 << 20})
        payload = os.urandom(1024)
        errors = []
        for _ in range(BENCH_MB * 1024):
            while True:
                try:
                    p.produce(TOPIC, payload, partition=0, on_delivery=lambda err, _m: err and errors.append(err))
                    break
                except BufferError:
                    p.poll(0.05)
        flush_all(p, 300)
        assert not errors, errors[:3]
        cluster.node(4).start()
        cluster.wait_ready(4)
        admin = KafkaAdminClient(bootstrap_servers=boot, request_timeout_ms=30_000)
        t0 = time.monotonic()
        admin.alter_partition_reassignments({TopicPartition(TOPIC, 0): [2, 4]})
        wait_until(lambda: admin.list_partition_reassignments() == {}, 600, "the move", interval=0.05)
        elapsed = time.monotonic() - t0
        size = log_dir_partitions(admin, 4)[0]["partition_size"]
        assert size >= BENCH_MB * 2**20, size
        print(f"\nmoved a {size / 2**20:.0f} MiB replica to a new broker in {elapsed:.2f} s: {size / 2**20 / elapsed:.0f} MiB/s")
        admin.close()
    finally:
        cluster.cleanup()
