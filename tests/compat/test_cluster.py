"""Three `strata serve` processes forming one cluster (three voters of the metadata quorum, each
also a broker) on 127.0.0.1: bootstrap with `strata format`, create topics, SIGKILL the active
controller, and check that CreateTopics succeeds again and every broker reports the same
metadata.

The failover time (SIGKILL to the first successful CreateTopics, replication factor 2) is
measured over $STRATA_FAILOVER_RUNS runs (default 3; `docs/BENCHMARKS.md` records 20). With
$STRATA_FAILOVER_OUT set, the times are appended there as JSON.

Further tests: a killed broker is fenced within seconds even with a long session timeout (its
heartbeat connection closes; a new controller's election grace), and a broker-only node
follows the metadata log as a learner and answers DescribeQuorum.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import StrataBroker, strata_bin, wait_until
from kafka_wire import Connection, describe_quorum

RUNS = int(os.environ.get("STRATA_FAILOVER_RUNS", "3"))


def run(*args, timeout=30) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    return subprocess.run(
        [str(strata_bin()), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


class Cluster:
    """`n` nodes that are voters and brokers, then `broker_only` nodes (`process.roles =
    broker`) that follow the metadata log as learners."""

    def __init__(self, tmp, n: int = 3, extra: dict[str, str] | None = None, broker_only: int = 0):
        self.nodes: list[StrataBroker] = []
        for i in range(n + broker_only):
            d = tmp / f"node{i + 1}"
            d.mkdir()
            self.nodes.append(StrataBroker(d))
        voters = ",".join(
            f"{i + 1}@127.0.0.1:{b.controller_port}" for i, b in enumerate(self.nodes[:n])
        )
        self.cluster_id = uuid.uuid4().hex
        for i, b in enumerate(self.nodes):
            b.node_id = i + 1
            b.extra_sets.update(
                {
                    "node.id": str(i + 1),
                    "controller.quorum.voters": voters,
                    "broker.session.timeout.ms": "3000",
                    "broker.heartbeat.interval.ms": "500",
                }
            )
            if i >= n:
                b.extra_sets["process.roles"] = "broker"
            b.extra_sets.update(extra or {})
            p = run(
                "format", "--cluster-id", self.cluster_id,
                "--set", f"log.dirs={b.data_dir}", "--set", f"node.id={i + 1}",
                "--set", f"controller.quorum.voters={voters}",
            )
            assert p.returncode == 0, p.stderr

    def start_all(self):
        # From this thread: a broker gets SIGKILL when the thread that started it exits
        # (PR_SET_PDEATHSIG). `start` returns once the Kafka port is bound, before the node
        # has joined the quorum, so the nodes still come up together.
        for b in self.nodes:
            b.start()

    def live(self) -> list[StrataBroker]:
        return [b for b in self.nodes if b.is_running()]

    def live_voters(self) -> list[StrataBroker]:
        return [b for b in self.live() if b.extra_sets.get("process.roles") != "broker"]

    def describe(self, b: StrataBroker) -> dict | None:
        p = run("cluster", "describe", "--controller", f"127.0.0.1:{b.controller_port}", "--json", timeout=10)
        if p.returncode != 0:
            return None
        return json.loads(p.stdout)

    def leader(self) -> int | None:
        """The active controller all live nodes agree on."""
        seen = set()
        for b in self.live_voters():
            d = self.describe(b)
            if d is None:
                return None
            seen.add(d["leader"])
        return seen.pop() if len(seen) == 1 and None not in seen else None

    def wait_ready(self, brokers: int = 3):
        """One active controller, and `brokers` registered, unfenced brokers."""
        wait_until(self.leader, 30, "one active controller")

        def ready():
            d = self.describe(self.live()[0])
            return d and sum(1 for b in d["brokers"] if not b[3]) >= brokers

        wait_until(ready, 30, f"{brokers} unfenced brokers")
        return self.leader()

    def node(self, node_id: int) -> StrataBroker:
        return self.nodes[node_id - 1]

    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.live())

    def cleanup(self):
        for b in self.nodes:
            b.cleanup()


def create_topics(bootstrap: str, names: list[str], partitions: int = 3, rf: int = 3, timeout: float = 5.0):
    a = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000})
    fs = a.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=rf) for n in names],
        request_timeout=timeout,
        operation_timeout=timeout,
    )
    for f in fs.values():
        f.result(timeout=timeout)


def metadata_view(b: StrataBroker):
    """Topics with their partitions' replicas, as this one broker reports them."""
    a = AdminClient({"bootstrap.servers": b.bootstrap, "socket.timeout.ms": 2000})
    md = a.list_topics(timeout=5)
    return {
        name: sorted((p.id, tuple(p.replicas), p.leader, tuple(sorted(p.isrs))) for p in t.partitions.values())
        for name, t in md.topics.items()
        if not t.error
    }


