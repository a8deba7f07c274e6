"""Raft commit latency and throughput through the PEER LINKS of 3 gateway node processes, next to PySyncObj.

    python -m bench.cluster_commit [--ops N] [--pipelined M] [--batch B] [--inflight K] [--http-seconds S]

Garrison side: 3 real nodes (``python -m supervisors.cli run TOPOLOGY --node gw-N``), each with its Raft
replica (``cluster: true``, fsync on: every Ready, with the apply of what it commits, is one durable LMDB
transaction) and its peer gateway process (mutual-TLS links on loopback, the HTTP API; the replica reaches
it over ``raft.sock``, see ``actors/raft/gateway_link.py``); nothing else runs in them. Every process started
here is stopped by PID (and the node's session). Cases:

- ``replica_serial [on leader|on follower]``: append ONE incident to that node's ``incidents/proposed``
  (durable), wait until it appears in the leader's ``incidents/committed`` (applied, fsynced, published),
  repeat. t0 = the append returned; t1 = the benchmark saw it (woken by the doorbell of the leader's stream). A follower forwards
  the proposal to the leader over its peer link: one more round trip.
- ``replica_pipelined``: incidents appended to the leader's ``incidents/proposed`` in batches of B while at
  most K batches are uncommitted; throughput = incidents / (first append -> last seen committed). The
  default 10,000 commits are >= 2 s of work for either side, so both pay their steady-state costs:
  garrison's compaction every 1,000 entries, and PySyncObj's log compaction (its default
  ``logCompactionMinEntries`` is 5,000), stalls and re-elections. The old default of 2,000 was ~0.5 s, a
  burst that ended before PySyncObj's first compaction: 1.2x there, ~2.2x over 10,000 on this machine.
- ``http_serial``: ``POST /v1/incidents`` to the leader's API, one client, a request waits for its 201
  (committed); ``http_16_clients``: 16 concurrent clients for ``--http-seconds``.

PySyncObj side (same run, after the garrison nodes are stopped): 3 ``SyncObj`` processes on loopback
(``bench.raft_commit_pysyncobj``) with its defaults and with ``appendEntriesUseBatch=False``: sync commits
one at a time on the leader, and async commits under the same admission rule. PySyncObj never fsyncs.

Targets (issue 9): serial commit p50 <= 2x PySyncObj's best config; pipelined commits/s >= 2x its best. The
figures are reported as measured, with the load average (the machine is shared) and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from actors.eventlog import EventLog
from actors.raft.node_keys import load_or_create_signing_key, public_key_b64
from actors.streams import COMMITTED_INCIDENTS, PROPOSED_INCIDENTS
from bench.raft_commit import (
    CaseResult,
    CommittedWatcher,
    durable_commit_probe,
    incident,
    pipelined_appends,
    run_pysyncobj,
)
from bench.restart_latency import BenchError, summarize
from bench.scratch import run_in_scratch
from supervisors.certs import ensure_cluster_certs
from supervisors.client import ControlError, connect
from supervisors.thespian_env import free_peer_and_api_ports, processes_in_session

REPO = Path(__file__).resolve().parents[1]
GATEWAYS = ("gw-1", "gw-2", "gw-3")
REPLICA_PATH = "root/incident-log"
START_WAIT_S = 120.0
LEADER_WAIT_S = 60.0
WARMUP_OPS = 20


def gateway_tree(tick_s: float, election_ticks: int) -> dict[str, Any]:
    """A gateway reduced to what a commit needs: the Raft replica and the peer gateway (links + API)."""
    return {
        "id": "root",
        "strategy": "one_for_one",
        "intensity": 20,
        "period": 10,
        "children": [
            {
                "id": "incident-log",
                "actor": "actors.raft.replica.RaftReplicaActor",
                "args": {
                    "cluster": True,
                    "publish": True,
                    "tick_s": tick_s,
                    "election_ticks": election_ticks,
                },
                "backoff": {"min": 0.3, "max": 2},
            },
            {
                "id": "peer",
                "actor": "supervisors.peer.shell.PeerGatewayActor",
                "args": {"replica": REPLICA_PATH},
                "backoff": {"min": 0.2, "max": 2},
            },
        ],
    }


class BenchNode:
    """One node process; its JSON log goes to a file; stopped by PID and by the node's session."""

    def __init__(self, topology: Path, name: str, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_path
        cmd = [sys.executable, "-m", "supervisors.cli", "run", str(topology), "--node", name]
        with open(log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [*cmd, "--log-format", "json", "--duration", "3600"],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
                env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
            )
        self.read_upto = 0
        self.session: int | None = None

    def events(self, event: str) -> list[dict[str, Any]]:
        out = []
        with contextlib.suppress(FileNotFoundError), open(self.log_path, errors="replace") as f:
            for line in f:
                if line.startswith("{") and f'"{event}"' in line:
                    with contextlib.suppress(json.JSONDecodeError):
                        e = json.loads(line)
                        if e.get("event") == event:
                            out.append(e)
        return out

    def node_session(self) -> int | None:
        if self.session is None:
            started = self.events("node_started")
            if started and started[-1].get("session"):
                self.session = int(started[-1]["session"])
        return self.session

    def kill(self) -> None:
        """SIGKILL the launcher and every process of the node (a power cut, minus the disk)."""
        session = self.node_session()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for sid in {session, self.proc.pid} - {None, os.getsid(0)}:
            for pid in processes_in_session(int(sid)):  # type: ignore[arg-type]
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        self.kill()  # whatever is left


class BenchCluster:
    """3 gateway nodes on loopback with certificates and trusted keys, written under ``tmp``."""

    def __init__(self, tmp: Path, tick_s: float = 0.05, election_ticks: int = 15) -> None:
        self.tmp = tmp
        self.ports, self.api_ports = free_peer_and_api_ports(GATEWAYS)
        keys = {n: public_key_b64(load_or_create_signing_key(self.data_dir(n), n)) for n in GATEWAYS}
        ensure_cluster_certs(tmp / "certs", GATEWAYS)
        nodes = [
            {
                "name": n,
                "role": "gateway",
                "peer": f"127.0.0.1:{self.ports[n]}",
                "api": f"127.0.0.1:{self.api_ports[n]}",
                "data_dir": str(self.data_dir(n)),
                "tree": gateway_tree(tick_s, election_ticks),
            }
            for n in GATEWAYS
        ]
        cluster = {
            "certs_dir": "certs",
            "raft_members": list(GATEWAYS),
            "trusted_keys": keys,
            "heartbeat_ms": 100,
        }
        self.topology = tmp / "cluster.yaml"
        self.topology.write_text(yaml.safe_dump({"nodes": nodes, "cluster": cluster}))
        self.nodes: dict[str, BenchNode] = {}
        self.logs: dict[str, EventLog] = {}
        self.restarts = dict.fromkeys(GATEWAYS, 0)
        self.node_env: dict[str, dict[str, str]] = {}  # extra environment of a node's processes

    def data_dir(self, name: str) -> Path:
        return self.tmp / "data" / name

    def start(self, name: str) -> BenchNode:
        self.nodes[name] = BenchNode(self.topology, name, self.tmp / f"{name}.log", self.node_env.get(name))
        return self.nodes[name]

    def start_all(self) -> None:
        for name in GATEWAYS:
            self.start(name)

    def stop_all(self) -> None:
        for node in self.nodes.values():
            node.stop()
        self.close_logs()

    def close_logs(self) -> None:
        for log in self.logs.values():
            log.close()
        self.logs.clear()

    def log(self, name: str) -> EventLog:
        """The node's event log opened by the benchmark (one LMDB handle per process), next to the node."""
        if name not in self.logs:
            self.logs[name] = EventLog(self.data_dir(name) / "eventlog")
        return self.logs[name]

    def raft_status(self, name: str, timeout: float = 2.0) -> dict[str, Any] | None:
        """The node's replica status over its control socket; None while it does not answer."""
        try:
            with connect(data_dir=self.data_dir(name), timeout=timeout) as client:
                reply = client.ask(REPLICA_PATH, {"op": "raft_status"}, timeout=timeout)
        except (ControlError, OSError):
            return None
        return reply if isinstance(reply, dict) and "role" in reply else None

    def leader(self, among: tuple[str, ...] | list[str] = GATEWAYS) -> str | None:
        """The leader when every node of ``among`` answers and agrees on it, and it says it leads."""
        statuses = {n: self.raft_status(n) for n in among}
        if any(s is None for s in statuses.values()):
            return None
        views = {s["leader"] for s in statuses.values() if s is not None}
        if len(views) != 1:
            return None
        (lead,) = views
        if lead is None or lead not in statuses or statuses[lead]["role"] != "leader":  # type: ignore[index]
            return None
        return str(lead)

    def wait_for_leader(
        self, among: tuple[str, ...] | list[str] = GATEWAYS, timeout: float = LEADER_WAIT_S
    ) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in self.nodes.values():
                if node.name in among and node.proc.poll() is not None:
                    raise BenchError(f"node {node.name} exited ({node.proc.returncode}); see {node.log_path}")
            lead = self.leader(among)
            if lead is not None:
                return lead
            time.sleep(0.05)
        raise BenchError(f"no agreed leader among {list(among)} within {timeout}s; logs in {self.tmp}")


# -- garrison cases -----------------------------------------------------------------------------------


class Ids:
    def __init__(self) -> None:
        self.run = uuid.uuid4().hex[:8]
        self.n = 0

    def take(self, k: int, tag: str) -> list[str]:
        first, self.n = self.n, self.n + k
        return [f"bench-{self.run}-{tag}-{i}" for i in range(first, first + k)]


def replica_serial(
    c: BenchCluster,
    ids: Ids,
    proposer: str,
    leader: str,
    n: int,
    tag: str,
    spans: list[tuple[float, float]] | None = None,
) -> CaseResult:
    """``n`` commits one at a time; each one's (t0, t1) ``perf_counter`` pair goes to ``spans`` if given."""
    res = CaseResult()
    with CommittedWatcher(c.log(leader)) as watcher:
        began = time.perf_counter()
        for i, iid in enumerate(ids.take(n, tag)):
            c.log(proposer).append(PROPOSED_INCIDENTS, [incident(iid, i)])
            t0 = time.perf_counter()
            t1 = watcher.seen_at(iid)
            res.latencies_ms.append((t1 - t0) * 1e3)
            if spans is not None:
                spans.append((t0, t1))
        res.count, res.elapsed_s = n, time.perf_counter() - began
        return res


def replica_pipelined(
    c: BenchCluster, ids: Ids, leader: str, n: int, batch: int, inflight: int
) -> CaseResult:
    res = CaseResult()
    with CommittedWatcher(c.log(leader)) as watcher:
        pipelined_appends(c.log(leader), watcher, ids.take(n, "pipelined"), batch, inflight, res)
    return res


def api_incident(iid: str) -> dict[str, Any]:
    return {
        "incident_id": iid,
        "timestamp": time.time(),
        "type": "no2_leak",
        "source_node": "bench",
        "sensor": "s-1",
        "confidence": 0.9,
        "payload": {"value": 400.0, "unit": "ug/m3"},
    }


async def http_load(url: str, ids: Ids, clients: int, seconds: float | None, ops: int | None) -> CaseResult:
    """``clients`` clients POSTing one incident after the other (for ``seconds``, or ``ops`` each)."""
    import aiohttp

    res = CaseResult()
    errors: dict[int, int] = {}

    async def client(session: aiohttp.ClientSession, k: int, stop_at: float) -> None:
        i = 0
        while (ops is None or i < ops) and time.monotonic() < stop_at:
            (iid,) = ids.take(1, f"http{k}")
            i += 1
            t0 = time.perf_counter()
            async with session.post(url + "/v1/incidents", json=api_incident(iid)) as resp:
                await resp.read()
                if resp.status == 201:
                    res.latencies_ms.append((time.perf_counter() - t0) * 1e3)
                else:
                    errors[resp.status] = errors.get(resp.status, 0) + 1

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        started = time.monotonic()
        stop_at = started + (seconds if seconds is not None else 3600.0)
        await asyncio.gather(*(client(session, k, stop_at) for k in range(clients)))
        res.elapsed_s = time.monotonic() - started
    res.count = len(res.latencies_ms)
    if errors:
        res.stalled = f"non-201 answers: {errors}"
    return res


def run_garrison(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    c = BenchCluster(tmp)
    out: dict[str, Any] = {"results": {}, "load": {}}
    ids = Ids()
    try:
        c.start_all()
        leader = c.wait_for_leader(timeout=START_WAIT_S)
        follower = next(n for n in GATEWAYS if n != leader)
        out["leader"] = leader
        replica_serial(c, ids, leader, leader, WARMUP_OPS, "warm")
        cases = {
            "replica_serial [on leader]": lambda: replica_serial(c, ids, leader, leader, args.ops, "serial"),
            "replica_serial [on follower]": lambda: replica_serial(c, ids, follower, leader, args.ops, "fwd"),
            "replica_pipelined": lambda: replica_pipelined(
                c, ids, leader, args.pipelined, args.batch, args.inflight
            ),
            "http_serial": lambda: asyncio.run(
                http_load(f"http://127.0.0.1:{c.api_ports[leader]}", ids, 1, None, args.http_ops)
            ),
            "http_16_clients": lambda: asyncio.run(
                http_load(f"http://127.0.0.1:{c.api_ports[leader]}", ids, 16, args.http_seconds, None)
            ),
        }
        for name, case in cases.items():
            try:
                out["results"][f"garrison {name}"] = case()
            except BenchError as exc:
                out["results"][f"garrison {name}"] = CaseResult(stalled=str(exc))
                break
            out["load"][name] = round(os.getloadavg()[0], 2)
        out["final_status"] = {n: c.raft_status(n) for n in GATEWAYS}
        out["leader_after"] = c.leader()
        out["checks"] = check_logs(c, leader)
    finally:
        c.stop_all()
    return out


def check_logs(c: BenchCluster, leader: str) -> dict[str, Any]:
    """Every node published the same incidents in the same order, each once; terms seen during the run."""
    time.sleep(1.0)  # followers apply the last commit index with the next heartbeat
    published = {
        n: [r.payload["incident"]["incident_id"] for r in c.log(n).read(COMMITTED_INCIDENTS)]
        for n in GATEWAYS
    }
    lead = published[leader]
    terms = sorted({e.get("term") for n in c.nodes.values() for e in n.events("raft_role")} - {None})
    return {
        "committed_on_leader": len(lead),
        "duplicates_on_leader": len(lead) - len(set(lead)),
        "logs_identical": all(p == lead for p in published.values()),
        "terms_seen": terms,
        "entry_rejected": sum(len(n.events("entry_rejected")) for n in c.nodes.values()),
        "child_crashed": sum(len(n.events("child_crashed")) for n in c.nodes.values()),
    }


# -- report -------------------------------------------------------------------------------------------


def row_of(res: CaseResult) -> dict[str, Any]:
    row: dict[str, Any] = {"n": len(res.latencies_ms)}
    if res.latencies_ms:
        s = summarize(res.latencies_ms)
        row |= {"p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"], "mean_ms": s["mean_ms"]}
    if res.elapsed_s > 0 and res.count:
        row["throughput_per_s"] = round(res.count / res.elapsed_s, 1)
    if res.stalled:
        row["note"] = res.stalled
    return row


def ratios_of(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """garrison / PySyncObj's best config (the lower serial p50, the higher pipelined commits/s)."""
    pso_serial = [r["p50_ms"] for k, r in rows.items() if k.startswith("pysyncobj") and "sync_serial" in k]
    pso_tput = [r.get("throughput_per_s", 0) for k, r in rows.items() if k.endswith("async_pipelined")]
    out: dict[str, Any] = {}
    best_serial, best_tput = (min(pso_serial) if pso_serial else None), (max(pso_tput) if pso_tput else None)
    for name, r in rows.items():
        if not name.startswith("garrison"):
            continue
        if "serial" in name and best_serial and r.get("p50_ms"):
            out[f"{name} p50 / pysyncobj best sync p50"] = round(r["p50_ms"] / best_serial, 2)
        if ("pipelined" in name or "16_clients" in name) and best_tput and r.get("throughput_per_s"):
            out[f"{name} commits/s / pysyncobj best async commits/s"] = round(
                r["throughput_per_s"] / best_tput, 3
            )
    serial = rows.get("garrison replica_serial [on leader]", {}).get("p50_ms")
    tput = rows.get("garrison replica_pipelined", {}).get("throughput_per_s")
    out["target_serial_p50_le_2x"] = bool(serial and best_serial and serial <= 2 * best_serial)
    out["target_pipelined_ge_2x"] = bool(tput and best_tput and tput >= 2 * best_tput)
    return out


def print_table(rows: dict[str, dict[str, Any]]) -> None:
    print(f"{'case':<50}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}{'commits/s':>11}{'n':>7}")
    for name, r in rows.items():
        cells = "".join(f"{r[k]:>10.2f}" if k in r else f"{'-':>10}" for k in ("p50_ms", "p99_ms", "mean_ms"))
        tput = f"{r['throughput_per_s']:>11.1f}" if "throughput_per_s" in r else f"{'-':>11}"
        print(f"{name:<50}{cells}{tput}{r['n']:>7}")
        if "note" in r:
            print(f"#   ^ {r['note']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cluster_commit", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--ops", type=int, default=200, help="one-at-a-time commits per serial case")
    parser.add_argument("--pipelined", type=int, default=10000, help="commits in the pipelined case")
    parser.add_argument("--batch", type=int, default=100, help="incidents per append when pipelined")
    parser.add_argument("--inflight", type=int, default=2, help="uncommitted batches allowed")
    parser.add_argument("--http-ops", type=int, default=100, help="POSTs of the one-client HTTP case")
    parser.add_argument("--http-seconds", type=float, default=10.0, help="duration of the 16-client case")
    parser.add_argument("--skip-pysyncobj", action="store_true", help="garrison only (no ratios)")
    parser.add_argument("--keep", action="store_true", help="keep the data dir and node logs")
    args = parser.parse_args(argv)
    if min(args.ops, args.pipelined, args.batch, args.inflight, args.http_ops) < 1 or args.http_seconds <= 0:
        parser.error("counts must be >= 1 and --http-seconds > 0")
    load0 = os.getloadavg()
    began = time.monotonic()

    def both(tmp: Path) -> tuple[dict[str, float], dict[str, Any], dict[str, Any]]:
        probe = durable_commit_probe(tmp)
        garrison = run_garrison(args, tmp)
        pso: dict[str, Any] = {"results": {}, "notes": ["skipped (--skip-pysyncobj)"]}
        if not args.skip_pysyncobj:
            pso = run_pysyncobj(args)
        return probe, garrison, pso

    ran = run_in_scratch("garrison-bench-cluster-", args.keep, both)
    if ran is None:
        return 1
    probe, garrison, pso = ran
    rows = {name: row_of(res) for name, res in {**garrison["results"], **pso["results"]}.items()}
    ratios = ratios_of(rows)
    load1 = os.getloadavg()
    print(
        "# Raft commit through the peer links: 3 garrison gateway nodes (fsync on, mTLS on loopback) vs "
        "PySyncObj 0.3.17, 3 processes (NO fsync)"
    )
    print(
        f"# serial: {args.ops} one at a time; pipelined: {args.pipelined} in batches of {args.batch}, at most "
        f"{args.inflight} batches uncommitted; http: {args.http_ops} serial POSTs, 16 clients for {args.http_seconds}s"
    )
    print_table(rows)
    print("# ratios (garrison / PySyncObj best; serial: lower is better; commits/s: higher is better):")
    for k, v in ratios.items():
        print(f"#   {k}: {v}")
    print(f"# durable 1-record LMDB commit on this disk before the run: {probe}")
    print(
        f"# garrison leader {garrison['leader']} (after: {garrison['leader_after']}); checks {garrison['checks']}"
    )
    for note in pso["notes"]:
        print(f"# {note}")
    print(
        f"# load average 1/5/15 at start {[round(x, 2) for x in load0]}, after each garrison case "
        f"{garrison['load']}, at end {[round(x, 2) for x in load1]} on {os.cpu_count()} CPUs; "
        f"wall time {time.monotonic() - began:.0f}s"
    )
    result = {
        "bench": "cluster_commit",
        "ops": args.ops,
        "pipelined": args.pipelined,
        "batch": args.batch,
        "inflight": args.inflight,
        "cases": rows,
        "ratios": ratios,
        "garrison_checks": garrison["checks"],
        "pysyncobj_fsync": False,
        "durable_commit_probe": probe,
        "load_avg_start": [round(x, 2) for x in load0],
        "load_avg_end": [round(x, 2) for x in load1],
        "load_avg_after_case": garrison["load"],
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
