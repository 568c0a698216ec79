"""Quotas beyond Kafka's per-broker ones, on a three-node cluster with confluent-kafka
(librdkafka) producers: a tenant's cluster-wide `strata.cluster.producer_byte_rate` and a
topic's `strata.producer.byte.rate` hold the total over all three brokers to the limit (not
three times it), while the load goes to partitions led by every broker. And `request_percentage`
throttles a client that hammers cheap requests.

Each load runs one producer per broker (same client id, so one tenant), each to the
partitions that broker leads, flat out with 10 kB values and one request in flight, for LOAD_S
seconds; the rate is the bytes delivered between WARM_S and LOAD_S, once the active
controller's shares have settled and the new clients' first window allowance is behind them.
The brokers use a short quota window (2 samples of 1 s): with Kafka's 11, a new client may burst
10 s of its share at once. A throttled client's rate cycles with the window (a burst, then a
throttle until the old sample ages out), so the measured span is a whole number of windows:
over a span that is not, the rate swings by a fifth either way with the phase.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request

import pytest
from confluent_kafka import KafkaError

import helpers as h
from conftest import strata_cli, wait_until
from kafka_wire import Connection
from test_cluster import Cluster

LIMIT_BYTES_S = 10_000_000
VALUE = b"v" * 10_000
LOAD_S = 14.0
WARM_S = 4.0
WINDOW = {"quota.window.num": "2", "quota.window.size.seconds": "1"}


@pytest.fixture
def quota_cluster(tmp_path, request):
    c = Cluster(tmp_path, extra=WINDOW)
    request.node._strata_brokers = c.nodes
    c.start_all()
    c.wait_ready(3)
    yield c
    c.cleanup()


def partitions_by_leader(bootstrap: str, topic: str) -> dict[int, list[int]]:
    md = h.admin(bootstrap).list_topics(topic, timeout=10)
    out: dict[int, list[int]] = {}
    for p in md.topics[topic].partitions.values():
        out.setdefault(p.leader, []).append(p.id)
    return out


def produce_flat_out(bootstrap: str, topic: str, partitions: list[int], client_id: str,
                     deliveries: list, throttles: list, stop_at: float):
    """One producer to `partitions` until `stop_at`; appends (time, bytes) per delivery."""
    import json

    def on_stats(raw):
        for b in json.loads(raw).get("brokers", {}).values():
            throttles.append(b.get("throttle", {}).get("max", 0))

    def on_delivery(err, msg):
        if err is not None and err.code() in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT):
            return
        assert err is None, f"delivery failed: {err}"
        deliveries.append((time.monotonic(), len(msg.value())))

    p = h.producer(
        bootstrap,
        **{
            "client.id": client_id,
            "acks": "1",
            "batch.size": 131072,
            "linger.ms": 2,
            "max.in.flight.requests.per.connection": 1,
            "statistics.interval.ms": 500,
            "stats_cb": on_stats,
            "queue.buffering.max.kbytes": 2048,
        },
    )
    i = 0
    while time.monotonic() < stop_at:
        try:
            p.produce(topic, value=VALUE, partition=partitions[i % len(partitions)], on_delivery=on_delivery)
            i += 1
        except BufferError:
            p.poll(0.005)
        p.poll(0)
    p.purge()
    p.flush(5)


def load(cluster: Cluster, topic: str, client_id: str, only: list[int] | None = None,
         load_s: float = LOAD_S, warm_s: float = WARM_S) -> tuple[float, dict[int, float], int]:
    """Flat out from one producer per leader broker (or those in `only`); (total B/s, B/s per
    broker, largest librdkafka throttle seen in ms), measured between warm_s and load_s."""
    by_leader = partitions_by_leader(cluster.bootstrap(), topic)
    assert sorted(by_leader) == [1, 2, 3], f"partitions of {topic} are led by {sorted(by_leader)}"
    if only is not None:
        by_leader = {b: p for b, p in by_leader.items() if b in only}
    start = time.monotonic()
    stop_at = start + load_s
    results: dict[int, list] = {b: [] for b in by_leader}
    throttles: list[int] = []
    threads = [
        threading.Thread(
            target=produce_flat_out,
            args=(cluster.node(b).bootstrap, topic, parts, client_id, results[b], throttles, stop_at),
        )
        for b, parts in by_leader.items()
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(load_s + 15)
    span = load_s - warm_s
    per_broker = {
        b: sum(n for (t, n) in d if start + warm_s <= t < start + load_s) / span
        for b, d in results.items()
    }
    return sum(per_broker.values()), per_broker, max(throttles, default=0)


def quotas_everywhere(cluster: Cluster, args: list[str], expected: str):
    """Waits until every broker's image shows the quota."""
    def seen():
        return all(
            expected in strata_cli("quotas", b, "describe", *args).stdout for b in cluster.live()
        )
    wait_until(seen, 10, f"every broker to see {expected}")


