"""kafka-python's release inference and pinned `api_version` against Strata.

kafka-python infers the broker's Kafka release from ApiVersions, then speaks that release's
version table; users commonly pin `api_version` to skip the probe. Strata answers as Kafka 4.1
(docs/protocol.md), so with inference on, pinned to 4.1, or pinned to an older release (3.9),
every call must work: a consumer group reads every codec end to end, offsets_for_times,
seek_to_end then position, and the admin's list_partition_offsets; and the broker never closes a
connection for an unsupported version meanwhile."""

from __future__ import annotations

import time
import urllib.request
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.protocol.consumer.offsets import OffsetSpec

import helpers as h

TIMEOUT_S = 20
CODECS = ["gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 150
BASE_TS = 1_700_000_000_000


def produce_codec(bootstrap, api_version, topic, codec):
    """`PER_CODEC` records to each of 2 partitions, timestamps BASE_TS + i; returns what was acked."""
    kw = {} if api_version is None else {"api_version": api_version}
    p = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, compression_type=codec,
        request_timeout_ms=10000, max_block_ms=10000, **kw,
    )
    acked = {}
    try:
        futures = []
        for i in range(PER_CODEC):
            for part in (0, 1):
                key = f"{codec}-{part}-{i}".encode()
                value = (f"{codec} value {i} " * (1 + i % 7)).encode()
                futures.append((key, value, p.send(topic, key=key, value=value, partition=part,
                                                   timestamp_ms=BASE_TS + i)))
        p.flush(timeout=TIMEOUT_S)
        for key, value, f in futures:
            md = f.get(timeout=TIMEOUT_S)
            acked[(md.partition, md.offset)] = (key, value)
    finally:
        p.close(timeout=TIMEOUT_S)
    return acked


@pytest.mark.parametrize("api_version", [None, (4, 1), (3, 9)], ids=["inferred", "4.1", "3.9"])
def test_kafka_python_at_release(broker, api_version):
    kw = {} if api_version is None else {"api_version": api_version}
    topic = f"kpv-{'inferred' if api_version is None else '.'.join(map(str, api_version))}"
    h.create_topic(broker.bootstrap, topic, 2)

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000, **kw)
    try:
        if api_version is None:
            assert admin._client.check_version() == (4, 1), "the release kafka-python infers"
            with urllib.request.urlopen(f"http://127.0.0.1:{broker.http_port}/metrics", timeout=10) as r:
                metrics = r.read().decode()
            info = [line for line in metrics.splitlines() if line.startswith("strata_build_info{")]
            assert len(info) == 1 and 'kafka_release="4.1"' in info[0] and info[0].endswith(" 1"), info

        sent = {}
        for codec in CODECS:
            sent.update(produce_codec(broker.bootstrap, api_version, topic, codec))
        total = PER_CODEC * 2 * len(CODECS)
        assert len(sent) == total
        for part in (0, 1):
            offsets = sorted(o for (pp, o) in sent if pp == part)
            assert offsets == list(range(total // 2)), f"partition {part}: acked offsets not contiguous"

        # A consumer group reads it all, in order, exactly once.
        group = f"g-{uuid.uuid4().hex[:8]}"
        c = KafkaConsumer(
            topic, bootstrap_servers=broker.bootstrap, group_id=group, auto_offset_reset="earliest",
            enable_auto_commit=False, request_timeout_ms=15000, session_timeout_ms=10000,
            heartbeat_interval_ms=1000, **kw,
        )
        try:
            got = {}
            deadline = time.monotonic() + TIMEOUT_S
            while len(got) < total:
                assert time.monotonic() < deadline, f"read {len(got)} of {total}"
                for recs in c.poll(timeout_ms=500).values():
                    for r in recs:
                        assert (r.partition, r.offset) not in got, f"duplicate {r.partition}/{r.offset}"
                        got[(r.partition, r.offset)] = (r.key, r.value)
            assert got == sent
            c.commit()
            tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
            assert {tp: c.committed(tp) for tp in tps} == {tp: total // 2 for tp in tps}

            # Timestamps BASE_TS + i repeat once per codec: the first match is in the first codec.
            found = c.offsets_for_times({tps[0]: BASE_TS + 10, tps[1]: BASE_TS + PER_CODEC + 1})
            assert found[tps[0]].offset == 10 and found[tps[0]].timestamp == BASE_TS + 10
            assert found[tps[1]] is None, "no record is that new"

            c.seek_to_end(*tps)
            assert [c.position(tp) for tp in tps] == [total // 2, total // 2]
            assert c.end_offsets(tps) == {tp: total // 2 for tp in tps}
            assert c.beginning_offsets(tps) == {tp: 0 for tp in tps}
        finally:
            c.close()

        listed = admin.list_partition_offsets({
            TopicPartition(topic, 0): OffsetSpec.EARLIEST,
            TopicPartition(topic, 1): OffsetSpec.LATEST,
        })
        assert listed[TopicPartition(topic, 0)].offset == 0
        assert listed[TopicPartition(topic, 1)].offset == total // 2
        listed = admin.list_partition_offsets({TopicPartition(topic, 0): OffsetSpec.MAX_TIMESTAMP})
        # The greatest timestamp, BASE_TS + PER_CODEC - 1, first appears as the first codec's last record.
        assert listed[TopicPartition(topic, 0)].offset == PER_CODEC - 1
        assert listed[TopicPartition(topic, 0)].timestamp == BASE_TS + PER_CODEC - 1
        if api_version != (3, 9):
            # LATEST_TIERED needs ListOffsets v9 (Kafka 4.0+); the topic is not tiered.
            listed = admin.list_partition_offsets({TopicPartition(topic, 0): OffsetSpec.LATEST_TIERED})
            assert listed[TopicPartition(topic, 0)].offset == -1
    finally:
        admin.close()

    log = broker.log_text()
    assert "unsupported version" not in log, "the broker closed a connection for a version:\n" + "\n".join(
        line for line in log.splitlines() if "unsupported version" in line
    )


def test_describe_topic_partitions_pages_with_a_cursor(broker):
    """kafka-python's describe_topic_partitions (DescribeTopicPartitions, KIP-966): pages of at
    most 3 partitions cover two topics' 7 partitions once each, in topic-name order."""
    for name, count in [("dtp-b", 3), ("dtp-a", 4)]:
        h.create_topic(broker.bootstrap, name, count)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    try:
        seen, cursor, pages = [], None, 0
        while True:
            page = admin.describe_topic_partitions(["dtp-b", "dtp-a"], response_partition_limit=3, cursor=cursor)
            pages += 1
            for t in page["topics"]:
                assert t["error_code"] == 0, t
                seen += [(t["name"], p["partition_index"]) for p in t["partitions"]]
                assert all(p["leader_id"] == 1 and p["replica_nodes"] == [1] for p in t["partitions"]), t
            cursor = page["next_cursor"]
            if cursor is None:
                break
            assert pages < 10, "the cursor must move on"
        assert seen == [("dtp-a", i) for i in range(4)] + [("dtp-b", i) for i in range(3)]
        assert pages == 3
        missing = admin.describe_topic_partitions(["dtp-none"])
        assert [(t["name"], t["error_code"]) for t in missing["topics"]] == [("dtp-none", 3)]
    finally:
        admin.close()
