"""A mirror link under faults: the target broker running a partition's link fetcher is
SIGKILLed, and the source is down for 30 seconds. The link resumes by itself each time (the
new leader of the mirror partition takes over its fetcher; the fetcher reconnects to the
source when it is back), and the target ends identical to the source, record by record.

The target is a three-node cluster with mirror topics replicated three times; the source is a
single node, so killing it is both the source partition leader's death and a whole-source
outage.
"""

from __future__ import annotations

import time

import pytest

from conftest import strata_cli, wait_until
from helpers import admin, create_topic
from test_mirror import assert_same_records, ends, produce_mix, wait_converged

pytestmark = pytest.mark.timeout(180)

OUTAGE_S = 30


def leader_of(bootstrap: str, topic: str, partition: int) -> int:
    return admin(bootstrap).list_topics(topic, timeout=10).topics[topic].partitions[partition].leader


def test_the_link_resumes_after_its_fetchers_broker_dies_and_a_source_outage(broker_factory, tmp_path, request):
    from test_cluster import Cluster

    src_broker = broker_factory()
    src = src_broker.bootstrap
    (tmp_path / "target").mkdir()
    c = Cluster(tmp_path / "target", extra={"default.replication.factor": "3"})
    request.node._strata_brokers.extend(c.nodes)
    c.start_all()
    try:
        c.wait_ready()
        create_topic(src, "events", partitions=3)
        produce_mix(src, "events", 3, 30, "before")
        strata_cli("mirror", c.nodes[0].bootstrap, "create", "dr", "--source-bootstrap-servers", src,
                   "--topic", "events", "--interval-ms", "300")
        wait_converged(src, c.bootstrap(), "events", 3, timeout=60)

        # The broker leading events-0 on the target runs its link fetcher: SIGKILL it while
        # the source keeps taking records.
        wait_until(
            lambda: all(len(pm.isrs) == 3 for pm in admin(c.bootstrap()).list_topics("events", timeout=10)
                        .topics["events"].partitions.values()),
            30, "every mirror replica in the ISR", interval=0.3,
        )
        victim = leader_of(c.bootstrap(), "events", 0)
        c.node(victim).kill()
        produce_mix(src, "events", 3, 30, "fetcher-killed")
        live = c.bootstrap()
        wait_until(lambda: leader_of(live, "events", 0) not in (-1, victim), 30,
                   "a new leader for the mirror partition", interval=0.3)
        wait_converged(src, live, "events", 3, timeout=60)
        assert_same_records(src, live, "events", 3)
        c.node(victim).start()

        # The source goes away for OUTAGE_S seconds; the target keeps what it has, then
        # catches up by itself once the source is back.
        before_outage = ends(c.bootstrap(), "events", 3)
        src_broker.kill()
        time.sleep(OUTAGE_S)
        assert ends(c.bootstrap(), "events", 3) == before_outage
        src_broker.start()
        produce_mix(src, "events", 3, 30, "after-outage")
        wait_converged(src, c.bootstrap(), "events", 3, timeout=60)
        assert_same_records(src, c.bootstrap(), "events", 3)
        assert ends(src, "events", 3) == ends(c.bootstrap(), "events", 3)
        assert sum(ends(src, "events", 3)) == 3 * 3 * 30

        # The restarted broker caught up as a follower: every replica back in the ISR.
        wait_until(
            lambda: all(len(pm.isrs) == 3 for pm in admin(c.bootstrap()).list_topics("events", timeout=10)
                        .topics["events"].partitions.values()),
            30, "the restarted broker back in every ISR", interval=0.3,
        )
        # The tools take Kafka's bootstrap list and use the first broker that answers.
        assert "topic events\tlink=dr\tpartitions=3\tstate=mirroring" in strata_cli(
            "mirror", f"127.0.0.1:1,{c.bootstrap()}", "list").stdout
    finally:
        c.cleanup()
