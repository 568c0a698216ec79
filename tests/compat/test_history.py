"""The history checker (history.py) on hand-made histories: a clean one passes, and each
anomaly is reported, alone, where it was planted."""

from __future__ import annotations

from history import History


def clean() -> History:
    """Producer p0 sends a0..a3 to partition 0 and b0, b1 to partition 1, all acknowledged in
    order; a2 fails, x0 is unacknowledged (unknown) yet written; one complete read."""
    h = History()
    for v, p in [(b"a0", 0), (b"a1", 0), (b"b0", 1), (b"a2", 0), (b"x0", 0), (b"b1", 1), (b"a3", 0)]:
        h.send(v, p)
    h.ack(b"a0", 0, 0)
    h.ack(b"a1", 0, 1)
    h.ack(b"b0", 1, 0)
    h.fail(b"a2")
    h.ack(b"b1", 1, 1)
    h.ack(b"a3", 0, 3)
    h.read("c", 0, 0, b"a0")
    h.read("c", 1, 0, b"b0")
    h.read("c", 0, 1, b"a1")
    h.read("c", 0, 2, b"x0")
    h.read("c", 1, 1, b"b1")
    h.read("c", 0, 3, b"a3")
    h.complete["c"] = {0, 1}
    return h


def only(report, anomaly: str):
    assert not report.ok
    flagged = [a for a in report.ANOMALIES if getattr(report, a)]
    assert flagged == [anomaly], report.describe()
    return getattr(report, anomaly)


def test_clean_history_passes():
    r = clean().check()
    r.assert_ok()
    assert (r.acknowledged, r.recovered, r.unacknowledged_found) == (5, 5, 1)


def test_lost_acknowledged_record():
    h = clean()
    h.reads["c"] = [e for e in h.reads["c"] if e[3] != b"a3"]
    r = h.check()
    assert only(r, "lost") == [(b"a3", (0, 3))]
    assert (r.acknowledged, r.recovered) == (5, 4)


def test_an_empty_complete_read_loses_everything_acknowledged():
    h = clean()
    h.reads.clear()
    h.read_all("c", [], [0, 1])
    r = h.check()
    assert len(only(r, "lost")) == 5
    assert (r.acknowledged, r.recovered) == (5, 0)


def test_record_missing_from_an_incomplete_read_is_not_lost():
    h = clean()
    h.reads["c"] = [e for e in h.reads["c"] if e[1] != 1]
    h.complete["c"] = {0}
    h.check().assert_ok()


def test_duplicate():
    h = clean()
    h.read("c", 0, 4, b"a1")  # written again after a retry
    assert only(h.check(), "duplicate") == [(b"a1", [(0, 1), (0, 4)])]


def test_reordered():
    h = History()
    for v in [b"a0", b"a1", b"a2"]:
        h.send(v, 0)
    h.read("c", 0, 0, b"a0")
    h.read("c", 0, 1, b"a2")
    h.read("c", 0, 2, b"a1")
    h.complete["c"] = {0}
    assert only(h.check(), "reordered") == [(b"a1", (0, 2), "after", b"a2")]


def test_phantom():
    h = clean()
    h.read("c", 0, 4, b"never-sent")
    assert only(h.check(), "phantom") == [(0, 4, b"never-sent")]


def test_inconsistent_between_reads():
    h = clean()
    h.read("d", 0, 0, b"a0")
    h.read("d", 0, 1, b"x0")  # another reader sees x0 where the first saw a1
    assert only(h.check(), "inconsistent")[0] == ((0, 1), b"a1", b"x0")


def test_inconsistent_with_acknowledged_offset():
    h = clean()
    h.sends[b"a3"].acked_at = (0, 7)
    r = h.check()
    assert r.inconsistent == [(b"a3", "acked at", (0, 7), "read at", [(0, 3)])]
    assert not r.nonmonotonic and not r.phantom and not r.reordered


def test_nonmonotonic_consumer_offsets():
    h = clean()
    h.read("c", 0, 1, b"a1")  # went back without a seek
    assert only(h.check(), "nonmonotonic") == [("c", 0, 3, 1)]


def test_seek_allows_rereading():
    h = clean()
    h.seek("c", 0)
    h.read("c", 0, 0, b"a0")
    h.read("c", 0, 1, b"a1")
    h.check().assert_ok()
