"""kcat against Strata, with the librdkafka Debian ships and with a current one.

Debian's kcat is linked against its librdkafka (2.0.2 on bookworm), which mis-reads optional
tagged fields that a broker sends with default values: Kafka omits them, and so must Strata.
The "current" variant runs the same kcat binary with LD_LIBRARY_PATH pointing at the
librdkafka bundled in the confluent-kafka wheel; `kcat -V` proves which library is in use.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import confluent_kafka
import pytest

import helpers as h
from conftest import requires

KCAT = shutil.which("kcat")
pytestmark = requires(KCAT is not None, "kcat is not installed (scripts/install-test-deps.sh)")

RUN_TIMEOUT_S = 60
N_RECORDS = 10_000


def bundled_librdkafka() -> Path:
    site = Path(confluent_kafka.__file__).resolve().parent.parent
    libs = sorted(glob.glob(str(site / "confluent_kafka.libs" / "librdkafka*.so*")))
    assert libs, f"no bundled librdkafka under {site / 'confluent_kafka.libs'}"
    return Path(libs[0])


@pytest.fixture(scope="session")
def current_lib_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("librdkafka-current")
    (d / "librdkafka.so.1").symlink_to(bundled_librdkafka())
    return d


def kcat_version(env) -> str:
    out = subprocess.run(
        [KCAT, "-V"], env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=True
    ).stdout
    m = re.search(r"librdkafka (\d+\.\d+\.\d+\S*)", out)
    assert m, f"no librdkafka version in `kcat -V`:\n{out}"
    return m.group(1)


@pytest.fixture(params=["debian", "current"])
def kcat_env(request, current_lib_dir):
    """(variant, env) for running kcat with the chosen librdkafka; checks the version in use."""
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    debian_version = kcat_version(env)
    if request.param == "current":
        env["LD_LIBRARY_PATH"] = str(current_lib_dir)
        version = kcat_version(env)
        expected = confluent_kafka.libversion()[0]
        assert version == expected, f"kcat uses librdkafka {version}, wanted bundled {expected}"
        assert version != debian_version, f"bundled librdkafka is the same {version} as Debian's"
    else:
        version = debian_version
    print(f"kcat variant {request.param}: librdkafka {version}")
    return request.param, env


def kcat(env, *args, input=None, timeout=RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    p = subprocess.run(
        [KCAT, *args],
        env=env,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
    )
    assert p.returncode == 0, (
        f"kcat {' '.join(args)} exited {p.returncode}\nstderr:\n{p.stderr.decode(errors='replace')[-3000:]}"
    )
    return p


def test_metadata_listing(broker, kcat_env):
    _, env = kcat_env
    h.create_topic(broker.bootstrap, "meta-three", 3)
    h.create_topic(broker.bootstrap, "meta-one", 1)

    md = json.loads(kcat(env, "-b", broker.bootstrap, "-L", "-J").stdout)
    assert md["brokers"] == [{"id": 1, "name": broker.bootstrap}]
    assert md["controllerid"] == 1
    topics = {t["topic"]: t for t in md["topics"]}
    assert set(topics) == {"meta-three", "meta-one"}
    for name, count in (("meta-three", 3), ("meta-one", 1)):
        t = topics[name]
        assert "error" not in t, t
        parts = sorted(t["partitions"], key=lambda p: p["partition"])
        assert [p["partition"] for p in parts] == list(range(count))
        for p in parts:
            assert p["leader"] == 1, p
            assert p["replicas"] == [{"id": 1}], p
            assert p["isrs"] == [{"id": 1}], p
            assert "error" not in p, p

    # One topic by name.
    md = json.loads(kcat(env, "-b", broker.bootstrap, "-L", "-J", "-t", "meta-three").stdout)
    assert [t["topic"] for t in md["topics"]] == ["meta-three"]
    assert len(md["topics"][0]["partitions"]) == 3


def test_produce_consume_10k_keyed(broker, kcat_env, tmp_path):
    variant, env = kcat_env
    topic = f"kcat-{variant}"
    h.create_topic(broker.bootstrap, topic, 3)

    # Distinct keys; values of varying length, some empty-looking but never containing ':'
    # or newlines so the line format stays unambiguous.
    written = [(f"key-{i:05d}", f"value-{i:05d}-" + "x" * (i % 97)) for i in range(N_RECORDS)]
    src = tmp_path / "input.txt"
    src.write_text("".join(f"{k}:{v}\n" for k, v in written))
    with open(src, "rb") as f:
        kcat(
            env,
            "-b", broker.bootstrap, "-t", topic, "-P", "-K:",
            "-X", "acks=all", "-X", "linger.ms=5",
            input=f.read(),
        )

    out = kcat(
        env,
        "-b", broker.bootstrap, "-t", topic, "-C", "-e", "-o", "beginning", "-q",
        "-f", "%k:%s:%o:%p\n",
    ).stdout.decode()
    lines = out.splitlines()
    assert len(lines) == N_RECORDS, f"read {len(lines)} records, wrote {N_RECORDS}"

    index = {k: i for i, (k, _) in enumerate(written)}
    per_partition: dict[int, list[tuple[int, int]]] = {}
    for line in lines:
        k, v, o, p = line.split(":")
        i = index[k]
        assert v == written[i][1], f"record {k}: value {v!r}, wrote {written[i][1]!r}"
        per_partition.setdefault(int(p), []).append((int(o), i))
    assert set(per_partition) <= {0, 1, 2}
    seen = set()
    for p, entries in per_partition.items():
        offsets = [o for o, _ in entries]
        assert offsets == list(range(len(entries))), f"partition {p}: offsets not 0..n-1"
        order = [i for _, i in entries]
        assert order == sorted(order), f"partition {p}: records out of production order"
        seen.update(order)
    assert seen == set(range(N_RECORDS))

    # The same data in kcat's JSON envelope, partition 0 only, with offsets and keys.
    out = kcat(
        env,
        "-b", broker.bootstrap, "-t", topic, "-p", "0", "-C", "-e", "-o", "beginning", "-q", "-J",
    ).stdout.decode()
    msgs = [json.loads(line) for line in out.splitlines()]
    expected = [(o, written[i][0], written[i][1]) for o, i in per_partition.get(0, [])]
    assert [(m["offset"], m["key"], m["payload"]) for m in msgs] == expected
    assert all(m["partition"] == 0 and m["topic"] == topic for m in msgs)


def test_produce_auto_creates_topic(broker, kcat_env):
    _, env = kcat_env
    topic = "kcat-auto"
    kcat(env, "-b", broker.bootstrap, "-t", topic, "-P", "-K:", input=b"a:1\nb:2\nc:3\n")
    md = json.loads(kcat(env, "-b", broker.bootstrap, "-L", "-J", "-t", topic).stdout)
    assert len(md["topics"][0]["partitions"]) == 1  # num.partitions defaults to 1
    out = kcat(
        env, "-b", broker.bootstrap, "-t", topic, "-C", "-e", "-o", "beginning", "-q",
        "-f", "%k=%s@%o\n",
    ).stdout.decode()
    assert out.splitlines() == ["a=1@0", "b=2@1", "c=3@2"]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_produce_consume(broker, kcat_env, codec):
    _, env = kcat_env
    topic = f"kcat-{codec}"
    lines = [f"k{i}:{codec} record {i} " + "abc" * (i % 50) for i in range(500)]
    kcat(
        env, "-b", broker.bootstrap, "-t", topic, "-P", "-K:", "-z", codec, "-X", "linger.ms=20",
        input=("\n".join(lines) + "\n").encode(),
    )
    out = kcat(
        env, "-b", broker.bootstrap, "-t", topic, "-C", "-e", "-o", "beginning", "-q",
        "-f", "%o|%k:%s\n",
    ).stdout.decode()
    assert out.splitlines() == [f"{i}|{line}" for i, line in enumerate(lines)]
