"""The HTTP endpoint under load: /metrics is valid Prometheus text (promtool), counts what was
produced, and every metric the dashboard and alert rules use exists; /health and /ready answer.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest

import helpers as h
from conftest import wait_until

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


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (scripts/install-test-deps.sh)")
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


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (scripts/install-test-deps.sh)")
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
    _, text = get(broker, "/metrics")
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
    missing = sorted(used - exported)
    assert not missing, f"dashboard/alerts reference metrics the broker does not export: {missing}"
