"""SASL with real clients: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 on a SASL_PLAINTEXT listener
(confluent-kafka, kafka-python, kcat), OAUTHBEARER with a JWKS file (confluent-kafka), users
managed with `strata users` and with confluent-kafka's admin, refusals that close only the
offending connection, and KIP-368 re-authentication."""

from __future__ import annotations

import base64
import json
import shutil
import struct
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from conftest import StrataBroker, free_port, strata_cli, wait_until
from helpers import admin, consumer, create_topic, producer
from kafka_wire import Connection, Reader, string

MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
ISSUER = "https://issuer.test"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SaslBroker:
    """A broker with a SASL_PLAINTEXT listener (its bootstrap) and a PLAINTEXT one for setup,
    with `alice` (both SCRAM mechanisms) created from a bootstrap credentials file."""

    def __init__(self, tmp, extra: dict[str, str] | None = None, protocol: str = "SASL_PLAINTEXT"):
        self.plain_port = free_port()
        self.broker = StrataBroker(tmp, None)
        b = self.broker
        creds = tmp / "bootstrap-creds"
        creds.write_text(
            "SCRAM-SHA-256=[name=alice,password=alice-secret]\nSCRAM-SHA-512=[name=alice,password=alice-secret]\n"
        )
        b.extra_sets.update(
            {
                "listeners": f"{protocol}://127.0.0.1:{b.port},PLAINTEXT://127.0.0.1:{self.plain_port},"
                f"CONTROLLER://127.0.0.1:{b.controller_port}",
                "inter.broker.listener.name": "PLAINTEXT",
                "sasl.scram.bootstrap.credentials.file": str(creds),
                # Authentication is under test here, not authorization (tests/compat/test_acls.py).
                "allow.everyone.if.no.acl.found": "true",
                **(extra or {}),
            }
        )
        b.start()
        self.plaintext = f"127.0.0.1:{self.plain_port}"
        self.sasl = b.bootstrap
        a = admin(self.plaintext)
        wait_until(lambda: users(a).get("alice") == {"SCRAM-SHA-256", "SCRAM-SHA-512"}, 20, "bootstrap credentials")


def users(a) -> dict[str, set[str]]:
    try:
        described = a.describe_user_scram_credentials().result()
    except KafkaException:
        return {}
    return {u: {str(i.mechanism).split(".")[-1].replace("_", "-") for i in d.scram_credential_infos} for u, d in described.items()}


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory):
    """One broker for the tests that only need `alice`: each starts in seconds, not many."""
    sb = SaslBroker(tmp_path_factory.mktemp("sasl"))
    yield sb
    sb.broker.cleanup()


def sasl_conf(mechanism: str, user: str = "alice", password: str = "alice-secret") -> dict:
    return {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }


def produce_consume_confluent(bootstrap: str, conf: dict, topic: str, n: int = 20) -> list[bytes]:
    p = producer(bootstrap, **conf)
    for i in range(n):
        p.produce(topic, value=f"{topic}-{i}".encode(), key=b"k")
    assert p.flush(15) == 0
    c = consumer(bootstrap, **conf, **{"group.id": f"g-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 20
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.close()
    return got


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_kafka_authenticates_and_round_trips(sasl_broker, mechanism):
    topic = f"sasl-ck-{mechanism.lower()}-{uuid.uuid4().hex[:6]}"
    create_topic(sasl_broker.plaintext, topic)
    got = produce_consume_confluent(sasl_broker.sasl, sasl_conf(mechanism), topic)
    assert got == [f"{topic}-{i}".encode() for i in range(20)]


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kafka_python_authenticates_and_round_trips(sasl_broker, mechanism):
    from kafka import KafkaConsumer, KafkaProducer

    conf = dict(
        bootstrap_servers=sasl_broker.sasl,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=mechanism,
        sasl_plain_username="alice",
        sasl_plain_password="alice-secret",
    )
    topic = f"sasl-kp-{mechanism.lower()}-{uuid.uuid4().hex[:6]}"
    create_topic(sasl_broker.plaintext, topic)
    p = KafkaProducer(**conf)
    for i in range(10):
        p.send(topic, value=f"v{i}".encode()).get(timeout=15)
    p.close()
    c = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=10000, **conf)
    got = []
    for m in c:
        got.append(m.value)
        if len(got) == 10:
            break
    assert got == [f"v{i}".encode() for i in range(10)]
    c.close()


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat missing")
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kcat_authenticates_and_round_trips(sasl_broker, mechanism):
    topic = f"sasl-kcat-{mechanism.lower()}-{uuid.uuid4().hex[:6]}"
    create_topic(sasl_broker.plaintext, topic)
    x = []
    for k, v in sasl_conf(mechanism).items():
        x += ["-X", f"{k}={v}"]
    lines = "".join(f"line-{i}\n" for i in range(5))
    subprocess.run(["kcat", "-b", sasl_broker.sasl, "-t", topic, "-P", *x], input=lines, text=True, check=True, timeout=30)
    out = subprocess.run(
        ["kcat", "-b", sasl_broker.sasl, "-t", topic, "-C", "-o", "beginning", "-e", "-q", *x],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert out.stdout.splitlines() == [f"line-{i}" for i in range(5)]


JS = Path(__file__).parent / "js"


@pytest.mark.skipif(
    shutil.which("node") is None or not (JS / "node_modules" / "kafkajs").is_dir(),
    reason="node or kafkajs missing: run scripts/install-test-deps.sh",
)
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kafkajs_authenticates_and_round_trips(sasl_broker, mechanism):
    topic = f"sasl-js-{mechanism.lower()}-{uuid.uuid4().hex[:6]}"
    create_topic(sasl_broker.plaintext, topic)

    def run(password: str) -> dict:
        out = subprocess.run(
            ["node", str(JS / "sasl_roundtrip.js"), sasl_broker.sasl, mechanism, "alice", password, topic, "8"],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    assert run("alice-secret") == {"seen": [f"js-{i}" for i in range(8)]}
    refused = run("wrong")
    assert refused["error"] == "KafkaJSSASLAuthenticationError", refused
    assert "Authentication failed: Invalid" in refused["message"], refused


def handshake(conn: Connection, mechanism: str) -> tuple[int, list[str]]:
    r = conn.request(17, 1, string(mechanism))
    code = r.take(">h")
    return code, [r.string() for _ in range(r.take(">i"))]


def authenticate(conn: Connection, token: bytes) -> tuple[int, str | None, bytes, int]:
    r = conn.request(36, 1, struct.pack(">i", len(token)) + token)
    return r.take(">h"), r.string(), r.bytes_(), r.take(">q")


def assert_closed(conn: Connection):
    conn.sock.settimeout(5)
    assert conn.sock.recv(1) == b"", "the broker should have closed the connection"


def metadata_ok(bootstrap: str, conf: dict) -> bool:
    a = admin(bootstrap, **conf)
    return a.list_topics(timeout=10) is not None


def auth_refused(bootstrap: str, conf: dict) -> bool:
    """Whether librdkafka reports an authentication failure (error_cb, _AUTHENTICATION)."""
    errors = []
    a = admin(bootstrap, **conf, error_cb=errors.append, **{"reconnect.backoff.ms": 1000})
    with pytest.raises(KafkaException):
        a.list_topics(timeout=3)
    a.poll(1)
    return any(e.code() == KafkaError._AUTHENTICATION for e in errors)


def test_refusals_close_only_their_connection(sasl_broker):
    good = sasl_conf("SCRAM-SHA-256")
    # Wrong password and unknown user: SASL_AUTHENTICATION_FAILED with a message, then closed.
    for user, password in [("alice", "wrong"), ("mallory", "x")]:
        with Connection(sasl_broker.sasl) as c:
            assert handshake(c, "PLAIN") == (0, MECHANISMS)
            code, message, _, _ = authenticate(c, f"\0{user}\0{password}".encode())
            assert code == 58 and "Invalid username or password" in message
            assert_closed(c)
    # Garbage SCRAM bytes.
    with Connection(sasl_broker.sasl) as c:
        assert handshake(c, "SCRAM-SHA-512")[0] == 0
        code, message, _, _ = authenticate(c, b"\xff\x00garbage")
        assert code == 58 and "malformed SCRAM-SHA-512" in message
        assert_closed(c)
    # An unsupported mechanism: the enabled list, then closed.
    with Connection(sasl_broker.sasl) as c:
        assert handshake(c, "GSSAPI") == (33, MECHANISMS)
        assert_closed(c)
    # A Metadata request before authentication: closed without an answer.
    with Connection(sasl_broker.sasl) as c:
        frame = struct.pack(">hhi", 3, 1, 1) + string("early") + struct.pack(">i", -1)
        c.send_raw(struct.pack(">i", len(frame)) + frame)
        assert_closed(c)
    # A correct client keeps working alongside.
    assert metadata_ok(sasl_broker.sasl, good)
    # And confluent-kafka with a wrong password gets an authentication error.
    assert auth_refused(sasl_broker.sasl, sasl_conf("SCRAM-SHA-256", password="nope"))
    log = sasl_broker.broker.log_text()
    assert "SASL authentication failed; closing connection" in log
    assert "request before SASL authentication completed" in log
    # Each refusal is counted by listener and reason (the dashboard's and alerts' series).
    failures = {
        reason: metric_sum(sasl_broker, "strata_server_sasl_authentication_failures_total", listener="SASL_PLAINTEXT", reason=reason)
        for reason in ("bad_credentials", "unsupported_mechanism", "unauthenticated_request", "session_expired")
    }
    assert failures["bad_credentials"] >= 4, failures
    assert failures["unsupported_mechanism"] >= 1 and failures["unauthenticated_request"] >= 1, failures
    assert failures["session_expired"] == 0, failures


def test_users_via_strata_users_and_confluent_admin(sasl_broker, tmp_path):
    cfg = tmp_path / "client.properties"
    cfg.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n"
        'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="alice-secret";\n'
    )
    cc = ["--command-config", str(cfg)]
    strata_cli("users", sasl_broker.sasl, "create", "bob", "--password", "bob-pw", *cc)
    listed = strata_cli("users", sasl_broker.sasl, "list", *cc).stdout
    assert "bob\tSCRAM-SHA-256 (iterations 4096), SCRAM-SHA-512 (iterations 4096)" in listed
    assert metadata_ok(sasl_broker.sasl, sasl_conf("SCRAM-SHA-256", "bob", "bob-pw"))
    assert metadata_ok(sasl_broker.sasl, sasl_conf("PLAIN", "bob", "bob-pw"))
    # The other tools take --command-config too.
    topic = f"cc-{uuid.uuid4().hex[:6]}"
    strata_cli("topics", sasl_broker.sasl, "create", topic, "--partitions", "2", *cc)
    assert topic in strata_cli("topics", sasl_broker.sasl, "list", *cc).stdout
    strata_cli("acls", sasl_broker.sasl, "create", "--allow-principal", "User:bob", "--operation", "Read", "--topic", topic, *cc)
    assert strata_cli("acls", sasl_broker.sasl, "list", "--topic", topic, *cc).stdout.splitlines() == [
        f"TOPIC:LITERAL:{topic}\tUser:bob\t*\tREAD\tALLOW"
    ]
    strata_cli("acls", sasl_broker.sasl, "delete", "--topic", topic, *cc)
    assert strata_cli("acls", sasl_broker.sasl, "list", "--topic", topic, *cc).stdout.strip() == ""
    # Without credentials the tool fails clearly.
    p = strata_cli("topics", sasl_broker.sasl, "list", ok=False)
    assert p.returncode != 0
    strata_cli("users", sasl_broker.sasl, "delete", "bob", *cc)
    assert "bob" not in strata_cli("users", sasl_broker.sasl, "list", *cc).stdout
    assert auth_refused(sasl_broker.sasl, sasl_conf("SCRAM-SHA-256", "bob", "bob-pw"))

    # confluent-kafka's KIP-554 admin calls, over SASL.
    a = admin(sasl_broker.sasl, **sasl_conf("SCRAM-SHA-256"))
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192)
    futures = a.alter_user_scram_credentials([UserScramCredentialUpsertion("carol", info, b"carol-pw")])
    futures["carol"].result()
    described = a.describe_user_scram_credentials(["carol"])["carol"].result()
    assert [(i.mechanism, i.iterations) for i in described.scram_credential_infos] == [(ScramMechanism.SCRAM_SHA_256, 8192)]
    assert metadata_ok(sasl_broker.sasl, sasl_conf("SCRAM-SHA-256", "carol", "carol-pw"))
    # Kafka's validation: too few iterations is UNACCEPTABLE_CREDENTIAL.
    bad = a.alter_user_scram_credentials([UserScramCredentialUpsertion("dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 100), b"pw")])
    with pytest.raises(KafkaException) as e:
        bad["dave"].result()
    assert "UNACCEPTABLE_CREDENTIAL" in str(e.value) or "iterations" in str(e.value)
    a.alter_user_scram_credentials([UserScramCredentialDeletion("carol", ScramMechanism.SCRAM_SHA_256)])["carol"].result()
    with pytest.raises(KafkaException):
        a.describe_user_scram_credentials(["carol"])["carol"].result()


def test_reauthentication_keeps_a_long_lived_producer_working(tmp_path):
    sb = SaslBroker(tmp_path, {"connections.max.reauth.ms": "1500"})
    try:
        # The session lifetime is in the SaslAuthenticate answer.
        with Connection(sb.sasl) as c:
            handshake(c, "PLAIN")
            assert authenticate(c, b"\0alice\0alice-secret")[::3] == (0, 1500)
        topic = f"reauth-{uuid.uuid4().hex[:6]}"
        create_topic(sb.plaintext, topic)
        p = producer(sb.sasl, **sasl_conf("SCRAM-SHA-256"))
        sent = 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            p.produce(topic, value=f"r{sent}".encode())
            sent += 1
            assert p.flush(10) == 0
            time.sleep(0.1)
        c = consumer(sb.plaintext, **{"group.id": "reauth", "auto.offset.reset": "earliest"})
        c.subscribe([topic])
        values = []
        end = time.monotonic() + 15
        while len(values) < sent and time.monotonic() < end:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                values.append(m.value())
        c.close()
        assert values == [f"r{i}".encode() for i in range(sent)]
        assert "expired without re-authentication" not in sb.broker.log_text()
    finally:
        sb.broker.cleanup()


def ec_key_and_jwks(path):
    key = ec.generate_private_key(ec.SECP256R1())
    nums = key.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "kid": "test-key", "alg": "ES256", "use": "sig",
           "x": b64url(nums.x.to_bytes(32, "big")), "y": b64url(nums.y.to_bytes(32, "big"))}
    path.write_text(json.dumps({"keys": [jwk]}))
    return key


def jwt(key, claims: dict) -> str:
    header = b64url(json.dumps({"alg": "ES256", "typ": "JWT", "kid": "test-key"}).encode())
    body = b64url(json.dumps(claims).encode())
    r, s = decode_dss_signature(key.sign(f"{header}.{body}".encode(), ec.ECDSA(hashes.SHA256())))
    return f"{header}.{body}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def test_oauthbearer_with_a_jwks_file(tmp_path):
    jwks = tmp_path / "jwks.json"
    key = ec_key_and_jwks(jwks)
    sb = SaslBroker(
        tmp_path,
        {
            "sasl.enabled.mechanisms": "OAUTHBEARER,SCRAM-SHA-256",
            "sasl.oauthbearer.jwks.endpoint.url": f"file://{jwks}",
            "sasl.oauthbearer.expected.issuer": ISSUER,
            "sasl.oauthbearer.expected.audience": "strata",
        },
    )
    try:
        def conf(claims_override: dict) -> dict:
            def cb(_config):
                now = int(time.time())
                claims = {"sub": "svc-a", "iss": ISSUER, "aud": "strata", "iat": now, "exp": now + 300, **claims_override}
                # librdkafka refuses a lifetime in the past; the broker must judge `exp` itself.
                return jwt(key, claims), now + 300
            return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER", "oauth_cb": cb}

        topic = f"oauth-{uuid.uuid4().hex[:6]}"
        create_topic(sb.plaintext, topic)
        got = produce_consume_confluent(sb.sasl, conf({}), topic, n=5)
        assert got == [f"{topic}-{i}".encode() for i in range(5)]
        for bad in [{"exp": int(time.time()) - 120}, {"iss": "https://evil.test"}]:
            assert auth_refused(sb.sasl, conf(bad))
        log = sb.broker.log_text()
        assert "invalid OAUTHBEARER token: expired" in log
        assert "InvalidIssuer" in log
    finally:
        sb.broker.cleanup()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl missing")
def test_sasl_ssl_with_confluent_kafka_and_the_tools(tmp_path):
    certs = tmp_path / "certs"
    subprocess.run(["bash", str(Path(__file__).parents[2] / "scripts" / "gen-test-certs.sh"), str(certs)], check=True, capture_output=True, timeout=60)
    sb = SaslBroker(tmp_path, {"ssl.keystore.location": str(certs / "server-keystore.pem")}, protocol="SASL_SSL")
    try:
        conf = {**sasl_conf("SCRAM-SHA-512"), "security.protocol": "SASL_SSL", "ssl.ca.location": str(certs / "ca.pem")}
        topic = f"sasl-ssl-{uuid.uuid4().hex[:6]}"
        create_topic(sb.plaintext, topic)
        got = produce_consume_confluent(sb.sasl, conf, topic, n=10)
        assert got == [f"{topic}-{i}".encode() for i in range(10)]
        cfg = tmp_path / "ssl-client.properties"
        cfg.write_text(
            "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-256\nsasl.username=alice\n"
            f"sasl.password=alice-secret\nssl.truststore.location={certs / 'ca.pem'}\n"
        )
        assert topic in strata_cli("topics", sb.sasl, "list", "--command-config", str(cfg)).stdout
    finally:
        sb.broker.cleanup()


def metric_sum(sb: SaslBroker, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{sb.broker.http_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_oauthbearer_sessions_renew_with_fresh_tokens_and_lapse_without(tmp_path):
    """KIP-368 with OAUTHBEARER: librdkafka re-authenticates with the tokens its oauth_cb keeps
    issuing and produces throughout; a connection that lets its session lapse is closed."""
    jwks = tmp_path / "jwks.json"
    key = ec_key_and_jwks(jwks)
    sb = SaslBroker(
        tmp_path,
        {
            "sasl.enabled.mechanisms": "OAUTHBEARER,SCRAM-SHA-256",
            "sasl.oauthbearer.jwks.endpoint.url": f"file://{jwks}",
            "sasl.oauthbearer.expected.issuer": ISSUER,
            # Tokens live seconds here: no slack past their exp.
            "sasl.oauthbearer.clock.skew.seconds": "0",
            "connections.max.reauth.ms": "1500",
        },
    )
    try:
        def token(lifetime_s: int) -> tuple[str, float]:
            now = int(time.time())
            return jwt(key, {"sub": "svc-r", "iss": ISSUER, "iat": now, "exp": now + lifetime_s}), now + lifetime_s

        issued = []

        def cb(_config):
            issued.append(time.time())
            return token(4)

        conf = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER", "oauth_cb": cb}
        topic = f"oauth-reauth-{uuid.uuid4().hex[:6]}"
        create_topic(sb.plaintext, topic)
        before = metric_sum(sb, "strata_server_sasl_authentications_total", listener="SASL_PLAINTEXT")
        p = producer(sb.sasl, **conf)
        sent = 0
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            p.produce(topic, value=f"o{sent}".encode())
            sent += 1
            assert p.flush(10) == 0
            time.sleep(0.1)
        c = consumer(sb.plaintext, **{"group.id": "oauth-reauth", "auto.offset.reset": "earliest"})
        c.subscribe([topic])
        values = []
        end = time.monotonic() + 15
        while len(values) < sent and time.monotonic() < end:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                values.append(m.value())
        c.close()
        assert values == [f"o{i}".encode() for i in range(sent)]
        # Tokens were fetched again as they aged, and sessions renewed well past one per
        # connection: 6 s of 1.5 s sessions.
        assert len(issued) >= 2, issued
        renewed = metric_sum(sb, "strata_server_sasl_authentications_total", listener="SASL_PLAINTEXT") - before
        assert renewed >= 4, renewed
        # On a loaded machine one of librdkafka's idle connections may renew too late and be
        # closed; the records above show the producer never depended on that.
        expired_before = metric_sum(sb, "strata_server_sasl_authentication_failures_total", reason="session_expired")

        # A client that authenticates once and never again: the session ends with the token's
        # two seconds (under connections.max.reauth.ms), and its next request closes it.
        with Connection(sb.sasl) as conn:
            assert handshake(conn, "OAUTHBEARER")[0] == 0
            jws, _ = token(2)
            code, message, _, lifetime_ms = authenticate(conn, f"n,,\x01auth=Bearer {jws}\x01\x01".encode())
            assert code == 0, message
            assert 0 < lifetime_ms <= 2000, lifetime_ms
            time.sleep(2.2)
            frame = struct.pack(">hhi", 3, 1, 7) + string("lapsed") + struct.pack(">i", -1)
            conn.send_raw(struct.pack(">i", len(frame)) + frame)
            assert_closed(conn)
        wait_until(lambda: metric_sum(sb, "strata_server_sasl_authentication_failures_total", reason="session_expired") == expired_before + 1,
                   5, "the lapsed session counted")
        assert "expired without re-authentication" in sb.broker.log_text()
    finally:
        sb.broker.cleanup()