def same_metadata(cluster: Cluster):
    views = []
    for b in cluster.live():
        try:
            views.append(metadata_view(b))
        except Exception:  # noqa: BLE001 - a broker still catching up
            return None
    return views[0] if all(v == views[0] for v in views) else None


@pytest.fixture
def cluster(tmp_path, request):
    c = Cluster(tmp_path)
    request.node._strata_brokers = c.nodes
    c.start_all()
    yield c
    c.cleanup()


@pytest.mark.timeout(600)
def test_three_nodes_survive_the_loss_of_the_active_controller(cluster):
    cluster.wait_ready()
    create_topics(cluster.bootstrap(), ["before-a", "before-b"])
    view = wait_until(lambda: same_metadata(cluster), 20, "every broker to report the same metadata")
    assert set(view) >= {"before-a", "before-b"}
    for parts in (view["before-a"], view["before-b"]):
        assert len(parts) == 3
        assert all(len(replicas) == 3 for _, replicas, _, _ in parts)

    times = []
    for run_index in range(RUNS):
        leader = wait_until(cluster.leader, 30, "one active controller")
        victim = cluster.node(leader)
        victim.kill()
        t0 = time.monotonic()
        name = f"after-{run_index}-{uuid.uuid4().hex[:6]}"
        while True:
            try:
                # RF 2: the killed broker is fenced within about a second and a half, leaving
                # two brokers to place replicas on.
                create_topics(cluster.bootstrap(), [name], rf=2, timeout=5.0)
                break
            except Exception as e:  # noqa: BLE001 - retried until the quorum recovers
                if "TOPIC_ALREADY_EXISTS" in str(e):
                    break
                assert time.monotonic() - t0 < 30, f"CreateTopics never succeeded after the kill: {e}"
                time.sleep(0.02)
        elapsed = time.monotonic() - t0
        times.append(elapsed)
        new_leader = wait_until(cluster.leader, 20, "a new active controller")
        assert new_leader != leader
        # The killed broker is fenced after its session and leads nothing; the rest agree.
        def settled():
            v = same_metadata(cluster)
            if v is None or name not in v:
                return None
            leaders = {ldr for parts in v.values() for _, _, ldr, _ in parts}
            return v if leader not in leaders else None

        wait_until(settled, 20, "every broker to report the same metadata without the killed leader")
        victim.start()
        cluster.wait_ready()
        wait_until(lambda: same_metadata(cluster), 30, "the restarted node to catch up")

    med, mx = statistics.median(times), max(times)
    print(f"\nmetadata failover over {len(times)} runs: median {med:.3f} s, max {mx:.3f} s, all {[round(t, 3) for t in times]}")
    out = os.environ.get("STRATA_FAILOVER_OUT")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps({"runs": len(times), "median_s": med, "max_s": mx, "times_s": times}) + "\n")
    assert mx < 10


def test_cluster_describe_and_describe_cluster(cluster):
    leader = wait_until(cluster.leader, 20, "one active controller")
    d = cluster.describe(cluster.nodes[0])
    assert sorted(v[0] for v in d["voters"]) == [1, 2, 3]
    wait_until(lambda: len(cluster.describe(cluster.nodes[0])["brokers"]) == 3, 10, "three brokers registered")
    text = run("cluster", "describe", "--controller", f"127.0.0.1:{cluster.nodes[1].controller_port}").stdout
    assert f"ActiveController: {leader}" in text
    assert text.count("Voter ") == 3 and text.count("Broker ") == 3
    a = AdminClient({"bootstrap.servers": cluster.nodes[2].bootstrap})
    desc = a.describe_cluster(request_timeout=10).result(timeout=10)
    # librdkafka takes the controller from Metadata, where (as in KRaft) a broker names a live
    # broker, itself, since every broker forwards controller requests.
    assert desc.controller.id == 3
    assert sorted(n.id for n in desc.nodes) == [1, 2, 3]


