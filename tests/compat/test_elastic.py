"""An elastic cluster under load: the controller's balancer fills a new broker by itself, and a
drained broker is emptied and unregistered, while an idempotent acks=all producer writes.

Three voters that are brokers hold a topic of six partitions (two replicas each, four per
broker). A fourth, broker-only node starts: with no command, the balancer moves replicas to it,
at most `strata.balancer.max.concurrent.moves` at a time, until the counts lie within the
tolerance. Then `strata cluster drain 1` empties broker 1 (the balancer keeps it empty), it is
stopped and `strata cluster unregister 1` removes it. The history checker (history.py) finds no
acknowledged record lost, none twice, none reordered; every partition ends with two in-sync
replicas on the live brokers; broker 1 holds nothing; the producer saw no failed delivery and
only retriable errors. The balancer's metrics agree, and its pause reaches every node.
"""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

import helpers as h
from conftest import strata_cli, wait_until
from history import History
from test_cluster import Cluster
from test_metrics import get, sample

TOPIC = "elastic"
PARTITIONS = 6


def placement(bootstrap: str) -> dict[int, tuple[list[int], list[int]]] | None:
    """partition -> (replicas, sorted ISR), as Metadata reports them."""
    try:
        md = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000}).list_topics(TOPIC, timeout=5)
    except Exception:
        return None
    t = md.topics.get(TOPIC)
    if t is None or t.error or len(t.partitions) != PARTITIONS:
        return None
    return {i: (list(p.replicas), sorted(p.isrs)) for i, p in t.partitions.items()}


def per_broker(view) -> dict[int, int]:
    counts: dict[int, int] = {}
    for replicas, _ in view.values():
        for b in replicas:
            counts[b] = counts.get(b, 0) + 1
    return counts


def settled(cluster: Cluster, boot: str):
    """The placement, once no reassignment runs and every ISR is full."""
    status = strata_cli("cluster", boot, "balance", "status").stdout
    if "no reassignments in progress" not in status:
        return None
    view = placement(cluster.bootstrap())
    if not view or any(sorted(r) != isr for r, isr in view.values()):
        return None
    return view


