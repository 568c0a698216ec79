#!/usr/bin/env python3
"""Breaks each failover of the chaos test into its steps, from the brokers' logs.

The chaos test (test_replication.py::test_chaos_kill_the_leader_repeatedly) prints a
`chaos timeline:` line: the brokers' log directories, and for every SIGKILL of the partition
leader its wall-clock time, the victim's node id and the failover time (kill to the first
acknowledged acks=all write). Each broker logs one INFO line per failover step, stamped with
the wall clock (UTC). This script lines the two up and prints, for every kill, how long after
it each step first happened, then the median and the maximum of each step:

  elected     a node became the active controller (`elected the active controller`)
              — only when the victim was the active controller
  fenced      the active controller fenced the victim (`fenced a broker`; the rule is counted)
  leader      the new leader applied its leadership of the partition
              (`partition leadership changed`, on the new leader's own log)
  append      the new leader accepted its first append (`first append in a new leader epoch`)
  commit      its high watermark first passed a record of the new epoch
              (`first commit in a new leader epoch`)
  ack         the producer's first acknowledgement (measured by the test)

Run the chaos test with `-s` and keep its output, then give it to this script while the
test's temporary directory still exists (pytest keeps the last three):

  cd tests/compat
  STRATA_BIN=$CARGO_TARGET_DIR/debug/strata STRATA_CHAOS_SECONDS=60 \\
      python3 -m pytest -q -s test_replication.py -k chaos | tee /tmp/chaos.out
  python3 failover_phases.py /tmp/chaos.out

`--json` prints the per-kill timeline as JSON instead of a table.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from datetime import datetime
from pathlib import Path

PHASES = ["elected", "fenced", "leader", "append", "commit", "ack"]
# A step further than this after its kill belongs to something else (the restart, say).
WINDOW_S = 15.0

LINE = re.compile(r"^(\d{4}-\d\d-\d\dT[\d:.]+Z)\s+(\w+)\s+(\S+?):\s+(.*)$")
FIELD = re.compile(r"(\w+)=(\"[^\"]*\"|\S+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def read_events(node_id: int, node_dir: Path) -> list[dict]:
    """Every INFO-or-louder line of one node's logs (every start), as dicts."""
    events = []
    for path in sorted(node_dir.glob("strata-*.log")):
        for raw in path.read_text(errors="replace").splitlines():
            m = LINE.match(ANSI.sub("", raw))
            if not m:
                continue
            stamp, _level, _target, rest = m.groups()
            fields = {k: v.strip('"') for k, v in FIELD.findall(rest)}
            # The message is what precedes the first field.
            first = FIELD.search(rest)
            message = rest[: first.start()].strip() if first else rest.strip()
            events.append({"t": parse_time(stamp), "node": node_id, "msg": message, **fields})
    return events


def timeline_from(output: str) -> dict:
    found = None
    for line in output.splitlines():
        if line.startswith("chaos timeline: "):
            found = json.loads(line[len("chaos timeline: "):])
    if found is None:
        sys.exit("no `chaos timeline:` line: run the chaos test with -s and pass its output")
    return found


def first(events, t0: float, t1: float, pred):
    for e in events:
        if t0 <= e["t"] < t1 and pred(e):
            return e
    return None


def phases_of_kill(events: list[dict], kill: dict, until: float, tp: str) -> dict:
    t0, victim = kill["at"], int(kill["victim"])
    t1 = min(until, t0 + WINDOW_S)
    out: dict = {"victim": victim}

    def offset(e):
        return None if e is None else round(e["t"] - t0, 3)

    elected = first(events, t0, t1, lambda e: e["msg"] == "elected the active controller")
    out["elected"] = offset(elected)
    fenced = first(events, t0, t1, lambda e: e["msg"] == "fenced a broker"
                   and e.get("broker_id") == str(victim))
    out["fenced"] = offset(fenced)
    out["fence_rule"] = fenced.get("rule") if fenced else None
    # The new leader applying its own leadership: leader == the node whose log it is.
    leader = first(events, t0, t1, lambda e: e["msg"] == "partition leadership changed"
                   and e.get("partition") == tp and e.get("leader") == str(e["node"])
                   and e["node"] != victim)
    out["leader"] = offset(leader)
    out["new_leader"] = leader["node"] if leader else None
    same = (lambda e: e["node"] == leader["node"]) if leader else (lambda e: e["node"] != victim)
    out["append"] = offset(first(events, t0, t1, lambda e: e["msg"] ==
                                 "first append in a new leader epoch"
                                 and e.get("partition") == tp and same(e)))
    out["commit"] = offset(first(events, t0, t1, lambda e: e["msg"] ==
                                 "first commit in a new leader epoch"
                                 and e.get("partition") == tp and same(e)))
    out["ack"] = round(kill["failover_s"], 3) if "failover_s" in kill else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("output", nargs="?", help="the chaos test's output (default: stdin)")
    ap.add_argument("--json", action="store_true", help="print the timeline as JSON")
    args = ap.parse_args()
    text = Path(args.output).read_text() if args.output else sys.stdin.read()
    tl = timeline_from(text)
    tp = f"{tl.get('topic', 'chaos')}-{tl.get('partition', 0)}"
    events: list[dict] = []
    for node_id, node_dir in tl["nodes"].items():
        if not Path(node_dir).is_dir():
            sys.exit(f"{node_dir} is gone: pytest keeps only its last three temporary dirs")
        events.extend(read_events(int(node_id), Path(node_dir)))
    events.sort(key=lambda e: e["t"])
    kills = sorted(tl["kills"], key=lambda k: k["at"])
    rows = []
    for i, kill in enumerate(kills):
        until = kills[i + 1]["at"] if i + 1 < len(kills) else float("inf")
        rows.append(phases_of_kill(events, kill, until, tp))
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    cell = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    print("kill victim " + " ".join(f"{p:>8}" for p in PHASES) + "  new_leader fence_rule")
    for i, r in enumerate(rows, 1):
        print(f"{i:>4} {r['victim']:>6} " + " ".join(f"{cell(r[p]):>8}" for p in PHASES)
              + f"  {r['new_leader'] or '-':>10} {r['fence_rule'] or '-'}")
    for name, agg in (("median", statistics.median), ("max", max)):
        vals = []
        for p in PHASES:
            xs = [r[p] for r in rows if r[p] is not None]
            vals.append(cell(agg(xs)) if xs else "-")
        print(f"{name:>11} " + " ".join(f"{v:>8}" for v in vals))
    counts = [f"{p} {sum(r[p] is not None for r in rows)}/{len(rows)}" for p in PHASES]
    print("seen: " + ", ".join(counts))
    rules: dict[str, int] = {}
    for r in rows:
        if r["fence_rule"]:
            rules[r["fence_rule"]] = rules.get(r["fence_rule"], 0) + 1
    print("fenced by: " + (", ".join(f"{k} {v}" for k, v in sorted(rules.items())) or "-"))


if __name__ == "__main__":
    main()
