"""Real clients over TLS: kcat (librdkafka), confluent-kafka, kafka-python and kafkajs produce and
consume on an SSL listener that requires client certificates; bad clients (garbage bytes, an
expired or untrusted certificate) are refused without disturbing others; and a three-node
cluster whose inter-broker and controller listeners are SSL (mutual TLS) replicates and keeps
every acks=all record through a SIGKILL of a partition leader.

Certificates are generated per session by scripts/gen-test-certs.sh (openssl CLI).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

import helpers as h
from conftest import REPO, StrataBroker, free_port, missing, strata_cli, wait_until

JS = Path(__file__).parent / "js"
KCAT = shutil.which("kcat")
N = 200


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Path:
    if shutil.which("openssl") is None:
        missing("openssl is not installed (scripts/install-test-deps.sh)")
    d = tmp_path_factory.mktemp("certs")
    subprocess.run(["bash", str(REPO / "scripts" / "gen-test-certs.sh"), str(d)], check=True, timeout=60)
    return d


def ssl_sets(certs: Path) -> dict[str, str]:
    return {
        "ssl.keystore.location": str(certs / "server-keystore.pem"),
        "ssl.truststore.location": str(certs / "ca.pem"),
    }


@pytest.fixture
def tls_broker(tmp_path, request, certs):
    """One broker: PLAINTEXT on `port`, SSL (client certificates required) on `ssl_port`."""
    d = tmp_path / "broker"
    d.mkdir()
    b = StrataBroker(d)
    b.ssl_port = free_port()
    b.extra_sets.update(
        {
            "listeners": f"PLAINTEXT://127.0.0.1:{b.port},SSL://127.0.0.1:{b.ssl_port},"
            f"CONTROLLER://127.0.0.1:{b.controller_port}",
            "listener.name.ssl.ssl.client.auth": "required",
            "listener.name.ssl.ssl.principal.mapping.rules": "RULE:^CN=([^,]*),.*$/$1/,DEFAULT",
            "ssl.handshake.timeout.ms": "2000",
            # Required client certificates make the authorizer deny by default; these tests
            # are about TLS, not ACLs.
            "allow.everyone.if.no.acl.found": "true",
            **ssl_sets(certs),
        }
    )
    request.node._strata_brokers = [b]
    b.start()
    yield b
    b.cleanup()


def rdkafka_ssl(certs: Path) -> dict[str, str]:
    return {
        "security.protocol": "SSL",
        "ssl.ca.location": str(certs / "ca.pem"),
        "ssl.certificate.location": str(certs / "client.pem"),
        "ssl.key.location": str(certs / "client.key"),
    }


def ssl_bootstrap(b) -> str:
    return f"127.0.0.1:{b.ssl_port}"


def new_topic(b, partitions: int = 1) -> str:
    topic = f"tls-{uuid.uuid4().hex[:8]}"
    h.create_topic(b.bootstrap, topic, partitions)
    return topic


def test_confluent_kafka_produces_and_consumes_over_mtls(tls_broker, certs):
    topic = new_topic(tls_broker)
    p = Producer({"bootstrap.servers": ssl_bootstrap(tls_broker), "acks": "all", **rdkafka_ssl(certs)})
    d = h.Deliveries()
    for i in range(N):
        p.produce(topic, key=b"k", value=f"cf-{i}".encode(), on_delivery=d)
    h.flush_all(p)
    d.assert_all_ok(N)
    c = Consumer(
        {
            "bootstrap.servers": ssl_bootstrap(tls_broker),
            "group.id": f"{topic}-g",
            "auto.offset.reset": "earliest",
            **rdkafka_ssl(certs),
        }
    )
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < N and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is not None and not m.error():
            got.append((m.offset(), m.value().decode()))
    c.close()
    assert got == [(i, f"cf-{i}") for i in range(N)]
    # Clients of the SSL port are only ever sent to the SSL port.
    md = AdminClient({"bootstrap.servers": ssl_bootstrap(tls_broker), **rdkafka_ssl(certs)}).list_topics(timeout=10)
    assert [(b.host, b.port) for b in md.brokers.values()] == [("127.0.0.1", tls_broker.ssl_port)]


def test_kafka_python_produces_and_consumes_over_mtls(tls_broker, certs):
    from kafka import KafkaConsumer, KafkaProducer

    topic = new_topic(tls_broker)
    opts = dict(
        bootstrap_servers=ssl_bootstrap(tls_broker),
        security_protocol="SSL",
        ssl_cafile=str(certs / "ca.pem"),
        ssl_certfile=str(certs / "client.pem"),
        ssl_keyfile=str(certs / "client.key"),
    )
    p = KafkaProducer(acks="all", **opts)
    for i in range(N):
        p.send(topic, key=b"k", value=f"kp-{i}".encode())
    p.flush(timeout=30)
    p.close()
    c = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=10_000, **opts)
    got = []
    for m in c:
        got.append((m.offset, m.value.decode()))
        if len(got) == N:
            break
    c.close()
    assert got == [(i, f"kp-{i}") for i in range(N)]


def test_kcat_produces_and_consumes_over_mtls(tls_broker, certs):
    if KCAT is None:
        missing("kcat is not installed (scripts/install-test-deps.sh)")
    topic = new_topic(tls_broker)
    x = []
    for k, v in rdkafka_ssl(certs).items():
        x += ["-X", f"{k}={v}"]
    lines = "".join(f"kcat-{i}\n" for i in range(N))
    subprocess.run(
        [KCAT, "-b", ssl_bootstrap(tls_broker), *x, "-P", "-t", topic, "-X", "acks=all"],
        input=lines, text=True, check=True, timeout=60,
    )
    out = subprocess.run(
        [KCAT, "-b", ssl_bootstrap(tls_broker), *x, "-C", "-t", topic, "-o", "beginning", "-e", "-f", "%o %s\n"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    assert out.splitlines() == [f"{i} kcat-{i}" for i in range(N)]


def test_kafkajs_produces_and_consumes_over_mtls(tls_broker, certs):
    if shutil.which("node") is None or not (JS / "node_modules" / "kafkajs").is_dir():
        missing("node or kafkajs missing: run scripts/install-test-deps.sh")
    topic = new_topic(tls_broker)
    out = subprocess.run(
        ["node", str(JS / "tls_produce_consume.js"), ssl_bootstrap(tls_broker), topic, str(N), str(certs)],
        capture_output=True, text=True, timeout=90,
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])["seen"]
    assert [(int(s["offset"]), s["key"], s["value"]) for s in seen] == [(i, "k", f"js-tls-{i}") for i in range(N)]


def tls_client_handshake(port: int, certs: Path, cert: str | None) -> str:
    """Connects with `cert` (None: no client certificate), sends an ApiVersions request and says
    how it went: "ok", or why not."""
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    if cert:
        ctx.load_cert_chain(str(certs / f"{cert}.pem"), str(certs / f"{cert}.key"))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                # ApiVersions v0, correlation id 7, client id "t".
                body = (18).to_bytes(2, "big") + (0).to_bytes(2, "big") + (7).to_bytes(4, "big") + b"\x00\x01t"
                s.sendall(len(body).to_bytes(4, "big") + body)
                head = s.recv(8)
                if len(head) < 8:
                    return "closed"
                return "ok" if int.from_bytes(head[4:8], "big") == 7 else "bad correlation id"
    except (ssl.SSLError, ConnectionError, OSError) as e:
        return f"refused: {e}"


def test_bad_clients_are_refused_and_others_keep_working(tls_broker, certs):
    port = tls_broker.ssl_port
    # Garbage instead of a ClientHello: the broker closes the connection.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"\x00\x00\x00\x20" + b"GET / HTTP/1.0\r\n\r\n" * 4)
        s.settimeout(5)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        assert not data.startswith(b"\x00\x00"), "garbage was answered as a Kafka request"
    for cert in ["expired", "untrusted", None]:
        assert tls_client_handshake(port, certs, cert) != "ok", f"{cert} was let in"
    # Meanwhile a well-behaved client is served, on the same port.
    assert tls_client_handshake(port, certs, "client") == "ok"
    log = tls_broker.log_text()
    assert "TLS handshake failed" in log
    metrics = wait_until(lambda: _metrics(tls_broker), 10, "metrics")
    failures = [l for l in metrics.splitlines() if l.startswith("strata_server_tls_handshake_failures_total")]
    assert any('reason="bad_certificate"' in l for l in failures), failures
    assert any('reason="no_certificate"' in l for l in failures), failures


def _metrics(b) -> str | None:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{b.http_port}/metrics", timeout=5) as r:
            return r.read().decode()
    except OSError:
        return None


# ---- a cluster over mutual TLS -----------------------------------------------------------------


def tls_cluster(tmp_path, request, certs, n: int = 3) -> list[StrataBroker]:
    """`n` nodes; clients use PLAINTEXT, brokers replicate over INTERNAL (SSL) and the
    controller quorum talks over CONTROLLER (SSL), both requiring client certificates."""
    from test_cluster import Cluster

    c = Cluster(tmp_path, n=n)
    request.node._strata_brokers = c.nodes
    for b in c.nodes:
        b.internal_port = free_port()
        b.extra_sets.update(
            {
                "listeners": f"PLAINTEXT://127.0.0.1:{b.port},INTERNAL://127.0.0.1:{b.internal_port},"
                f"CONTROLLER://127.0.0.1:{b.controller_port}",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,INTERNAL:SSL,CONTROLLER:SSL",
                "inter.broker.listener.name": "INTERNAL",
                "ssl.client.auth": "required",
                "replica.lag.time.max.ms": "3000",
                "allow.everyone.if.no.acl.found": "true",
                **ssl_sets(certs),
            }
        )
    return c


def isr(bootstrap: str, topic: str) -> tuple[int, list[int]]:
    md = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000}).list_topics(topic, timeout=5)
    p = md.topics[topic].partitions[0]
    return p.leader, sorted(p.isrs)


@pytest.mark.timeout(180)
def test_a_cluster_replicates_over_mutual_tls_and_survives_a_leader_kill(tmp_path, request, certs):
    c = tls_cluster(tmp_path, request, certs)
    try:
        c.start_all()

        def ready():
            try:
                md = AdminClient({"bootstrap.servers": c.bootstrap(), "socket.timeout.ms": 2000}).list_topics(timeout=3)
            except Exception:  # noqa: BLE001 - the quorum is still forming
                return False
            return len(md.brokers) == 3

        wait_until(ready, 60, "three brokers registered over the SSL controller quorum")
        topic = f"mtls-{uuid.uuid4().hex[:8]}"
        a = AdminClient({"bootstrap.servers": c.bootstrap()})
        a.create_topics([NewTopic(topic, 1, 3, config={"min.insync.replicas": "2"})])[topic].result(30)

        def produce(start: int, count: int):
            p = Producer({"bootstrap.servers": c.bootstrap(), "acks": "all", "enable.idempotence": True,
                          "message.timeout.ms": 60000})
            d = h.Deliveries()
            for i in range(start, start + count):
                p.produce(topic, key=b"k", value=f"v{i}".encode(), partition=0, on_delivery=d)
            h.flush_all(p, 90)
            d.assert_all_ok(count)

        produce(0, 300)
        # Every replica caught up over TLS: the ISR is all three.
        wait_until(lambda: isr(c.bootstrap(), topic)[1] == [1, 2, 3], 30, "all three replicas in sync")
        leader, _ = isr(c.bootstrap(), topic)
        c.node(leader).proc.send_signal(signal.SIGKILL)
        c.node(leader).proc.wait(10)
        wait_until(lambda: isr(c.bootstrap(), topic)[0] not in (leader, -1), 60, "a new leader")
        produce(300, 300)
        got = h.read_partitions(c.bootstrap(), topic, [0])
        assert [r.value for r in got] == [f"v{i}".encode() for i in range(600)]
        # The brokers and controllers authenticated one another: no certificate was refused.
        for b in c.live():
            failures = [
                l for l in (_metrics(b) or "").splitlines()
                if l.startswith("strata_server_tls_handshake_failures_total")
                and any(f'reason="{r}"' in l for r in ("bad_certificate", "no_certificate", "protocol"))
                # Every listener exports these from the start, at zero.
                and float(l.rsplit(" ", 1)[1]) > 0
            ]
            assert not failures, failures
    finally:
        c.cleanup()


# ---- a cluster whose brokers authenticate to one another with SCRAM over SASL_SSL ------------

SCRAM_USERS = {"broker": "broker-secret", "admin": "admin-secret", "alice": "alice-secret"}


def sasl_ssl_conf(certs: Path, user: str) -> dict[str, str]:
    return {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": SCRAM_USERS[user],
        "ssl.ca.location": str(certs / "ca.pem"),
    }


def sasl_ssl_cluster(tmp_path, request, certs, n: int = 3):
    """`n` nodes with one Kafka listener, INTERNAL (SASL_SSL, SCRAM-SHA-512), that clients and
    the replica fetchers share; brokers log in as `broker`, a super user, and every other
    principal needs ACLs. The controller quorum keeps mutual TLS."""
    from test_cluster import Cluster

    creds = tmp_path / "scram-users"
    creds.write_text("".join(f"SCRAM-SHA-512=[name={u},password={p}]\n" for u, p in SCRAM_USERS.items()))
    c = Cluster(tmp_path, n=n)
    request.node._strata_brokers = c.nodes
    for b in c.nodes:
        b.extra_sets.update(
            {
                "listeners": f"INTERNAL://127.0.0.1:{b.port},CONTROLLER://127.0.0.1:{b.controller_port}",
                "listener.security.protocol.map": "INTERNAL:SASL_SSL,CONTROLLER:SSL",
                "inter.broker.listener.name": "INTERNAL",
                "sasl.enabled.mechanisms": "SCRAM-SHA-512",
                "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
                "listener.name.internal.scram-sha-512.sasl.jaas.config":
                    'org.apache.kafka.common.security.scram.ScramLoginModule required '
                    'username="broker" password="broker-secret";',
                "listener.name.controller.ssl.client.auth": "required",
                "sasl.scram.bootstrap.credentials.file": str(creds),
                "super.users": "User:broker;User:admin",
                "replica.lag.time.max.ms": "3000",
                # Sessions of 2 s: the fetchers must renew theirs (KIP-368) throughout the test.
                "connections.max.reauth.ms": "2000",
                **ssl_sets(certs),
            }
        )
    return c


def _authorizations(b, principal: str, operation: str, result: str) -> float:
    total = 0.0
    for line in (_metrics(b) or "").splitlines():
        if (line.startswith("strata_authorization_total{") and f'principal="{principal}"' in line
                and f'operation="{operation}"' in line and f'result="{result}"' in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.timeout(180)
def test_brokers_replicate_over_sasl_ssl_as_a_super_user_and_survive_a_leader_kill(tmp_path, request, certs):
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType

    c = sasl_ssl_cluster(tmp_path, request, certs)
    admin_conf = sasl_ssl_conf(certs, "admin")
    try:
        c.start_all()

        def ready():
            try:
                md = AdminClient({"bootstrap.servers": c.bootstrap(), "socket.timeout.ms": 2000, **admin_conf}).list_topics(timeout=3)
            except Exception:  # noqa: BLE001 - the quorum is still forming
                return False
            return len(md.brokers) == 3

        wait_until(ready, 60, "three brokers registered")
        # `strata cluster describe` through a broker's secured Kafka port, as the admin; alice
        # lacks DESCRIBE on the cluster.
        def props(user: str) -> Path:
            f = tmp_path / f"{user}.properties"
            f.write_text(
                "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
                "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{user}" password="{SCRAM_USERS[user]}";\n'
                f"ssl.truststore.location={certs / 'ca.pem'}\n"
            )
            return f

        described = json.loads(strata_cli("cluster", c.node(2).bootstrap, "describe", "--command-config",
                                          str(props("admin")), "--json").stdout)
        assert sorted(v[0] for v in described["voters"]) == [1, 2, 3], described
        assert described["leader"] in (1, 2, 3) and described["term"] >= 1, described
        assert [(b[0], b[1], b[3]) for b in described["brokers"]] == [
            (n.node_id, n.bootstrap, False) for n in c.nodes], described
        refused = strata_cli("cluster", c.node(2).bootstrap, "describe", "--command-config", str(props("alice")), ok=False)
        assert "DescribeCluster" in refused.stderr and "(31)" in refused.stderr, refused.stderr  # CLUSTER_AUTHORIZATION_FAILED
        topic = f"sasl-ib-{uuid.uuid4().hex[:8]}"
        a = AdminClient({"bootstrap.servers": c.bootstrap(), **admin_conf})
        a.create_topics([NewTopic(topic, 1, 3, config={"min.insync.replicas": "2"})])[topic].result(30)
        acls = [AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:alice", "*", op,
                           AclPermissionType.ALLOW) for op in (AclOperation.WRITE, AclOperation.DESCRIBE)]
        for f in a.create_acls(acls).values():
            f.result(30)

        def produce(start: int, count: int):
            p = Producer({"bootstrap.servers": c.bootstrap(), "acks": "all", "enable.idempotence": True,
                          "message.timeout.ms": 60000, **sasl_ssl_conf(certs, "alice")})
            d = h.Deliveries()
            for i in range(start, start + count):
                p.produce(topic, key=b"k", value=f"v{i}".encode(), partition=0, on_delivery=d)
            h.flush_all(p, 90)
            d.assert_all_ok(count)

        def isr_now():
            md = AdminClient({"bootstrap.servers": c.bootstrap(), "socket.timeout.ms": 2000, **admin_conf}).list_topics(topic, timeout=5)
            p = md.topics[topic].partitions[0]
            return p.leader, sorted(p.isrs)

        produce(0, 300)
        # Followers fetched over SASL_SSL as User:broker: the ISR is all three.
        wait_until(lambda: isr_now()[1] == [1, 2, 3], 30, "all three replicas in sync")
        leader, _ = isr_now()
        assert _authorizations(c.node(leader), "User:broker", "CLUSTER_ACTION", "allowed") > 0
        assert _authorizations(c.node(leader), "User:broker", "CLUSTER_ACTION", "denied") == 0
        # ACLs are in force: alice may write, not read.
        with pytest.raises(KafkaException) as refused:
            h.read_partitions(c.bootstrap(), topic, [0], timeout=15, **sasl_ssl_conf(certs, "alice"))
        assert "AUTHORIZATION_FAILED" in str(refused.value), refused.value
        c.node(leader).proc.send_signal(signal.SIGKILL)
        c.node(leader).proc.wait(10)
        wait_until(lambda: isr_now()[0] not in (leader, -1), 60, "a new leader")
        produce(300, 300)
        got = h.read_partitions(c.bootstrap(), topic, [0], **admin_conf)
        assert [r.value for r in got] == [f"v{i}".encode() for i in range(600)]
        new_leader, _ = isr_now()
        # The surviving follower authenticated to the new leader as the super user too.
        wait_until(lambda: _authorizations(c.node(new_leader), "User:broker", "CLUSTER_ACTION", "allowed") > 0,
                   30, "the new leader serving follower fetches")
        for b in c.nodes:
            log = b.log_text()
            assert "refused this broker's SASL authentication" not in log
            # No connection, fetchers' included, outlived its 2 s session.
            assert "expired without re-authentication" not in log
        for b in c.live():
            m = _metrics(b) or ""
            renewed = sum(float(l.rsplit(" ", 1)[1]) for l in m.splitlines()
                          if l.startswith('strata_server_sasl_authentications_total{listener="INTERNAL"'))
            assert renewed >= 3, m
    finally:
        c.cleanup()


@pytest.mark.timeout(150)
def test_transactions_span_brokers_that_authenticate_to_one_another(tmp_path, request, certs):
    """The coordinator's markers and the leaders' verification questions cross brokers on the
    SASL_SSL inter-broker listener, authenticated as the broker's user like replica fetches."""
    from test_metrics import series

    c = sasl_ssl_cluster(tmp_path, request, certs)
    admin_conf = sasl_ssl_conf(certs, "admin")
    try:
        c.start_all()
        topic = f"sasl-txn-{uuid.uuid4().hex[:8]}"

        def created():
            try:
                a = AdminClient({"bootstrap.servers": c.bootstrap(), "socket.timeout.ms": 2000, **admin_conf})
                if len(a.list_topics(timeout=3).brokers) < 3:
                    return False
                a.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
                return True
            except Exception:  # noqa: BLE001 - the quorum is still forming
                return False

        wait_until(created, 60, "three brokers and the topic")
        md = AdminClient({"bootstrap.servers": c.bootstrap(), **admin_conf}).list_topics(topic, timeout=10)
        assert len({p.leader for p in md.topics[topic].partitions.values()}) >= 2, "leaders on one broker"
        p = Producer({"bootstrap.servers": c.bootstrap(), "transactional.id": "sasl-txn", **admin_conf})
        p.init_transactions(60)
        for commit in (True, False, True):
            p.begin_transaction()
            for i in range(30):
                p.produce(topic, value=f"{'c' if commit else 'a'}{i}".encode(), partition=i % 3)
            (p.commit_transaction if commit else p.abort_transaction)(60)
        got = h.read_partitions(c.bootstrap(), topic, [0, 1, 2], **admin_conf, **{"isolation.level": "read_committed"})
        assert sorted(r.value.decode() for r in got) == sorted([f"c{i}" for i in range(30)] * 2)
        verified = sum(v for b in c.nodes for labels, v in series(_metrics(b) or "", "strata_txn_verifications_total").items()
                       if ("coordinator", "remote") in labels and ("result", "verified") in labels)
        assert verified >= 2, "leaders asked a coordinator on another broker"
        timed = sum(v for b in c.nodes for labels, v in series(_metrics(b) or "", "strata_txn_verification_seconds_count").items()
                    if ("coordinator", "remote") in labels)
        assert timed >= verified, "every remote question is timed"
        for b in c.nodes:
            assert "refused this broker's SASL authentication" not in b.log_text()
    finally:
        c.cleanup()
