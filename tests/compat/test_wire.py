"""Protocol details real clients depend on, checked on the wire."""

from __future__ import annotations

import struct

import kafka_wire as wire

UNSUPPORTED_VERSION = 35


def feature_levels(raw: bytes) -> dict[str, tuple[int, int]]:
    """A SupportedFeatures or FinalizedFeatures tagged field: {name: (first, second level)}."""
    r = wire.Reader(raw)
    out = {}
    for _ in range(wire.uvarint(r) - 1):
        name = wire.read_compact_string(r)
        out[name] = r.take(">hh")
        assert wire.tagged_fields(r) == {}
    assert r.pos == len(raw)
    return out


def test_api_versions_v3_sends_features_and_no_default_tagged_fields(broker):
    """librdkafka 2.0.2 (Debian's) mis-reads optional tagged fields sent with default values
    (an empty SupportedFeatures, FinalizedFeaturesEpoch=-1, an empty FinalizedFeatures,
    ZkMigrationReady=false). Kafka omits those and sends the features it has; so does Strata:
    the `transaction.version` feature, supported 0-2 and finalized at 2, and the epoch of the
    metadata it was read from. kcat's tests show that librdkafka reads this answer."""
    with wire.Connection(broker.bootstrap) as c:
        err, apis, top_tags, api_tags, trailing = wire.api_versions(c, 3)
    assert err == 0
    # Tags 0-2: SupportedFeatures, FinalizedFeaturesEpoch, FinalizedFeatures; tag 3,
    # ZkMigrationReady, is never sent.
    assert set(top_tags) == {0, 1, 2}, f"tagged fields sent: {top_tags}"
    assert feature_levels(top_tags[0]) == {"transaction.version": (0, 2)}
    (epoch,) = struct.unpack(">q", top_tags[1])
    assert epoch >= 0
    # FinalizedFeatures puts the max level first.
    assert feature_levels(top_tags[2]) == {"transaction.version": (2, 2)}
    assert all(t == {} for t in api_tags.values()), api_tags
    assert trailing == 0
    # What the clients in this suite use, at least.
    for key in (0, 1, 2, 3, 18, 19, 20, 22, 32, 33, 37, 44):
        assert key in apis, f"api {key} not advertised"
    assert apis[18][1] >= 3


def test_api_versions_v3_omits_finalized_features_at_level_0(broker_factory):
    """With the feature set to level 0 nothing is finalized: the empty FinalizedFeatures is a
    default value and is not sent."""
    b = broker_factory({"strata.feature.transaction.version": "0"})
    with wire.Connection(b.bootstrap) as c:
        err, _, top_tags, _, trailing = wire.api_versions(c, 3)
    assert err == 0 and trailing == 0
    assert set(top_tags) == {0, 1}, f"tagged fields sent: {top_tags}"
    assert feature_levels(top_tags[0]) == {"transaction.version": (0, 2)}


def test_api_versions_all_versions_agree(broker):
    with wire.Connection(broker.bootstrap) as c:
        tables = [wire.api_versions(c, v)[1] for v in range(4)]
    assert all(t == tables[0] for t in tables)


def test_unsupported_api_versions_version_answers_v0(broker):
    """KIP-511: an ApiVersions request at a version the broker does not know is answered at v0
    with UNSUPPORTED_VERSION and the table, so the client can retry at a version it has."""
    with wire.Connection(broker.bootstrap) as c:
        c.correlation_id += 1
        # v99, request header v2 as a newer client would send it, and a body we cannot know.
        frame = struct.pack(">hhi", 18, 99, c.correlation_id) + wire.string("future") + b"\x00" + b"\x01\x02\x03"
        c.send_raw(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", c.recv_exact(4))[0]
        r = wire.Reader(c.recv_exact(size))
        assert r.take(">i") == c.correlation_id
        assert r.take(">h") == UNSUPPORTED_VERSION
        n = r.take(">i")
        apis = {}
        for _ in range(n):
            key, lo, hi = r.take(">hhh")
            apis[key] = (lo, hi)
        assert 18 in apis and apis[18][0] == 0
        # The connection stays usable at a supported version.
        err, apis3, _, _, _ = wire.api_versions(c, 3)
        assert err == 0 and apis3 == apis


def test_metadata_ignores_librdkafka_padding(broker):
    """librdkafka 2.x sends Metadata v9+ "all topics" requests with 3 stray bytes left from a
    4-byte array-count placeholder; Kafka ignores bytes after the body, so must Strata."""
    import helpers as h

    h.create_topic(broker.bootstrap, "padded", 2)
    with wire.Connection(broker.bootstrap) as c:
        # Metadata v1 body: all topics (-1), then three stray bytes.
        r = c.request(3, 1, struct.pack(">i", -1) + b"\x01\x00\x00")
        brokers = r.take(">i")
        assert brokers == 1
        # And a normal request on the same connection afterwards.
        _, topics = c.metadata_v1(["padded"])
        assert topics == {"padded": (0, 2)}