def metric_value(broker, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.http_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, f"{name} missing from /metrics"
    return float(m.group(1))


def check_rate(what: str, rate: float, per_broker: dict[int, float], throttle_ms: int):
    shown = ", ".join(f"broker {b}: {r / 1e6:.2f}" for b, r in sorted(per_broker.items()))
    print(f"{what}: {rate / 1e6:.2f} MB/s in total ({shown}), librdkafka throttle max {throttle_ms} ms")
    assert 0.8 * LIMIT_BYTES_S <= rate <= 1.2 * LIMIT_BYTES_S, (
        f"{what}: {rate / 1e6:.2f} MB/s under a cluster-wide limit of {LIMIT_BYTES_S / 1e6:.0f} MB/s ({shown})"
    )
    # Every broker carried part of the load, so the limit held across them, not on one.
    assert all(r > 0.1 * LIMIT_BYTES_S for r in per_broker.values()), shown
    assert throttle_ms > 0, "librdkafka saw no throttle time"


@pytest.mark.timeout(90)
def test_a_tenants_cluster_wide_quota_holds_over_three_brokers(quota_cluster):
    c = quota_cluster
    h.create_topic(c.bootstrap(), "tenant-t", partitions=6)
    strata_cli(
        "quotas", c.node(1), "alter", "--client-id", "tenant",
        "--set", f"strata.cluster.producer_byte_rate={LIMIT_BYTES_S}",
    )
    quotas_everywhere(c, ["--client-id", "tenant"], f"strata.cluster.producer_byte_rate={LIMIT_BYTES_S}")
    rate, per_broker, throttle_ms = load(c, "tenant-t", "tenant")
    check_rate("tenant under strata.cluster.producer_byte_rate", rate, per_broker, throttle_ms)
    # The shares came from the active controller, with the heartbeats.
    for b in c.live():
        assert metric_value(b, "strata_quota_cluster_shares") >= 1, f"broker {b.node_id} holds no share"

    # The shares follow demand: with load on broker 1 alone, the idle brokers keep a floor and
    # broker 1 gets the rest, far more than an even third.
    rate, per_broker, _ = load(c, "tenant-t", "tenant", only=[1], load_s=10.0, warm_s=4.0)
    print(f"tenant on broker 1 alone: {rate / 1e6:.2f} MB/s")
    assert 0.6 * LIMIT_BYTES_S <= rate <= 1.2 * LIMIT_BYTES_S, f"{rate / 1e6:.2f} MB/s on broker 1 alone"


@pytest.mark.timeout(90)
def test_a_topics_cluster_wide_produce_limit_holds_over_three_brokers(quota_cluster):
    c = quota_cluster
    h.create_topic(c.bootstrap(), "limited-t", partitions=6,
                   config={"strata.producer.byte.rate": str(LIMIT_BYTES_S)})
    rate, per_broker, throttle_ms = load(c, "limited-t", "anyone")
    check_rate("topic under strata.producer.byte.rate", rate, per_broker, throttle_ms)


def api_versions_throttle(conn: Connection) -> int:
    """ApiVersions v1 on a raw connection: the response's throttle_time_ms."""
    r = conn.request(18, 1, b"")
    assert r.take(">h") == 0
    for _ in range(r.take(">i")):
        r.take(">hhh")
    return r.take(">i")


@pytest.mark.timeout(60)
def test_request_percentage_throttles_a_client_hammering_cheap_requests(broker_factory):
    broker = broker_factory({"quota.window.num": "2", "quota.window.size.seconds": "1"})
    # The raw connection's client id; 0.5 % of one thread is 5 ms of request time a second.
    strata_cli("quotas", broker, "alter", "--client-id", "strata-compat-raw", "--set", "request_percentage=0.5")
    described = strata_cli("quotas", broker, "describe", "--client-id", "strata-compat-raw").stdout
    assert described.strip() == "client-id=strata-compat-raw\trequest_percentage=0.5", described

    def hammer(seconds: float) -> tuple[int, int]:
        n, max_throttle = 0, 0
        with Connection(broker.bootstrap) as conn:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                max_throttle = max(max_throttle, api_versions_throttle(conn))
                n += 1
        return n, max_throttle

    n, throttle_ms = hammer(4.0)
    print(f"under request_percentage=0.5: {n / 4.0:.0f} requests/s, throttle max {throttle_ms} ms")
    assert throttle_ms > 0, f"no throttle after {n} requests"
    strata_cli("quotas", broker, "alter", "--client-id", "strata-compat-raw", "--delete", "request_percentage")
    free_n, free_throttle = hammer(2.0)
    print(f"without it: {free_n / 2.0:.0f} requests/s")
    assert free_throttle == 0
    # Muted while throttled: far fewer requests answered than the same client gets unthrottled.
    assert n / 4.0 < 0.3 * free_n / 2.0, f"{n / 4.0:.0f}/s throttled vs {free_n / 2.0:.0f}/s free"