def test_a_node_refuses_another_clusters_data(tmp_path):
    b = StrataBroker(tmp_path)
    p = run("format", "--cluster-id", "one", "--set", f"log.dirs={b.data_dir}")
    assert p.returncode == 0, p.stderr
    again = run("format", "--cluster-id", "one", "--set", f"log.dirs={b.data_dir}")
    assert again.returncode == 0, again.stderr
    other = run("format", "--cluster-id", "two", "--set", f"log.dirs={b.data_dir}")
    assert other.returncode != 0 and "cluster one" in other.stderr
    b.extra_sets["cluster.id"] = "two"
    with pytest.raises(AssertionError, match="refusing to start"):
        b.start()


def test_controlled_shutdown_moves_leaderships_away(cluster):
    cluster.wait_ready()
    create_topics(cluster.bootstrap(), ["drained"], partitions=6)
    view = wait_until(lambda: same_metadata(cluster), 20, "the same metadata everywhere")
    led_by_3 = [p for p in view["drained"] if p[2] == 3]
    assert led_by_3, view
    victim = cluster.node(3)
    assert victim.terminate() == 0
    # Right after a SIGTERM exit, before any session could expire, broker 3 leads nothing.
    v = wait_until(lambda: same_metadata(cluster), 5, "the same metadata everywhere")
    assert all(ldr != 3 for _, _, ldr, _ in v["drained"]), v["drained"]
    assert "controlled shutdown" in victim.log_text()


@pytest.fixture
def slow_session_cluster(tmp_path, request):
    """A cluster whose session timeout is far beyond the bounds below: only the closing of a
    dead broker's heartbeat connection, or the election grace, can fence it in time."""
    c = Cluster(tmp_path, extra={"broker.session.timeout.ms": "30000"})
    request.node._strata_brokers = c.nodes
    c.start_all()
    yield c
    c.cleanup()


FENCE_BOUND_S = 3.0


def fenced_in(cluster: Cluster, observer: StrataBroker, broker_id: int):
    d = cluster.describe(observer)
    return d is not None and any(b[0] == broker_id and b[3] for b in d["brokers"])


def assert_leaderships_moved(cluster: Cluster, before, victim_id: int, topic: str):
    """Every partition `victim_id` led has a new leader from its ISR, and left the ISR."""
    def moved():
        v = same_metadata(cluster)
        return v if v and all(p[2] != victim_id for p in v[topic]) else None

    after = {p[0]: p for p in wait_until(moved, 10, f"broker {victim_id} to lose its leaderships")[topic]}
    for pid, _, ldr, isr in before[topic]:
        if ldr != victim_id:
            continue
        _, _, new_ldr, new_isr = after[pid]
        assert new_ldr in isr and new_ldr != victim_id, (pid, isr, after[pid])
        assert victim_id not in new_isr, (pid, after[pid])


