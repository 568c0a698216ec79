"""The HTTP endpoint under load: /metrics is valid Prometheus text (promtool), counts what was
produced, measures consumer groups (state, exact lag per partition, the series cap), and every
metric the dashboard and alert rules use exists; /health and /ready answer.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

import helpers as h
from conftest import requires, wait_until

REPO = Path(__file__).resolve().parents[2]
PROMTOOL = shutil.which("promtool")


def get(broker, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{broker.http_port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def sample(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    assert m, f"{name}{labels} missing from /metrics"
    return float(m.group(1))


def series(text: str, name: str) -> dict[frozenset, float]:
    """Every sample of `name`, keyed by its labels as a set of (label, value) pairs."""
    out = {}
    for m in re.finditer(rf"^{re.escape(name)}(?:{{(.*)}})? (\S+)$", text, re.M):
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        out[labels] = float(m.group(2))
    return out


def labels(**kv) -> frozenset:
    return frozenset((k, str(v)) for k, v in kv.items())


def produce_load(broker, topic: str, n: int) -> None:
    p = h.producer(broker.bootstrap)
    for i in range(n):
        p.produce(topic, key=str(i).encode(), value=b"x" * 100)
        if i % 1000 == 0:
            p.poll(0)
    h.flush_all(p)


def test_health_ready_and_metrics_count_the_traffic(broker):
    assert get(broker, "/health") == (200, "ok\n")
    # The Kafka port is bound before the broker has registered and applied metadata; /ready
    # says when it has, which must come soon after.
    wait_until(lambda: get(broker, "/ready") == (200, "ready\n"), 20, "/ready")
    assert get(broker, "/nope")[0] == 404
    h.create_topic(broker.bootstrap, "m", partitions=3)
    produce_load(broker, "m", 5000)
    status, text = get(broker, "/metrics")
    assert status == 200
    assert sample(text, "strata_broker_topic_in_records_total", '{topic="m"}') == 5000
    assert sample(text, "strata_broker_topic_in_bytes_total", '{topic="m"}') >= 5000 * 100
    assert sample(text, "strata_replication_partitions") == 3
    assert sample(text, "strata_replication_leaders") == 3
    assert sample(text, "strata_replication_offline_partitions") == 0
    assert sample(text, "strata_log_size_bytes", '{topic="m"}') >= 5000 * 100
    assert sample(text, "strata_server_requests_total", '{api="Produce"}') >= 1
    assert sample(text, "process_resident_memory_bytes") > 0
    # A lone node is the active controller of a one-voter quorum, with itself registered.
    assert sample(text, "strata_controller_active") == 1
    assert sample(text, "strata_controller_term") >= 1
    assert sample(text, "strata_controller_registered_brokers") == 1
    assert sample(text, "strata_controller_fenced_brokers") == 0
    applied = sample(text, "strata_controller_applied_offset")
    assert applied >= sample(text, "strata_controller_image_offset") > 0
    assert sample(text, "strata_controller_committed_offset") >= applied
    assert sample(text, "strata_controller_log_end_offset") >= applied
    assert sample(text, "strata_controller_commit_lag_records") >= 0


@requires(PROMTOOL is not None, "promtool is not installed (scripts/install-test-deps.sh)")
def test_promtool_accepts_a_scrape_taken_under_load(broker):
    h.create_topic(broker.bootstrap, "load", partitions=2)
    stop = threading.Event()

    def load():
        while not stop.is_set():
            produce_load(broker, "load", 500)

    t = threading.Thread(target=load)
    t.start()
    try:
        status, text = get(broker, "/metrics")
    finally:
        stop.set()
        t.join(timeout=60)
    assert status == 200
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"promtool check metrics:\n{r.stdout}{r.stderr}"


@requires(PROMTOOL is not None, "promtool is not installed (scripts/install-test-deps.sh)")
def test_alert_rules_pass_promtool_and_their_unit_tests():
    rules = REPO / "docs" / "prometheus"
    r = subprocess.run([PROMTOOL, "check", "rules", str(rules / "strata-alerts.yml")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([PROMTOOL, "test", "rules", "strata-alerts.test.yml"], cwd=rules, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([PROMTOOL, "check", "config", str(rules / "prometheus.yml")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def metric_names_in(expr: str) -> set[str]:
    return {m for m in re.findall(r"\b(strata_[a-z0-9_]+|process_[a-z_]+)", expr)}


def test_dashboard_and_alerts_use_only_metrics_the_broker_exports(broker):
    h.create_topic(broker.bootstrap, "d", partitions=1, config={"max.message.bytes": "3000"})
    produce_load(broker, "d", 10)  # ~1.2 KB batches, under the limit
    # A refused append and a read, so the per-topic error and out-bytes series exist.
    d = h.Deliveries()
    p = h.producer(broker.bootstrap, retries=0)
    p.produce("d", value=b"y" * 5000, on_delivery=d)
    p.flush(30)
    assert len(d.failed) == 1 and not d.ok
    got = h.read_partitions(broker.bootstrap, "d", [0])
    assert len(got) == 10
    # A committed offset, so the consumer-lag series exist.
    c = group_consumer(broker, "d-g")
    try:
        commit(c, "d", {0: 5})
    finally:
        c.close()
    def lag_exported():
        text = get(broker, "/metrics")[1]
        return text if series(text, "strata_group_consumer_lag_records") else None

    text = wait_until(lag_exported, 30, "consumer lag series")
    exported = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    # Histograms are queried through their _bucket / _sum / _count series.
    exported |= {f"{n}_{s}" for n in exported for s in ("bucket", "sum", "count")}
    dashboard = json.loads((REPO / "docs" / "grafana" / "strata.json").read_text())
    used = set()
    for p in dashboard["panels"]:
        for t in p.get("targets", []):
            used |= metric_names_in(t["expr"])
    used |= metric_names_in((REPO / "docs" / "prometheus" / "strata-alerts.yml").read_text())
    assert used, "no metrics found in the dashboard"
    # Mirror link series exist only on a broker leading mirror partitions: test_mirror.py
    # checks those against a broker that mirrors.
    used = {m for m in used if not m.startswith("strata_mirror_")}
    missing = sorted(used - exported)
    assert not missing, f"dashboard/alerts reference metrics the broker does not export: {missing}"


# No initial rebalance delay, and few offsets partitions so the coordinator loads quickly.
GROUP_SETS = {"group.initial.rebalance.delay.ms": "0", "offsets.topic.num.partitions": "3"}


def produce_to(broker, topic: str, partition: int, n: int) -> None:
    p = h.producer(broker.bootstrap)
    for i in range(n):
        p.produce(topic, value=f"{partition}-{i}".encode(), partition=partition)
    h.flush_all(p)


def group_consumer(broker, group: str) -> Consumer:
    return Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
    })


def commit(c: Consumer, topic: str, offsets: dict[int, int]) -> None:
    done = c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    assert all(tp.error is None for tp in done), done


def test_group_state_and_exact_consumer_lag(broker_factory):
    broker = broker_factory(GROUP_SETS)
    h.create_topic(broker.bootstrap, "lagged", partitions=2)
    produce_to(broker, "lagged", 0, 100)
    produce_to(broker, "lagged", 1, 30)
    c = group_consumer(broker, "lag-g")
    c.subscribe(["lagged"])
    try:
        def settled():
            c.poll(0.2)
            return len(c.assignment()) == 2

        wait_until(settled, 40, "the group to settle")
        commit(c, "lagged", {0: 40, 1: 30})
        lag = lambda t: series(t, "strata_group_consumer_lag_records")  # noqa: E731

        def lag_published():
            text = get(broker, "/metrics")[1]
            return text if lag(text).get(labels(group="lag-g", partition=0, topic="lagged")) == 60 else None

        # Shards publish their groups every 2 s.
        text = wait_until(lag_published, 20, "lag 60 on lagged-0")
        assert lag(text)[labels(group="lag-g", partition=1, topic="lagged")] == 0
        assert series(text, "strata_group_consumer_lag_sum_records") == {labels(group="lag-g"): 60}
        groups = series(text, "strata_group_groups")
        assert groups[labels(state="Stable")] == 1
        assert groups[labels(state="Empty")] == groups[labels(state="PreparingRebalance")] == 0
        assert set(groups) == {labels(state=s) for s in ("Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead")}
        assert sample(text, "strata_group_members") == 1
        assert sample(text, "strata_group_rebalances_total") >= 1
        assert sample(text, "strata_group_consumer_lag_series_dropped") == 0

        # The high watermark is read at scrape time: new records count at once.
        produce_to(broker, "lagged", 0, 25)
        text = get(broker, "/metrics")[1]
        assert lag(text)[labels(group="lag-g", partition=0, topic="lagged")] == 85
        assert series(text, "strata_group_consumer_lag_sum_records") == {labels(group="lag-g"): 85}
    finally:
        c.close()

    # Left: the group is Empty and keeps its offsets, so its lag stays.
    def empty():
        text = get(broker, "/metrics")[1]
        g = series(text, "strata_group_groups")
        return text if g[labels(state="Empty")] == 1 and g[labels(state="Stable")] == 0 else None

    text = wait_until(empty, 20, "the group to become Empty")
    assert sample(text, "strata_group_members") == 0
    assert series(text, "strata_group_consumer_lag_sum_records") == {labels(group="lag-g"): 85}

    # Deleted: its series go away rather than staying at their last value.
    admin = h.admin(broker.bootstrap)
    fs = admin.delete_consumer_groups(["lag-g"], request_timeout=h.OP_TIMEOUT_S)
    fs["lag-g"].result(timeout=h.OP_TIMEOUT_S)

    def gone():
        text = get(broker, "/metrics")[1]
        return text if not series(text, "strata_group_consumer_lag_records") else None

    text = wait_until(gone, 20, "the deleted group's lag series to disappear")
    assert not series(text, "strata_group_consumer_lag_sum_records")
    assert series(text, "strata_group_groups")[labels(state="Empty")] == 0


def test_lag_series_beyond_the_cap_are_dropped_but_summed(broker_factory):
    broker = broker_factory({**GROUP_SETS, "metrics.group.lag.max.series": "1"})
    h.create_topic(broker.bootstrap, "wide", partitions=3)
    for p in range(3):
        produce_to(broker, "wide", p, 5)
    # Committed from outside any group membership (assign, not subscribe), as tools do.
    c = group_consumer(broker, "cap-g")
    try:
        commit(c, "wide", {0: 1, 1: 2, 2: 3})
    finally:
        c.close()

    def published():
        text = get(broker, "/metrics")[1]
        return text if series(text, "strata_group_consumer_lag_sum_records") else None

    text = wait_until(published, 20, "the group's lag")
    assert series(text, "strata_group_consumer_lag_sum_records") == {labels(group="cap-g"): 4 + 3 + 2}
    assert series(text, "strata_group_consumer_lag_records") == {labels(group="cap-g", partition=0, topic="wide"): 4}
    assert sample(text, "strata_group_consumer_lag_series_dropped") == 2
    assert series(text, "strata_group_groups")[labels(state="Empty")] == 1