@pytest.mark.timeout(240)
def test_the_balancer_fills_a_new_broker_and_a_drained_one_leaves_under_load(tmp_path, request):
    cluster = Cluster(
        tmp_path,
        n=3,
        broker_only=1,
        extra={"strata.balancer.max.concurrent.moves": "2"},
    )
    request.node._strata_brokers = cluster.nodes
    try:
        for b in cluster.nodes[:3]:
            b.start()
        cluster.wait_ready(3)
        boot = cluster.node(2).bootstrap
        creator = AdminClient({"bootstrap.servers": cluster.bootstrap()})
        creator.create_topics(
            [NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=2)], operation_timeout=10
        )[TOPIC].result(timeout=10)
        view = wait_until(lambda: settled(cluster, boot), 30, "the topic on brokers 1-3")
        assert per_broker(view) == {1: 4, 2: 4, 3: 4}, view

        hist = History()
        lock = threading.Lock()
        stop = threading.Event()
        failed: list[str] = []
        client_errors: list = []

        def produce():
            p = Producer({
                "bootstrap.servers": cluster.bootstrap(), "acks": "all", "enable.idempotence": True,
                "linger.ms": 5, "message.timeout.ms": 120000, "topic.metadata.refresh.interval.ms": 1000,
                "retry.backoff.ms": 50, "retry.backoff.max.ms": 200,
                "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 200,
                "error_cb": lambda e: client_errors.append(e),
            })

            def cb(err, msg):
                with lock:
                    if err is None:
                        hist.ack(msg.value(), msg.partition(), msg.offset())
                    else:
                        failed.append(str(err))
                        hist.fail(msg.value())

            i = 0
            while not stop.is_set():
                value = f"v{i}".encode()
                while True:
                    try:
                        p.produce(TOPIC, value=value, partition=i % PARTITIONS, on_delivery=cb)
                        break
                    except BufferError:
                        p.poll(0.01)
                # Callbacks run only in poll and flush, on this thread: after this record.
                with lock:
                    hist.send(value, i % PARTITIONS)
                i += 1
                p.poll(0.002)
            p.flush(120)

        t = threading.Thread(target=produce, daemon=True)
        t.start()
        time.sleep(1)

        # A fourth broker joins empty; the balancer fills it without being asked.
        cluster.node(4).start()
        cluster.wait_ready(4)

        def filled():
            v = settled(cluster, boot)
            c = per_broker(v) if v else {}
            return v if c.get(4, 0) >= 2 and max(c.values()) - min(c.values()) <= 1 else None

        view = wait_until(filled, 60, "the balancer to move replicas to broker 4", interval=0.5)
        assert sorted(per_broker(view).values()) == [3, 3, 3, 3], view

        # Drain broker 1, wait until it holds nothing, stop it and unregister it.
        out = strata_cli("cluster", boot, "drain", "1").stdout
        assert "broker 1 -> " in out, out
        status = strata_cli("cluster", boot, "balance", "status").stdout
        assert "strata.balancer.drain.brokers = 1" in status, status

        def drained():
            v = settled(cluster, boot)
            return v if v and 1 not in per_broker(v) else None

        view = wait_until(drained, 60, "broker 1 to be drained", interval=0.5)
        # Three moves onto broker 4, three off broker 1, all completed by the active controller.
        completed = sum(sample(get(cluster.node(i), "/metrics")[1], "strata_controller_reassignments_completed_total")
                        for i in (1, 2, 3))
        assert completed >= 6, completed
        wait_until(lambda: not list((cluster.node(1).data_dir).glob(f"{TOPIC}-*")), 20,
                   "broker 1 to delete its copies")
        stop.set()
        t.join(150)
        assert not t.is_alive(), "the producer did not finish"

        cluster.node(1).terminate()

        def fenced():
            d = cluster.describe(cluster.node(2))
            return d and any(b[0] == 1 and b[3] for b in d["brokers"])

        wait_until(fenced, 20, "broker 1 fenced")
        strata_cli("cluster", boot, "unregister", "1")
        d = cluster.describe(cluster.node(2))
        assert d and [b[0] for b in d["brokers"]] == [2, 3, 4], d

        def even():
            v = settled(cluster, boot)
            return v if v and sorted(per_broker(v).values()) == [4, 4, 4] else None

        view = wait_until(even, 30, "12 replicas even over brokers 2-4", interval=0.5)
        assert all(len(r) == 2 and set(r) <= {2, 3, 4} and sorted(r) == isr for r, isr in view.values()), view

        # The metrics agree; a pause is in the metadata log, seen by every node, and undone.
        _, text = get(cluster.node(3), "/metrics")
        assert sample(text, "strata_controller_balancer_moves_in_flight") == 0
        assert sample(text, "strata_controller_balancer_max_replicas_per_broker") == 4
        assert sample(text, "strata_controller_balancer_min_replicas_per_broker") == 4
        assert sample(text, "strata_controller_balancer_paused") == 0
        strata_cli("cluster", boot, "balance", "pause")
        wait_until(lambda: sample(get(cluster.node(4), "/metrics")[1], "strata_controller_balancer_paused") == 1,
                   10, "the pause to reach broker 4")
        strata_cli("cluster", boot, "balance", "resume")
        wait_until(lambda: sample(get(cluster.node(3), "/metrics")[1], "strata_controller_balancer_paused") == 0,
                   10, "the resume to reach broker 3")

        assert not failed, failed[:3]
        assert not [e for e in client_errors if e.fatal()], client_errors
        with lock:
            acked = sum(1 for s in hist.sends.values() if s.acked_at)
        assert acked > 200, acked
        records = h.read_partitions(cluster.bootstrap(), TOPIC, range(PARTITIONS), timeout=60)
        hist.read_all("final", records, range(PARTITIONS))
        report = hist.check()
        print(f"\nhistory: {report.counts()}")
        report.assert_ok()
        assert report.recovered == acked
    finally:
        cluster.cleanup()


