"""Where the milliseconds of one serial Raft commit go, hop by hop, next to PySyncObj's whole commit.

    python -m bench.commit_hops [--ops N] [--skip-pysyncobj] [--keep]

The serial case of ``bench.cluster_commit`` (3 gateway nodes on loopback, fsync on, mTLS peer links; ONE
incident appended to the leader's ``incidents/proposed``, then wait until it is in its
``incidents/committed``) with ``GARRISON_HOPTRACE`` set: one trace file per node, written by its replica,
its peer gateway and its event log (``actors/hoptrace.py``). Each commit's path is rebuilt from the stamps,
and every segment is attributed to what it is made of:

- ``hop``: a frame or a doorbell going from one process to the next (socket write, the receiver's wake-up,
  its loop handing the frame over; TLS for a gateway-to-gateway hop);
- ``work``: Raft and signing in one process (``work+hop`` where the segment also ends in another process);
- ``disk``: an LMDB commit, its fdatasyncs included (3 replicas on ONE disk here: they contend).

The quorum is the leader and its FIRST follower to answer: the path goes through that follower. Each stamp
costs one ``write`` (~5 us), ~20 per commit, so a traced commit is a little slower than an untraced one.

The point of the comparison: PySyncObj's commit is two process hops (leader -> follower -> leader) and no
disk. Garrison's has eight process hops in a row before any disk or Raft work (the client and the peer
gateway process each replica talks through: the shape issue 9 prescribes), so its hops alone are compared
with PySyncObj's whole serial commit measured in the same run.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import os
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.hoptrace import ENV
from bench.cluster_commit import (
    GATEWAYS,
    START_WAIT_S,
    WARMUP_OPS,
    BenchCluster,
    Ids,
    replica_serial,
)
from bench.raft_commit import run_pysyncobj
from bench.scratch import run_in_scratch

# (label, kind) of each segment of a commit's path, in path order
SEGMENTS: tuple[tuple[str, str], ...] = (
    ("client append -> leader replica woken (doorbell)", "hop"),
    ("leader: propose, sign, Ready -> its gateway has it", "work+hop"),
    ("leader gateway -> TLS -> follower gateway", "hop"),
    ("follower gateway -> follower replica", "hop"),
    ("follower: step, stage entry + apply", "work"),
    ("follower: LMDB commit (pages + fdatasync)", "disk"),
    ("follower: LMDB meta page fdatasync", "disk"),
    ("follower: ack -> its gateway has it", "work+hop"),
    ("follower gateway -> TLS -> leader gateway", "hop"),
    ("leader gateway -> leader replica", "hop"),
    ("leader: step, commit, stage apply", "work"),
    ("leader: LMDB apply commit (one fdatasync)", "disk"),
    ("leader: publish -> client sees it (doorbell)", "work+hop"),
)


class NodeTrace:
    """The stamps of one node's processes: for each event, its times in order. Event-log stamps (``L``)
    count only from the replica's processes (the peer gateway opens the node's log too)."""

    def __init__(self, lines: Sequence[str]) -> None:
        parsed: list[tuple[float, int, str]] = []
        for line in lines:
            at, process, event = line.rstrip("\n").split(" ", 2)
            parsed.append((float(at), int(process), event))
        replica_pids = {pid for _, pid, event in parsed if event.startswith("R ")}
        times: dict[str, list[float]] = defaultdict(list)
        for when, pid, event in parsed:
            if event.startswith("L ") and pid not in replica_pids:
                continue
            times[event].append(when)
        self.times = {event: sorted(ts) for event, ts in times.items()}

    def first(self, event: str, after: float) -> float:
        """The first ``event`` at or after ``after``; :class:`Missing` if there is none."""
        ts = self.times.get(event, [])
        i = bisect.bisect_left(ts, after)
        if i == len(ts):
            raise Missing(event)
        return ts[i]


class Missing(LookupError):
    """A stamp the path needs is absent (a retry, a re-election): that commit is left out."""


def commit_path(
    t0: float, t1: float, leader: str, traces: dict[str, NodeTrace]
) -> tuple[str, list[float]] | None:
    """The quorum follower and the 13 segment durations (ms, :data:`SEGMENTS` order) of the commit that
    began at ``t0`` and was seen at ``t1``; None when a stamp is missing or lies after ``t1``."""
    lead = traces[leader]
    try:
        woken = lead.first("R bell", t0)
        out = lead.first("G from_replica", woken)
        best: tuple[float, str, list[float]] | None = None
        for name, f in traces.items():
            if name == leader:
                continue
            at_gw = f.first(f"G from_peer {leader}", out)
            at_replica = f.first("R recv", at_gw)
            commit = f.first("L commit", at_replica)
            committed = f.first("L committed", commit)
            synced = f.first("L synced", committed)
            ack_out = f.first("G from_replica", f.first("R sent", synced))
            ack_at_gw = lead.first(f"G from_peer {name}", ack_out)
            ack_at_replica = lead.first("R recv", ack_at_gw)
            points = [at_gw, at_replica, commit, committed, synced, ack_out, ack_at_gw, ack_at_replica]
            if best is None or ack_at_replica < best[0]:
                best = (ack_at_replica, name, points)
        assert best is not None
        _, follower, fpoints = best
        apply = lead.first("L commit", fpoints[-1])
        applied = lead.first("L committed", apply)
    except Missing:
        return None
    points = [t0, woken, out, *fpoints, apply, applied, t1]
    if any(b < a for a, b in itertools.pairwise(points)):
        return None
    return follower, [(b - a) * 1e3 for a, b in itertools.pairwise(points)]


@dataclass
class Breakdown:
    segments: list[list[float]] = field(default_factory=lambda: [[] for _ in SEGMENTS])
    totals: list[float] = field(default_factory=list)
    followers: dict[str, int] = field(default_factory=dict)
    left_out: int = 0

    def add(self, t0: float, t1: float, leader: str, traces: dict[str, NodeTrace]) -> None:
        got = commit_path(t0, t1, leader, traces)
        if got is None:
            self.left_out += 1
            return
        follower, durations = got
        self.followers[follower] = self.followers.get(follower, 0) + 1
        for acc, d in zip(self.segments, durations, strict=True):
            acc.append(d)
        self.totals.append((t1 - t0) * 1e3)

    def p50(self, i: int) -> float:
        return statistics.median(self.segments[i])

    def by_kind(self) -> dict[str, float]:
        """Sum of the segments' p50s for each kind."""
        out: dict[str, float] = defaultdict(float)
        for i, (_, kind) in enumerate(SEGMENTS):
            out[kind] += self.p50(i)
        return {k: round(v, 3) for k, v in out.items()}


