"""CPU time per serial commit, by process role: garrison's 3 gateway nodes next to PySyncObj's 3 replicas.

    python -m bench.commit_cpu [--ops N] [--keep]

``bench.commit_hops`` says where a serial commit's *wall* time goes. This bench says how much *CPU* each
process spends on one: on a 2-core machine a commit that needs more CPU than its wall time allows is
CPU-bound, whatever its hops cost. Each process's utime + stime (``/proc/<pid>/stat``) is read before and
after ``--ops`` commits made one at a time on the leader (the same case as ``bench.cluster_commit``'s
``replica_serial on leader``), and the difference is divided by the number of commits.

Roles, from the nodes' own log events: ``replica`` (the pid of ``child_started child=incident-log``),
``gateway`` (``peer_gateway_started``: the exec'd peer gateway, its TLS links and the HTTP API), ``node
other`` (the launcher, Thespian's admin and logger, the root supervisor, the gateway's shell actor), each
on the leader and on the followers; ``client`` is this process (its append and its wait on the leader's
committed stream). PySyncObj (``appendEntriesUseBatch=False``, its best serial config; it never fsyncs)
runs the same number of sync commits on its leader in the same run, and its three processes are read the
same way. A process that exits while it is measured makes the run fail: its CPU would be lost.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from bench.cluster_commit import GATEWAYS, WARMUP_OPS, BenchCluster, Ids, replica_serial
from bench.mqtt_latency import cpu_seconds
from bench.raft_commit import incident
from bench.raft_commit_pysyncobj import PySyncObjCluster
from bench.restart_latency import BenchError
from bench.scratch import run_in_scratch
from supervisors.process_tree import process_exited
from supervisors.thespian_env import processes_in_session

PYSYNCOBJ_BEST_SERIAL = {"appendEntriesUseBatch": False}
T = TypeVar("T")


def snapshot(roles: Mapping[int, str]) -> dict[int, float]:
    """CPU seconds of each process of ``roles``; BenchError if one has exited (its CPU would be lost, and
    whatever replaced it is not measured)."""
    cpu = {pid: cpu_seconds(pid) for pid in roles}
    gone = [pid for pid, seconds in cpu.items() if seconds is None or process_exited(pid)]
    if gone:
        names = ", ".join(f"{pid} ({roles[pid]})" for pid in gone)
        raise BenchError(f"process {names} exited during the measurement")
    return {pid: seconds for pid, seconds in cpu.items() if seconds is not None}


def ms_per_op_by_role(
    roles: Mapping[int, str], before: Mapping[int, float], after: Mapping[int, float], ops: int
) -> dict[str, float]:
    """CPU milliseconds per operation, summed over the processes of each role, with a ``total``."""
    out: dict[str, float] = {}
    for pid, role in roles.items():
        out[role] = out.get(role, 0.0) + (after[pid] - before[pid]) * 1e3 / ops
    out["total"] = sum(out.values())
    return {role: round(ms, 3) for role, ms in out.items()}


def measure(roles: Mapping[int, str], ops: int, run: Callable[[], T]) -> tuple[dict[str, float], T]:
    """CPU per operation of every process in ``roles`` (and of this one, as ``client``) over ``run()``,
    and what ``run()`` returned."""
    me = os.getpid()
    roles = {**roles, me: "client"}
    before = snapshot(roles)
    ran = run()
    after = snapshot(roles)
    return ms_per_op_by_role(roles, before, after, ops), ran


def garrison_roles(c: BenchCluster, leader: str) -> dict[int, str]:
    """pid -> role of every live process of the three nodes, from their sessions and their log events."""
    roles: dict[int, str] = {}
    for name, node in c.nodes.items():
        side = "leader" if name == leader else "follower"
        session = node.node_session()
        if session is None:
            raise BenchError(f"node {name} logged no node_started with its session; see {node.log_path}")
        replicas = [e["pid"] for e in node.events("child_started") if e.get("child") == "incident-log"]
        replicas += [e["pid"] for e in node.events("child_restarted") if e.get("child") == "incident-log"]
        gateways = [e["pid"] for e in node.events("peer_gateway_started")]
        if not replicas or not gateways:
            raise BenchError(f"node {name} logged no replica or no peer gateway pid; see {node.log_path}")
        for pid in {*processes_in_session(session), node.proc.pid}:
            roles[pid] = f"{side} node other"
        roles[int(replicas[-1])] = f"{side} replica"
        roles[int(gateways[-1])] = f"{side} gateway"
    return roles


def run_garrison(ops: int, tmp: Path) -> tuple[str, dict[str, float], float]:
    """The leader, CPU ms per commit by role, and the commits' wall-time p50 in ms."""
    c = BenchCluster(tmp)
    ids = Ids()
    try:
        c.start_all()
        leader = c.wait_for_leader()
        replica_serial(c, ids, leader, leader, WARMUP_OPS, "warm")
        roles = garrison_roles(c, leader)
        figures, res = measure(roles, ops, lambda: replica_serial(c, ids, leader, leader, ops, "serial"))
    finally:
        c.stop_all()
    return leader, figures, statistics.median(res.latencies_ms)


