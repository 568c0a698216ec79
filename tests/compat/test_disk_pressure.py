"""Disk pressure on a tiered topic, with the disk's used fraction faked through the test-only
broker key `strata.test.log.dir.disk.usage.file` (docs/operations.md, "Disk pressure").

Past the refuse mark a Produce is answered KAFKA_STORAGE_ERROR before anything is written,
fetches keep serving every record (the uploaded segments whose local copies pressure deleted
come from the object store), librdkafka and kafka-python (which sees a retriable
KafkaStorageError) keep retrying, and once the disk is below the low watermark their records
are delivered: every acknowledged record is read back once, in order (tests/compat/history.py).
"""

from __future__ import annotations

import re
import time
import urllib.request

import pytest
from kafka import KafkaProducer
from kafka.errors import KafkaStorageError

from conftest import wait_until
from helpers import create_topic, producer, read_partitions
from history import History
import kafka_wire as kw

TOPIC = "pressure"
KAFKA_STORAGE_ERROR = 56


def pressure_state(broker) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.http_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(r"^strata_log_dir_disk_pressure_state\{[^}]*\} (\d+)", text, re.M)
    assert m, "strata_log_dir_disk_pressure_state is not exported"
    return int(m.group(1))


def local_start(broker) -> int:
    return min(int(p.stem) for p in (broker.data_dir / f"{TOPIC}-0").glob("*.log"))


def test_produce_is_refused_past_the_refuse_mark_and_resumes_below_the_low_watermark(
    broker_factory, tmp_path
):
    usage = tmp_path / "disk-usage"
    usage.write_text("0.10\n")
    b = broker_factory(
        {
            "remote.storage.uri": f"file://{tmp_path / 'remote-store'}",
            "remote.log.manager.task.interval.ms": "200",
            "strata.log.dir.disk.check.interval.ms": "200",
            "strata.test.log.dir.disk.usage.file": str(usage),
            # The defaults, which the harness raises for every other test.
            "strata.log.dir.disk.low.watermark.ratio": "0.8",
            "strata.log.dir.disk.high.watermark.ratio": "0.9",
            "strata.log.dir.disk.refuse.ratio": "0.95",
        }
    )
    # Local retention keeps everything: only disk pressure deletes local segments here.
    create_topic(b.bootstrap, TOPIC, config={"segment.bytes": "4096", "remote.storage.enable": "true"})
    history = History()
    # Small batches, so that the records fill several segments.
    p = producer(b.bootstrap, **{"enable.idempotence": True, "message.timeout.ms": 60000, "batch.size": 2048})
    on_delivery = history.delivery_callback()

    def send(values):
        for v in values:
            history.send(v, 0)
            p.produce(TOPIC, value=v, partition=0, on_delivery=on_delivery)

    send([b"before-%04d-" % i + b"x" * 100 for i in range(300)])
    assert p.flush(30) == 0
    assert all(s.acked_at for s in history.sends.values())
    wait_until(lambda: any((tmp_path / "remote-store").rglob("*.log")), 30, "segments to upload", 0.2)
    assert local_start(b) == 0

    # Past the refuse mark: the dir's uploaded local segments go, produce is refused.
    usage.write_text("0.97\n")
    wait_until(lambda: pressure_state(b) == 2, 20, "the log dir to refuse produce", 0.1)
    with kw.Connection(b.bootstrap) as conn:
        [(_, err, _)] = conn.produce_v3(TOPIC, 0, kw.record_batch([(None, b"refused")]))
    assert err == KAFKA_STORAGE_ERROR
    wait_until(lambda: local_start(b) > 0, 20, "uploaded local segments to be deleted", 0.2)
    # kafka-python sees the error as KafkaStorageError, which it retries (retriable)...
    once = KafkaProducer(bootstrap_servers=b.bootstrap, retries=0, enable_idempotence=False)
    with pytest.raises(KafkaStorageError):
        once.send(TOPIC, b"refused", partition=0).get(timeout=20)
    once.close()
    assert KafkaStorageError.retriable
    # ... as its default producer does, as librdkafka does: their records are held, not failed.
    kp = KafkaProducer(bootstrap_servers=b.bootstrap)
    kp_sent = []
    for i in range(20):
        v = b"kp-during-%04d" % i
        history.send(v, 0, producer="kp")
        kp_sent.append((v, kp.send(TOPIC, v, partition=0)))
    send([b"during-%04d" % i for i in range(50)])
    p.poll(1.0)
    assert not any(f.is_done for _, f in kp_sent)
    assert not any(s.failed for s in history.sends.values())
    assert not any(s.acked_at for v, s in history.sends.items() if v.startswith(b"during-"))
    # Fetches serve every record meanwhile, the deleted local copies from the object store.
    before = read_partitions(b.bootstrap, TOPIC, [0])
    assert [r.value for r in before] == [v for v in history.sends if v.startswith(b"before-")]
    assert [r.offset for r in before] == list(range(300))

    # Still above the low watermark: still refused (no flapping at the refuse mark).
    usage.write_text("0.85\n")
    time.sleep(1.0)
    assert pressure_state(b) == 2
    # Below the low watermark: produce resumes by itself and the held records are delivered.
    usage.write_text("0.50\n")
    wait_until(lambda: pressure_state(b) == 0, 20, "the log dir to leave disk pressure", 0.1)
    send([b"after-%04d" % i for i in range(50)])
    assert p.flush(30) == 0
    for v, f in kp_sent:
        md = f.get(timeout=30)
        history.ack(v, md.partition, md.offset)
    kp.close()
    assert all(s.acked_at for s in history.sends.values())

    records = read_partitions(b.bootstrap, TOPIC, [0])
    history.read_all("c0", records, [0])
    rep = history.check()
    rep.assert_ok()
    assert rep.acknowledged == rep.recovered == 420
    assert b"refused" not in {r.value for r in records}
    assert [r.offset for r in records] == list(range(420))