def trace_run(args: argparse.Namespace, tmp: Path) -> tuple[Breakdown, str, dict[str, float]]:
    """Start the traced cluster, commit ``args.ops`` incidents one at a time on the leader, stop it; the
    breakdown, the leader and the untraced-equivalent figures (p50 of the measured totals)."""
    c = BenchCluster(tmp)
    trace_files = {n: tmp / f"{n}.hoptrace" for n in GATEWAYS}
    c.node_env = {n: {ENV: str(path)} for n, path in trace_files.items()}
    ids = Ids()
    try:
        c.start_all()
        leader = c.wait_for_leader(timeout=START_WAIT_S)
        replica_serial(c, ids, leader, leader, WARMUP_OPS, "warm")
        spans: list[tuple[float, float]] = []
        res = replica_serial(c, ids, leader, leader, args.ops, "serial", spans=spans)
    finally:
        c.stop_all()
    traces = {n: NodeTrace(path.read_text().splitlines()) for n, path in trace_files.items()}
    out = Breakdown()
    for t0, t1 in spans:
        out.add(t0, t1, leader, traces)
    return out, leader, {"p50_ms": round(statistics.median(res.latencies_ms), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.commit_hops", description=__doc__.split("\n")[0])
    parser.add_argument("--ops", type=int, default=200, help="one-at-a-time commits (default 200)")
    parser.add_argument("--skip-pysyncobj", action="store_true", help="garrison only (no ratio)")
    parser.add_argument("--keep", action="store_true", help="keep the data dir, node logs and traces")
    args = parser.parse_args(argv)
    if args.ops < 1:
        parser.error("--ops must be >= 1")
    load0 = os.getloadavg()

    def both(tmp: Path) -> tuple[tuple[Breakdown, str, dict[str, float]], float | None]:
        traced = trace_run(args, tmp)
        if args.skip_pysyncobj:
            return traced, None
        pso = run_pysyncobj(argparse.Namespace(ops=args.ops, pipelined=100, batch=100, inflight=2))
        serial = [statistics.median(r.latencies_ms) for k, r in pso["results"].items() if "sync_serial" in k]
        return traced, min(serial)

    ran = run_in_scratch("garrison-bench-hops-", args.keep, both)
    if ran is None:
        return 1
    (hops, leader, traced), pso_p50 = ran
    if not hops.totals:
        print(f"benchmark failed: no commit's path could be rebuilt from the traces ({hops.left_out} tried)")
        return 1
    print(
        f"# one serial commit on the leader ({leader}), 3 gateway nodes, fsync on, mTLS on loopback: "
        f"p50 per segment over {len(hops.totals)} commits ({hops.left_out} left out: a stamp missing); "
        f"quorum follower {hops.followers}"
    )
    print(f"{'segment':<52}{'kind':>10}{'p50 ms':>9}{'p90 ms':>9}")
    for i, (label, kind) in enumerate(SEGMENTS):
        seg = sorted(hops.segments[i])
        print(f"{label:<52}{kind:>10}{hops.p50(i):>9.3f}{seg[int(len(seg) * 0.9)]:>9.3f}")
    kinds = hops.by_kind()
    total = statistics.median(hops.totals)
    print(f"{'sum of the p50s':<62}{sum(kinds.values()):>9.3f}")
    print(f"{'p50 of the whole commits (traced)':<62}{total:>9.3f}")
    print(f"# by kind (sum of p50s): {kinds}")
    result: dict[str, Any] = {
        "bench": "commit_hops",
        "ops": args.ops,
        "commits_traced": len(hops.totals),
        "left_out": hops.left_out,
        "segments_p50_ms": {label: round(hops.p50(i), 3) for i, (label, _) in enumerate(SEGMENTS)},
        "by_kind_ms": kinds,
        "traced_total_p50_ms": round(total, 3),
        "serial_p50_ms": traced["p50_ms"],
        "load_avg_start": [round(x, 2) for x in load0],
        "load_avg_end": [round(x, 2) for x in os.getloadavg()],
    }
    if pso_p50 is not None:
        hop_only = kinds.get("hop", 0.0)
        print(
            f"# PySyncObj 0.3.17 (3 processes, no fsync) best serial commit p50, same run: {pso_p50:.3f} ms; "
            f"the 2x target is {2 * pso_p50:.3f} ms"
        )
        print(
            f"# garrison's pure process hops alone (no disk, no Raft work): {hop_only:.3f} ms = "
            f"{hop_only / pso_p50:.2f}x PySyncObj's whole commit; the traced commit: {total / pso_p50:.2f}x"
        )
        result |= {
            "pysyncobj_best_serial_p50_ms": round(pso_p50, 3),
            "hops_over_pysyncobj": round(hop_only / pso_p50, 2),
        }
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