@pytest.mark.timeout(300)
def test_a_killed_broker_is_fenced_within_a_second_or_two(slow_session_cluster):
    cluster = slow_session_cluster
    leader = cluster.wait_ready()
    create_topics(cluster.bootstrap(), ["fenced-fast"], partitions=6)
    view = wait_until(lambda: same_metadata(cluster), 20, "the same metadata everywhere")

    # A broker that is not the active controller: its heartbeat connection closes.
    victim_id = next(i for i in (1, 2, 3) if i != leader)
    assert any(p[2] == victim_id for p in view["fenced-fast"]), view
    cluster.node(victim_id).kill()
    t0 = time.monotonic()
    wait_until(lambda: fenced_in(cluster, cluster.node(leader), victim_id), FENCE_BOUND_S,
               f"broker {victim_id} fenced within {FENCE_BOUND_S} s of SIGKILL")
    print(f"\nbroker {victim_id} fenced {time.monotonic() - t0:.3f} s after SIGKILL")
    assert_leaderships_moved(cluster, view, victim_id, "fenced-fast")

    cluster.node(victim_id).start()
    leader = cluster.wait_ready()
    wait_until(lambda: same_metadata(cluster), 30, "the restarted node to catch up")
    create_topics(cluster.bootstrap(), ["fenced-fast-2"], partitions=6)
    view = wait_until(lambda: same_metadata(cluster), 20, "the same metadata everywhere")

    # The active controller: the new one knows no sessions, and fences the brokers that do not
    # reach it within the election grace.
    assert any(p[2] == leader for p in view["fenced-fast-2"]), view
    cluster.node(leader).kill()
    t0 = time.monotonic()
    observer = cluster.live()[0]
    wait_until(lambda: fenced_in(cluster, observer, leader), FENCE_BOUND_S,
               f"the killed controller {leader} fenced within {FENCE_BOUND_S} s of SIGKILL")
    print(f"controller {leader} fenced {time.monotonic() - t0:.3f} s after SIGKILL")
    assert_leaderships_moved(cluster, view, leader, "fenced-fast-2")
    # The survivors reconnected in time: neither was fenced by the election grace.
    d = cluster.describe(observer)
    assert [b[0] for b in d["brokers"] if b[3]] == [leader], d["brokers"]


@pytest.mark.timeout(300)
def test_a_broker_only_node_follows_the_log_as_a_learner(tmp_path, request):
    cluster = Cluster(tmp_path, n=3, broker_only=1)
    request.node._strata_brokers = cluster.nodes
    cluster.start_all()
    try:
        leader = cluster.wait_ready(brokers=4)
        learner = cluster.node(4)
        # Created through a voter; the learner serves it from its own copy of the log.
        create_topics(cluster.node(1).bootstrap, ["via-a-voter"], partitions=4)
        view = wait_until(lambda: same_metadata(cluster), 20, "every node, the learner too, to report the same metadata")
        assert len(view["via-a-voter"]) == 4
        md = AdminClient({"bootstrap.servers": learner.bootstrap}).list_topics(timeout=5)
        assert "via-a-voter" in md.topics and not md.topics["via-a-voter"].error

        d = cluster.describe(learner)
        assert d["leader"] == leader
        assert sorted(v[0] for v in d["voters"]) == [1, 2, 3]
        assert [lr[0] for lr in d["learners"]] == [4]
        text = run("cluster", "describe", "--controller", f"127.0.0.1:{cluster.node(1).controller_port}").stdout
        assert "Learner 4 " in text, text

        # DescribeQuorum through the learner: it asks the active controller.
        def caught_up():
            with Connection(learner.bootstrap) as conn:
                q = describe_quorum(conn, 2)
            p = q["topics"][0]["partitions"][0]
            obs = {o["replica_id"]: o for o in p["observers"]}
            return q if 4 in obs and obs[4]["log_end_offset"] == p["high_watermark"] else None

        q = wait_until(caught_up, 10, "the learner to show as a caught-up observer")
        assert q["error_code"] == 0 and q["topics"][0]["topic_name"] == "__cluster_metadata"
        p = q["topics"][0]["partitions"][0]
        assert p["error_code"] == 0 and p["leader_id"] == leader and p["leader_epoch"] == d["term"]
        assert sorted(v["replica_id"] for v in p["current_voters"]) == [1, 2, 3]
        assert [o["replica_id"] for o in p["observers"]] == [4]
        assert all(v["log_end_offset"] > 0 and v["last_fetch_timestamp"] > 0 for v in p["current_voters"])
        assert sorted(n["node_id"] for n in q["nodes"]) == [1, 2, 3]
        assert all(n["listeners"][0][0] == "CONTROLLER" for n in q["nodes"])
        # Older versions decode too, without the fields they lack.
        with Connection(cluster.node(2).bootstrap) as conn:
            for version in (0, 1):
                old = describe_quorum(conn, version)
                assert old["topics"][0]["partitions"][0]["leader_id"] == leader
            assert describe_quorum(conn, 2, topic="not-the-metadata-topic")["error_code"] == 42  # INVALID_REQUEST
    finally:
        cluster.cleanup()
