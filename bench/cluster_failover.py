"""Leader failover on real processes: SIGKILL of the leader's node -> the first committed write, vs PySyncObj.

    python -m bench.cluster_failover [--kills 20] [--pso-retry 0.5] [--keep]

Garrison side: 3 gateway nodes on loopback (``bench.cluster_commit.BenchCluster``: Raft replica + peer
gateway per node, fsync on, default timing: 50 ms ticks, elections after 15-30 ticks, pre-vote and
check-quorum). Each round: wait until all three agree on a leader, SIGKILL the leader's node (launcher and
every process of its session: replica, gateway, supervisors), and at once append ONE incident to a
survivor's ``incidents/proposed`` (what its inference or its HTTP API does). Measured from the kill:
``new_leader`` = the survivors' control sockets both name a new leader; ``first_write`` = that incident is
in the survivor's ``incidents/committed`` (committed by the new leader, applied and fsynced). Then the
killed node is started again and must rejoin before the next round.

PySyncObj side (same run): 3 ``SyncObj`` processes (defaults: raftMinTimeout 0.4 s, raftMaxTimeout 1.4 s,
in-memory log); each round SIGKILLs the leader's process and a survivor retries ``put(sync=True,
timeout=--pso-retry)`` until one succeeds; ``first_write`` = kill -> that success. The killed replica is
started again (empty: its log is in memory) before the next round.

Target (issue 9): garrison's p50 <= 0.5x PySyncObj's. Reported as measured, with the load average.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from actors.streams import COMMITTED_INCIDENTS, PROPOSED_INCIDENTS
from bench.cluster_commit import GATEWAYS, BenchCluster
from bench.raft_commit import incident
from bench.raft_commit_pysyncobj import PySyncObjBenchError, _make_store
from bench.restart_latency import BenchError, summarize
from bench.scratch import run_in_scratch
from supervisors.thespian_env import LOOPBACK, free_loopback_ports

WRITE_WAIT_S = 60.0
REJOIN_WAIT_S = 120.0
POLL_S = 0.002


# -- garrison -----------------------------------------------------------------------------------------


def committed_ids_after(c: BenchCluster, node: str, after: int) -> list[str]:
    return [r.payload["incident"]["incident_id"] for r in c.log(node).read(COMMITTED_INCIDENTS, after=after)]


def garrison_round(c: BenchCluster, k: int, run: str) -> dict[str, Any]:
    leader = c.wait_for_leader(timeout=REJOIN_WAIT_S)
    survivors = [n for n in GATEWAYS if n != leader]
    writer = survivors[0]
    head = c.log(writer).last_seq(COMMITTED_INCIDENTS)
    iid = f"failover-{run}-{k}"
    victim = c.nodes[leader]
    launcher = victim.proc.pid
    t_kill = time.perf_counter()
    victim.kill()
    c.log(writer).append(PROPOSED_INCIDENTS, [incident(iid, k)])
    if victim.proc.poll() is None or _alive(launcher):
        raise BenchError(f"round {k}: {leader}'s launcher (pid {launcher}) is still alive after SIGKILL")
    new_leader_ms: float | None = None
    new_leader = None
    deadline = time.monotonic() + WRITE_WAIT_S
    while True:
        now = time.perf_counter()
        if new_leader_ms is None:
            lead = c.leader(survivors)
            if lead is not None and lead != leader:
                new_leader_ms, new_leader = (time.perf_counter() - t_kill) * 1e3, lead
        if iid in committed_ids_after(c, writer, head):
            write_ms = (now - t_kill) * 1e3
            break
        if time.monotonic() > deadline:
            raise BenchError(f"round {k}: the write on {writer} was not committed within {WRITE_WAIT_S}s")
        time.sleep(POLL_S)
    if new_leader is None:  # committed before our poll saw the leader: it exists by now
        new_leader = c.leader(survivors)
    # the killed node comes back (its LMDB handle in this process is closed first: the node owns it)
    if leader in c.logs:
        c.logs.pop(leader).close()
    c.start(leader)
    return {
        "killed": leader,
        "writer": writer,
        "new_leader": new_leader,
        "new_leader_ms": None if new_leader_ms is None else round(new_leader_ms, 1),
        "first_write_ms": round(write_ms, 1),
        "load_1m": round(os.getloadavg()[0], 2),
    }


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def run_garrison(kills: int, tmp: Path) -> dict[str, Any]:
    c = BenchCluster(tmp)
    run = uuid.uuid4().hex[:8]
    rounds: list[dict[str, Any]] = []
    try:
        c.start_all()
        for k in range(kills):
            rounds.append(garrison_round(c, k, run))
            print(f"# garrison round {k + 1}/{kills}: {rounds[-1]}", file=sys.stderr)
        final = c.wait_for_leader(timeout=REJOIN_WAIT_S)
        expected = sorted(f"failover-{run}-{k}" for k in range(kills))

        def verdict() -> dict[str, Any]:
            logs = {n: committed_ids_after(c, n, 0) for n in GATEWAYS}
            return {
                "final_leader": final,
                "every_write_on_every_node_once": all(
                    sorted(x for x in ids if x in expected) == expected for ids in logs.values()
                ),
                "logs_identical": len({tuple(ids) for ids in logs.values()}) == 1,
            }

        deadline = time.monotonic() + REJOIN_WAIT_S  # the node restarted last catches up meanwhile
        while not all((checks := verdict()).values()) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        c.stop_all()
    return {"rounds": rounds, "checks": checks}


# -- PySyncObj ----------------------------------------------------------------------------------------


def pso_replica(self_addr: str, partners: list[str], conf: dict[str, Any], conn: Any) -> None:
    """One PySyncObj replica process: ``status``, ``write`` (retry until a sync put succeeds), ``stop``."""
    store = _make_store(self_addr, partners, conf)
    while True:
        cmd, arg = conn.recv()
        if cmd == "status":
            conn.send({"is_leader": bool(store._isLeader()), "ready": bool(store.isReady())})
        elif cmd == "write":
            key, value, retry_s = arg
            tries = 0
            while True:
                tries += 1
                try:
                    store.put(key, value, sync=True, timeout=retry_s)
                    break
                except Exception:  # SyncObjException: no leader yet, timeout, ...: try again
                    continue
            conn.send({"tries": tries})
        elif cmd == "stop":
            store.destroy_synchronous()
            conn.send("stopped")
            return


class PsoCluster:
    """Three PySyncObj processes; every process started here is stopped by its PID."""

    def __init__(self) -> None:
        self.ctx = mp.get_context("spawn")  # a clean interpreter: nothing of this process inherited
        self.addresses = [f"{LOOPBACK}:{port}" for port in free_loopback_ports(3)]
        self.procs: list[Any] = [None] * 3
        self.pipes: list[Any] = [None] * 3
        for i in range(3):
            self.start(i)

    def start(self, i: int) -> None:
        ours, theirs = self.ctx.Pipe()
        partners = [a for a in self.addresses if a != self.addresses[i]]
        proc = self.ctx.Process(
            target=pso_replica, args=(self.addresses[i], partners, {}, theirs), daemon=True
        )
        proc.start()
        self.procs[i], self.pipes[i] = proc, ours

    def ask(self, i: int, cmd: str, arg: Any = None, timeout: float = WRITE_WAIT_S) -> Any:
        self.pipes[i].send((cmd, arg))
        if not self.pipes[i].poll(timeout):
            raise PySyncObjBenchError(f"PySyncObj replica {i} did not answer {cmd!r} within {timeout}s")
        return self.pipes[i].recv()

    def wait_for_leader(self) -> int:
        deadline = time.monotonic() + REJOIN_WAIT_S
        while time.monotonic() < deadline:
            statuses = [self.ask(i, "status") for i in range(3)]
            leaders = [i for i, s in enumerate(statuses) if s["is_leader"]]
            if len(leaders) == 1 and all(s["ready"] for s in statuses):
                return leaders[0]
            time.sleep(0.05)
        raise PySyncObjBenchError(f"no PySyncObj leader with every replica ready within {REJOIN_WAIT_S}s")

    def kill(self, i: int) -> None:
        pid = self.procs[i].pid
        os.kill(pid, signal.SIGKILL)
        self.procs[i].join(timeout=5)
        self.pipes[i].close()

    def stop(self) -> list[int]:
        killed = []
        for i, proc in enumerate(self.procs):
            with contextlib.suppress(Exception):
                self.ask(i, "stop", timeout=5)
            proc.join(timeout=5)
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGKILL)
                proc.join(timeout=2)
                killed.append(proc.pid)
        return killed


def run_pysyncobj(kills: int, retry_s: float) -> dict[str, Any]:
    cluster = PsoCluster()
    rounds: list[dict[str, Any]] = []
    try:
        cluster.ask(cluster.wait_for_leader(), "write", ("warm", incident("warm", 0), retry_s))
        for k in range(kills):
            leader = cluster.wait_for_leader()
            writer = (leader + 1) % 3
            t_kill = time.perf_counter()
            cluster.kill(leader)
            reply = cluster.ask(writer, "write", (f"failover-{k}", incident(f"f{k}", k), retry_s))
            write_ms = (time.perf_counter() - t_kill) * 1e3
            rounds.append({"first_write_ms": round(write_ms, 1), "tries": reply["tries"]})
            print(f"# pysyncobj round {k + 1}/{kills}: {rounds[-1]}", file=sys.stderr)
            cluster.start(leader)
    finally:
        killed = cluster.stop()
    return {"rounds": rounds, "killed_after_stop": killed}


# -- report -------------------------------------------------------------------------------------------


def stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    s = summarize(values)
    return {"n": s["n"], "p50_ms": s["p50_ms"], "max_ms": s["max_ms"], "mean_ms": s["mean_ms"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cluster_failover", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--kills", type=int, default=20, help="leader kills on each side (default 20)")
    parser.add_argument(
        "--pso-retry",
        type=float,
        default=0.5,
        help="PySyncObj put(sync=True) timeout per try (default 0.5 s)",
    )
    parser.add_argument("--skip-pysyncobj", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the data dir and node logs")
    args = parser.parse_args(argv)
    if args.kills < 1 or args.pso_retry <= 0:
        parser.error("--kills must be >= 1 and --pso-retry > 0")
    load0 = os.getloadavg()
    began = time.monotonic()

    def both(tmp: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        garrison = run_garrison(args.kills, tmp)
        pso: dict[str, Any] = {"rounds": [], "killed_after_stop": []}
        if not args.skip_pysyncobj:
            pso = run_pysyncobj(args.kills, args.pso_retry)
        return garrison, pso

    ran = run_in_scratch("garrison-bench-failover-", args.keep, both)
    if ran is None:
        return 1
    garrison, pso = ran
    load1 = os.getloadavg()
    g_write = stats([r["first_write_ms"] for r in garrison["rounds"]])
    g_leader = stats([r["new_leader_ms"] for r in garrison["rounds"] if r["new_leader_ms"] is not None])
    p_write = stats([r["first_write_ms"] for r in pso["rounds"]])
    ratio = round(g_write["p50_ms"] / p_write["p50_ms"], 2) if p_write.get("p50_ms") else None
    print("# leader failover on real processes: SIGKILL of the leader -> first committed write on a survivor")
    print(f"{'side':<44}{'p50 ms':>10}{'max ms':>10}{'mean ms':>10}{'n':>5}")
    for name, s in (
        ("garrison kill -> first committed write", g_write),
        ("garrison kill -> new leader (control sockets)", g_leader),
        (f"pysyncobj kill -> first sync write (retry {args.pso_retry}s)", p_write),
    ):
        cells = "".join(f"{s[k]:>10.1f}" if k in s else f"{'-':>10}" for k in ("p50_ms", "max_ms", "mean_ms"))
        print(f"{name:<44}{cells}{s['n']:>5}")
    print(
        f"# ratio garrison / PySyncObj first-write p50: {ratio} (target <= 0.5: {bool(ratio and ratio <= 0.5)})"
    )
    print(f"# garrison checks: {garrison['checks']}")
    print(
        f"# load average 1/5/15 at start {[round(x, 2) for x in load0]}, at end {[round(x, 2) for x in load1]} "
        f"on {os.cpu_count()} CPUs; wall time {time.monotonic() - began:.0f}s"
    )
    result = {
        "bench": "cluster_failover",
        "kills": args.kills,
        "garrison_first_write": g_write,
        "garrison_new_leader": g_leader,
        "pysyncobj_first_write": p_write,
        "pysyncobj_retry_s": args.pso_retry,
        "ratio_first_write_p50": ratio,
        "target_le_0_5x": bool(ratio and ratio <= 0.5),
        "garrison_checks": garrison["checks"],
        "garrison_rounds": garrison["rounds"],
        "pysyncobj_rounds": pso["rounds"],
        "load_avg_start": [round(x, 2) for x in load0],
        "load_avg_end": [round(x, 2) for x in load1],
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