@pytest.mark.parametrize("side,throttled_replica", [("follower", "0:2"), ("leader", "0:1")])
def test_a_throttled_move_takes_its_bytes_over_the_rate_and_others_are_not_held_back(
    tmp_path, request, side, throttled_replica
):
    """Two partitions of equal size on broker 1 both get a replica on broker 2; only
    partition 0's is throttled, on the follower side (`follower.replication.throttled.replicas
    = 0:2`, broker 2 fetching within `follower.replication.throttled.rate`) or the leader side
    (`leader.replication.throttled.replicas = 0:1`, broker 1 sending within
    `leader.replication.throttled.rate`). Its copy takes at least (bytes - one fetch) / rate;
    partition 1's finishes before that bound, though broker 2 fetches both from broker 1 in the
    same fetch session."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
    from kafka import KafkaAdminClient, TopicPartition

    rate, fetch_max, records = 100_000, 65_536, 500
    cluster = Cluster(
        tmp_path, n=3,
        extra={"strata.balancer.enable": "false", "replica.fetch.max.bytes": str(fetch_max)},
    )
    request.node._strata_brokers = cluster.nodes
    try:
        cluster.start_all()
        cluster.wait_ready(3)
        boot = cluster.bootstrap()
        admin = AdminClient({"bootstrap.servers": boot})
        admin.create_topics([NewTopic("throttled", num_partitions=2, replica_assignment=[[1], [1]])])[
            "throttled"].result(10)
        # Batches under a fetch: a batch is never split, so one larger than
        # replica.fetch.max.bytes would overdraw either side's bucket by more than one fetch.
        p = h.producer(boot, **{"acks": "all", "linger.ms": 20, "batch.size": fetch_max // 4})
        payload = bytes(range(256)) * 4
        for i in range(records):
            for part in (0, 1):
                p.produce("throttled", value=payload, partition=part)
        h.flush_all(p)
        size = sum(f.stat().st_size for f in (cluster.node(1).data_dir / "throttled-0").glob("*.log"))
        assert size >= records * 1024, size

        def alter(resource, key, value):
            entry = ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
            # Broker 1 stores a broker config cluster-wide (confluent-kafka names no default).
            name = "1" if resource == ResourceType.BROKER else "throttled"
            res = ConfigResource(resource, name, incremental_configs=[entry])
            for f in admin.incremental_alter_configs([res]).values():
                f.result(10)

        alter(ResourceType.BROKER, f"{side}.replication.throttled.rate", str(rate))
        alter(ResourceType.TOPIC, f"{side}.replication.throttled.replicas", throttled_replica)
        time.sleep(1)  # every broker has applied both

        kadmin = KafkaAdminClient(bootstrap_servers=boot, request_timeout_ms=10_000)
        t0, t1 = TopicPartition("throttled", 0), TopicPartition("throttled", 1)
        start = time.monotonic()
        assert kadmin.alter_partition_reassignments({t0: [1, 2], t1: [1, 2]}) == {t0: None, t1: None}
        done: dict[int, float] = {}

        def both_done():
            ongoing = kadmin.list_partition_reassignments()
            for tp in (t0, t1):
                if tp not in ongoing and tp.partition not in done:
                    done[tp.partition] = time.monotonic() - start
            return len(done) == 2

        wait_until(both_done, 60, "both moves to complete", interval=0.05)
        bound = (size - fetch_max) / rate
        assert done[0] >= bound, f"the throttled copy of {size} bytes took {done[0]:.2f} s < {bound:.2f} s"
        assert done[1] < bound, f"the unthrottled copy took {done[1]:.2f} s, the throttled bound is {bound:.2f} s"
        print(f"\nthrottled {done[0]:.2f} s (bound {bound:.2f} s), unthrottled {done[1]:.2f} s")
        kadmin.close()
    finally:
        cluster.cleanup()
