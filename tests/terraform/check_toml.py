"""Check a rendered /etc/strata/strata.toml: valid TOML, exactly Strata's supported
node-config keys (Kafka property names), the expected node.id, and closed by default:
every listener maps to SSL or SASL_SSL, client certificates are required on the
broker-to-broker and controller listeners, and nothing is allowed without an ACL.

Usage: python3 check_toml.py FILE NODE_ID [--plaintext-clients]
  --plaintext-clients: the module's explicit opt-out (client listener PLAINTEXT).
"""

import sys
import tomllib

# listener.name.controller.ssl.client.auth exists exactly on controllers.
CONTROLLER_ONLY = {"listener.name.controller.ssl.client.auth": str}

EXPECTED = {
    "node.id": int,
    "process.roles": list,
    "listeners": str,
    "advertised.listeners": str,
    "listener.security.protocol.map": str,
    "inter.broker.listener.name": str,
    "controller.listener.names": str,
    "ssl.certificate.location": str,
    "ssl.key.location": str,
    "ssl.truststore.location": str,
    "listener.name.internal.ssl.client.auth": str,
    "sasl.enabled.mechanisms": str,
    "super.users": str,
    "allow.everyone.if.no.acl.found": bool,
    "http.listener": str,
    "controller.quorum.voters": str,
    "log.dirs": str,
    "remote.storage.uri": str,
    "remote.storage.s3.endpoint": str,
    "remote.storage.s3.region": str,
    "default.replication.factor": int,
    "min.insync.replicas": int,
    "num.partitions": int,
}


def flatten(table, prefix=""):
    out = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def listener_protocols(cfg):
    """{listener name: security protocol} of `listeners`, through the protocol map (a name
    missing from the map counts as PLAINTEXT, the safe assumption for this check)."""
    proto = dict(p.split(":", 1) for p in cfg.get("listener.security.protocol.map", "").split(",") if p)
    names = [l.split("://", 1)[0] for l in cfg.get("listeners", "").split(",") if l]
    return {n: proto.get(n, "PLAINTEXT") for n in names}


def main():
    path, node_id = sys.argv[1], int(sys.argv[2])
    plaintext_clients = "--plaintext-clients" in sys.argv[3:]
    with open(path, "rb") as f:
        cfg = flatten(tomllib.load(f))
    problems = []
    roles = cfg.get("process.roles", [])
    expected = dict(EXPECTED, **(CONTROLLER_ONLY if "controller" in roles else {}))
    if set(cfg) != set(expected):
        problems.append(f"keys differ: extra {sorted(set(cfg) - set(expected))}, missing {sorted(set(expected) - set(cfg))}")
    for key, typ in expected.items():
        if key in cfg and not isinstance(cfg[key], typ):
            problems.append(f"{key} is {type(cfg[key]).__name__}, not {typ.__name__}")
    if cfg.get("node.id") != node_id:
        problems.append(f"node.id is {cfg.get('node.id')}, expected {node_id}")
    if not roles or not set(roles) <= {"broker", "controller"}:
        problems.append(f"process.roles {roles}")
    if ("controller" in roles) != ("CONTROLLER://" in cfg.get("listeners", "")):
        problems.append("a controller listener exactly when the node has the controller role")

    # Closed by default.
    protocols = listener_protocols(cfg)
    client = "PLAINTEXT" if plaintext_clients else "SASL_SSL"
    want = {client: client, "INTERNAL": "SSL"}
    if "controller" in roles:
        want["CONTROLLER"] = "SSL"
    if protocols != want:
        problems.append(f"listener protocols {protocols}, expected {want}")
    if not plaintext_clients and any(p not in ("SSL", "SASL_SSL") for p in protocols.values()):
        problems.append(f"a listener without TLS: {protocols}")
    advertised = {l.split("://", 1)[0] for l in cfg.get("advertised.listeners", "").split(",") if l}
    if advertised != {client, "INTERNAL"}:
        problems.append(f"advertised listeners {sorted(advertised)}")
    if cfg.get("inter.broker.listener.name") != "INTERNAL" or cfg.get("controller.listener.names") != "CONTROLLER":
        problems.append("brokers must replicate over INTERNAL and reach the quorum over CONTROLLER")
    for key in ("listener.name.internal.ssl.client.auth", "listener.name.controller.ssl.client.auth"):
        if key in expected and cfg.get(key) != "required":
            problems.append(f"{key} = {cfg.get(key)!r}, expected required (mutual TLS)")
    if cfg.get("allow.everyone.if.no.acl.found") is not plaintext_clients:
        problems.append(f"allow.everyone.if.no.acl.found = {cfg.get('allow.everyone.if.no.acl.found')}")
    supers = cfg.get("super.users", "").split(";")
    if len(supers) != 2 or not all(s.startswith("User:") for s in supers) or not supers[1].startswith("User:CN="):
        problems.append(f"super.users {supers}: expected the admin and the brokers' certificate principal")
    if cfg.get("sasl.enabled.mechanisms") not in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        problems.append(f"sasl.enabled.mechanisms {cfg.get('sasl.enabled.mechanisms')}")
    for key in ("ssl.certificate.location", "ssl.key.location", "ssl.truststore.location"):
        if not cfg.get(key, "").startswith("/etc/strata/tls/"):
            problems.append(f"{key} {cfg.get(key)!r} is not under /etc/strata/tls/")
    if problems:
        print(f"{path}: " + "; ".join(problems))
        sys.exit(1)


if __name__ == "__main__":
    main()
