"""kafkajs consumer groups against Strata (Node; the client is installed by
scripts/install-test-deps.sh with `npm install` in tests/compat/js)."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from conftest import requires

JS = Path(__file__).parent / "js"

pytestmark = requires(
    shutil.which("node") is not None and (JS / "node_modules" / "kafkajs").is_dir(),
    "node or kafkajs missing: run scripts/install-test-deps.sh",
)


def test_kafkajs_group_consumes_end_to_end(broker_factory):
    b = broker_factory({"group.initial.rebalance.delay.ms": "0", "offsets.topic.num.partitions": "5"})
    topic = f"js-{uuid.uuid4().hex[:8]}"
    group = f"jsg-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    admin.close()
    p = KafkaProducer(bootstrap_servers=b.bootstrap)
    values = [f"m{i}" for i in range(200)]
    for i, v in enumerate(values):
        p.send(topic, value=v.encode(), partition=i % 4)
    p.flush()
    p.close()

    out = subprocess.run(
        ["node", str(JS / "group_consume.js"), b.bootstrap, topic, group, str(len(values))],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert sorted(result["seen"]) == sorted(values)
    committed = {p["partition"]: int(p["offset"]) for t in result["offsets"] for p in t["partitions"]}
    assert committed == {0: 50, 1: 50, 2: 50, 3: 50}
    assert group in [g["groupId"] for g in result["groups"]]
    # A consumer kafkajs restarted must have failed on a retriable error only.
    assert all(c["restart"] for c in result["crashes"]), result["crashes"]