def run_pysyncobj(ops: int) -> tuple[dict[str, float], float]:
    """CPU ms per commit by role, and the commits' wall-time p50 in ms."""
    cluster = PySyncObjCluster.start(dict(PYSYNCOBJ_BEST_SERIAL))
    try:
        leader = cluster.wait_for_leader()
        run_id = f"{os.getpid()}-{time.monotonic_ns()}"
        cluster.ask(leader, "sync", [(f"w-{run_id}-{i}", incident(f"w{i}", i)) for i in range(WARMUP_OPS)])
        roles = {
            int(p.pid): "leader replica" if i == leader else "follower replica"
            for i, p in enumerate(cluster.processes)
        }
        records = [(f"s-{run_id}-{i}", incident(f"s{i}", i)) for i in range(ops)]
        figures, latencies_ms = measure(roles, ops, lambda: cluster.ask(leader, "sync", records))
        return figures, statistics.median(latencies_ms)
    finally:
        cluster.stop()


def print_table(garrison: Mapping[str, float], pysyncobj: Mapping[str, float]) -> None:
    print(f"{'CPU ms per serial commit':<28}{'garrison':>10}{'PySyncObj':>11}")
    order = [r for r in garrison if r != "total"] + [r for r in pysyncobj if r not in garrison]
    for role in [*order, "total"]:
        g, p = garrison.get(role), pysyncobj.get(role)
        print(f"{role:<28}{'' if g is None else f'{g:.3f}':>10}{'' if p is None else f'{p:.3f}':>11}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.commit_cpu", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--ops", type=int, default=500, help="one-at-a-time commits on each side (default 500)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the data dirs and node logs")
    args = parser.parse_args(argv)
    if args.ops < 1:
        parser.error("--ops must be >= 1")
    load0 = os.getloadavg()

    def both(tmp: Path) -> tuple[tuple[str, dict[str, float], float], tuple[dict[str, float], float]]:
        return run_garrison(args.ops, tmp), run_pysyncobj(args.ops)

    ran = run_in_scratch("garrison-bench-cpu-", args.keep, both)
    if ran is None:
        return 1
    (leader, garrison, garrison_p50), (pysyncobj, pysyncobj_p50) = ran
    print(
        f"# {args.ops} serial commits on each side; garrison: 3 gateway nodes ({', '.join(GATEWAYS)}; leader "
        f"{leader}), fsync on, mTLS on loopback; PySyncObj 0.3.17: 3 processes, appendEntriesUseBatch=False, "
        "no fsync; follower rows sum both followers"
    )
    print_table(garrison, pysyncobj)
    ratio = garrison["total"] / pysyncobj["total"] if pysyncobj["total"] > 0 else float("inf")
    print(f"{'wall p50 ms per commit':<28}{garrison_p50:>10.3f}{pysyncobj_p50:>11.3f}")
    print(f"# garrison spends {ratio:.1f}x PySyncObj's CPU per serial commit")
    result: dict[str, Any] = {
        "bench": "commit_cpu",
        "ops": args.ops,
        "garrison_cpu_ms_per_commit": garrison,
        "pysyncobj_cpu_ms_per_commit": pysyncobj,
        "cpu_ratio": round(ratio, 2),
        "garrison_serial_p50_ms": round(garrison_p50, 3),
        "pysyncobj_serial_p50_ms": round(pysyncobj_p50, 3),
        "load_avg_start": [round(x, 2) for x in load0],
        "load_avg_end": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
