"""Check a rendered /etc/strata/strata.toml: valid TOML, exactly Strata's supported
node-config keys (Kafka property names), and the expected node.id.

Usage: python3 check_toml.py FILE NODE_ID
"""

import sys
import tomllib

EXPECTED = {
    "node.id": int,
    "process.roles": list,
    "listeners": str,
    "advertised.listeners": str,
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


def main():
    path, node_id = sys.argv[1], int(sys.argv[2])
    with open(path, "rb") as f:
        cfg = flatten(tomllib.load(f))
    problems = []
    if set(cfg) != set(EXPECTED):
        problems.append(f"keys differ: extra {sorted(set(cfg) - set(EXPECTED))}, missing {sorted(set(EXPECTED) - set(cfg))}")
    for key, typ in EXPECTED.items():
        if key in cfg and not isinstance(cfg[key], typ):
            problems.append(f"{key} is {type(cfg[key]).__name__}, not {typ.__name__}")
    if cfg.get("node.id") != node_id:
        problems.append(f"node.id is {cfg.get('node.id')}, expected {node_id}")
    roles = cfg.get("process.roles", [])
    if not roles or not set(roles) <= {"broker", "controller"}:
        problems.append(f"process.roles {roles}")
    if ("controller" in roles) != ("CONTROLLER://" in cfg.get("listeners", "")):
        problems.append("a controller listener exactly when the node has the controller role")
    if problems:
        print(f"{path}: " + "; ".join(problems))
        sys.exit(1)


if __name__ == "__main__":
    main()
