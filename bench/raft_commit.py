"""Commit latency and throughput of a 3-replica garrison Raft cluster, next to PySyncObj, in one run.

    python -m bench.raft_commit [--ops N] [--pipelined M] [--batch B] [--inflight K] [--keep]

Garrison side: the real ``Supervisor`` with three ``RaftReplicaActor`` children ``gw1..gw3`` (``gw1``
publishes) on ``multiprocTCPBase``, loopback-only, fsync on (every replica persists each Ready in one durable
LMDB transaction; the publisher applies in another). Cases, each run twice: with ``gw1`` (the publisher) as
the leader, and after a leadership transfer to ``gw2`` (the publisher is then a follower):

- ``proposed_serial``: the product's path. Append ONE incident to ``incidents/proposed`` (``EventLog.append``,
  durable), wait until it appears in ``incidents/committed``, repeat. t0 = the append returned (the record
  is visible to the replica); t1 = the benchmark saw the committed record (woken by the stream's doorbell).
- ``propose_entry_serial``: ``ProposeEntry(signed_batch(...)[0])`` (a v2 entry, as replicas propose) sent by
  the benchmark's ActorSystem straight to the leader (no wait for the publisher's next tick), t0 = before
  ``tell``, t1 as above.
- ``proposed_pipelined``: incidents appended to ``incidents/proposed`` in batches of B (one append each)
  while at most K batches are not yet committed; per-incident latency = its batch's append returned -> seen
  committed; throughput = incidents / (first append -> last seen committed).
Also from the replicas' JSON logs (same wall clock): t0 -> the leader's ``incident_committed`` log line (its
apply is durable by then), which excludes the publisher's lag and the benchmark's poll.

PySyncObj side (after the garrison cluster is shut down, same process run): 3 ``SyncObj`` replicas in 3
processes on loopback, a replicated dict of the same incident records; sync commits one at a time on the
leader (p50/p99), and the same pipelined admission rule (B per batch, at most K batches outstanding) with
async commits; with its defaults and with ``appendEntriesUseBatch=False``. PySyncObj does NOT fsync (its
log is in memory): it is the cheaper guarantee.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import os
import select
import shutil
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from thespian.actors import ActorSystem

from actors.eventlog import EventLog, open_event_log
from actors.messages import (
    ChildSpawned,
    ChildStarted,
    Configure,
    Location,
    TreeStatus,
    TreeStatusRequest,
    WhereIs,
)
from actors.raft.node_keys import load_or_create_signing_key
from actors.raft.replica import (
    ProposeEntry,
    RaftStatus,
    RaftStatusRequest,
    TransferLeadership,
    signed_batch,
)
from actors.streams import COMMITTED_INCIDENTS, PROPOSED_INCIDENTS
from actors.wakeups import Inbox, wake_dir
from bench.raft_commit_pysyncobj import PySyncObjBenchError, PySyncObjCluster
from bench.restart_latency import BenchError, Mailbox, read_log_events, stderr_to, summarize
from supervisors.spec import Restart, Strategy, SupervisorSpec, WorkerSpec
from supervisors.supervisor import SUPERVISOR_CLASS
from supervisors.thespian_env import (
    SYSTEM_BASE,
    free_loopback_port,
    prepare_environment,
    processes_in_session,
)

NODE = "bench"
REPLICAS = ("gw1", "gw2", "gw3")
PUBLISHER = "gw1"
POLL_S = 0.05  # the committed watcher's safety poll: its doorbell wakes it
COMMIT_WAIT_S = 20.0
LEADER_WAIT_S = 30.0
WARMUP_OPS = 20
GARRISON_CASES = ("proposed_serial", "propose_entry_serial", "proposed_pipelined")
PYSYNCOBJ_CONFIGS = {"pysyncobj_default": {}, "pysyncobj_no_batch": {"appendEntriesUseBatch": False}}


def incident(incident_id: str, seq: int) -> dict[str, Any]:
    """An incident record shaped like ``actors.pipeline.inference.InferenceActor._incident`` makes them."""
    return {
        "incident_id": incident_id,
        "timestamp": 1_700_000_000.0 + seq,
        "type": "NO2_leak",
        "source_node": NODE,
        "sensor": f"S{seq % 5 + 1}",
        "confidence": 0.9731,
        "payload": {
            "reading": {"value": 87.25, "unit": "ppb", "ts": 1_700_000_000.0 + seq},
            "location": [160.0, 170.0],
            "pollutant": "NO2",
            "model_version": "1.0.0",
            "degraded": False,
            "ingested_at": time.time(),
        },
    }


@dataclass
class CaseResult:
    latencies_ms: list[float] = field(default_factory=list)
    leader_apply_ms: list[float] = field(default_factory=list)  # from the leader's log lines
    sent_wall: dict[str, float] = field(default_factory=dict)  # incident_id -> wall time of t0
    count: int = 0
    elapsed_s: float = 0.0
    stalled: str = ""  # why the case stopped early (the cluster stopped committing)

    def throughput(self) -> float:
        return self.count / self.elapsed_s if self.elapsed_s > 0 else 0.0


class CommittedWatcher:
    """Watches ``incidents/committed`` from the benchmark process: when each incident became visible. Woken
    by the stream's doorbell (a FIFO the replica rings after each commit, as any consumer of the node is:
    ``actors/wakeups.py``), with a ``POLL_S`` safety poll. It used to poll every 0.5 ms: the benchmark
    process then took ~13 % of a core while pipelining (~9 % woken by the doorbell, its own appends
    included) on this 2-core machine shared with the nodes; PySyncObj's side counts commits by callbacks
    inside its leader, with no process polling beside it."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        # subscribe before reading: a commit after this read rings the FIFO
        self.inbox = Inbox(wake_dir(log.path.parent), COMMITTED_INCIDENTS, f"bench-watcher.{os.getpid()}")
        self.after = log.last_seq(COMMITTED_INCIDENTS)

    def wait_until(self, done: Any, on_seen: Any) -> None:
        """Call ``on_seen(incident_id, perf_counter_time)`` for every newly committed incident until
        ``done()`` holds."""
        deadline = time.monotonic() + COMMIT_WAIT_S
        while not done():
            self.inbox.drain()  # before the read: a ring after it is for records this read may miss
            records = self.log.read(COMMITTED_INCIDENTS, after=self.after)
            now = time.perf_counter()
            for rec in records:
                self.after = rec.seq
                on_seen(rec.payload["incident"]["incident_id"], now)
            if records:
                continue
            if time.monotonic() > deadline:
                raise BenchError(f"nothing more committed within {COMMIT_WAIT_S}s")
            select.select([self.inbox.fd], [], [], POLL_S)

    def seen_at(self, incident_id: str) -> float:
        """The perf_counter time at which ``incident_id`` was seen committed (waits for it)."""
        seen: list[float] = []
        self.wait_until(lambda: bool(seen), lambda got, t: seen.append(t) if got == incident_id else None)
        return seen[0]

    def __enter__(self) -> CommittedWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.inbox.close()
        with contextlib.suppress(OSError):
            os.unlink(self.inbox.path)  # no FIFO left for the replica to ring


def pipelined_appends(
    log: EventLog, watcher: CommittedWatcher, ids: list[str], batch: int, inflight: int, res: CaseResult
) -> None:
    """Append the incidents ``ids`` to ``log``'s ``incidents/proposed`` in batches of ``batch``, the next once
    at most ``inflight - 1`` batches' worth is uncommitted; each incident's latency is from its append to the
    watcher seeing it committed. Sets ``res.count`` and ``res.elapsed_s`` (first append -> last seen)."""
    appended_at: dict[str, float] = {}
    outstanding: set[str] = set()

    def seen(iid: str, t: float) -> None:
        if iid in outstanding:
            outstanding.discard(iid)
            res.latencies_ms.append((t - appended_at[iid]) * 1e3)

    began = time.perf_counter()
    for lo in range(0, len(ids), batch):
        chunk = ids[lo : lo + batch]
        watcher.wait_until(lambda: len(outstanding) <= (inflight - 1) * batch, seen)
        log.append(PROPOSED_INCIDENTS, [incident(iid, lo + i) for i, iid in enumerate(chunk)])
        t0, wall = time.perf_counter(), time.time()
        for iid in chunk:
            appended_at[iid], res.sent_wall[iid] = t0, wall
        outstanding.update(chunk)
    watcher.wait_until(lambda: not outstanding, seen)
    res.count, res.elapsed_s = len(ids), time.perf_counter() - began


def start_tree(asys: Any, box: Mailbox, spec: SupervisorSpec, data_dir: Path, node: str) -> tuple[Any, int]:
    """Start the real root ``Supervisor`` with ``spec`` from the benchmark's ActorSystem; returns its
    address and its session id (every process of the tree is in it) once all its children run."""
    root = asys.createActor(SUPERVISOR_CLASS)
    asys.tell(
        root,
        Configure(
            node=node,
            supervisor="",
            child_id=spec.id,
            args={},
            data_dir=str(data_dir),
            log_format="json",
            incarnation=1,
            extra={"spec": spec},
        ),
    )
    spawned = box.wait_for(lambda m: isinstance(m, ChildSpawned), "ChildSpawned from the root")
    assert isinstance(spawned, ChildSpawned)
    box.wait_for(lambda m: isinstance(m, ChildStarted), "ChildStarted from the root", 60.0)
    return root, spawned.session


def kill_session_leftovers(session: int | None) -> list[int]:
    """SIGKILL what of the tree's session is still alive 1 s after ``shutdown()`` (its PIDs)."""
    if session is None or session == os.getsid(0):
        return []
    deadline = time.monotonic() + 1.0
    while (leftovers := processes_in_session(session)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return leftovers


class RaftBench:
    def __init__(self, asys: Any, data_dir: Path) -> None:
        self.asys = asys
        self.box = Mailbox(asys)
        self.data_dir = data_dir
        self.root_session: int | None = None
        self.addresses: dict[str, Any] = {}
        self.run_id = uuid.uuid4().hex[:8]
        self.counter = 0
        self.leader_history: list[str] = []

    # -- the cluster ----------------------------------------------------------------------------------

    def start_tree(self) -> None:
        spec = SupervisorSpec(
            id="bench",
            strategy=Strategy.ONE_FOR_ONE,
            intensity=10,
            period=60.0,
            children=tuple(
                WorkerSpec(
                    id=name,
                    actor="actors.raft.replica.RaftReplicaActor",
                    args={"peers": list(REPLICAS), "publish": name == PUBLISHER},
                    restart=Restart.PERMANENT,
                )
                for name in REPLICAS
            ),
        )
        self.root, self.root_session = start_tree(self.asys, self.box, spec, self.data_dir, NODE)
        for name in REPLICAS:
            self.asys.tell(self.root, WhereIs(name))
            loc = self.box.wait_for(lambda m, n=name: isinstance(m, Location) and m.child_id == n, "Location")
            assert isinstance(loc, Location)
            if loc.address is None:
                raise BenchError(f"replica {name} is not running after the tree started")
            self.addresses[name] = loc.address
        # the replicas created the node key while starting (one after another); the benchmark signs with it
        self.key = load_or_create_signing_key(self.data_dir, NODE)
        self.log = open_event_log(self.data_dir / "eventlog")

    def statuses(self) -> dict[str, RaftStatus]:
        out = {}
        for name, address in self.addresses.items():
            self.asys.tell(address, RaftStatusRequest())
            st = self.box.wait_for(
                lambda m, n=name: isinstance(m, RaftStatus) and m.replica == n, "RaftStatus"
            )
            assert isinstance(st, RaftStatus)
            out[name] = st
        return out

    def wait_for_leader(self, wanted: str | None = None) -> str:
        """The leader once every replica agrees on it and has applied everything committed."""
        deadline = time.monotonic() + LEADER_WAIT_S
        while time.monotonic() < deadline:
            sts = self.statuses()
            leaders = {s.leader for s in sts.values()}
            (leader,) = leaders if len(leaders) == 1 else (None,)
            if (
                leader is not None
                and sts[leader].role == "leader"
                and (wanted is None or leader == wanted)
                and sts[leader].commit >= 1
                and all(s.applied == s.commit for s in sts.values())
            ):
                self.leader_history.append(leader)
                return leader
            time.sleep(0.05)
        raise BenchError(f"no agreed leader{'' if wanted is None else ' ' + wanted} within {LEADER_WAIT_S}s")

    def make_leader(self, wanted: str) -> str:
        current = self.wait_for_leader()
        if current != wanted:
            self.asys.tell(self.addresses[current], TransferLeadership(wanted))
            current = self.wait_for_leader(wanted)
        return current

    def tree_status(self) -> TreeStatus:
        self.asys.tell(self.root, TreeStatusRequest())
        status = self.box.wait_for(lambda m: isinstance(m, TreeStatus), "TreeStatus from the root")
        assert isinstance(status, TreeStatus)
        return status

    # -- the cases ------------------------------------------------------------------------------------

    def _ids(self, n: int, tag: str) -> list[str]:
        first = self.counter
        self.counter += n
        return [f"bench-{self.run_id}-{tag}-{i}" for i in range(first, first + n)]

    def proposed_serial(self, res: CaseResult, n: int, tag: str) -> None:
        with CommittedWatcher(self.log) as watcher:
            began = time.perf_counter()
            for iid in self._ids(n, tag):
                record = incident(iid, self.counter)
                self.log.append(PROPOSED_INCIDENTS, [record])
                t0, res.sent_wall[iid] = time.perf_counter(), time.time()
                res.latencies_ms.append((watcher.seen_at(iid) - t0) * 1e3)
            res.count, res.elapsed_s = n, time.perf_counter() - began

    def propose_entry_serial(self, res: CaseResult, n: int, tag: str, leader: str) -> None:
        with CommittedWatcher(self.log) as watcher:
            address = self.addresses[leader]
            began = time.perf_counter()
            for iid in self._ids(n, tag):
                (entry,) = signed_batch(NODE, [incident(iid, self.counter)], self.key)
                t0, res.sent_wall[iid] = time.perf_counter(), time.time()
                self.asys.tell(address, ProposeEntry(entry))
                res.latencies_ms.append((watcher.seen_at(iid) - t0) * 1e3)
            res.count, res.elapsed_s = n, time.perf_counter() - began

    def proposed_pipelined(self, res: CaseResult, n: int, tag: str, batch: int, inflight: int) -> None:
        with CommittedWatcher(self.log) as watcher:
            pipelined_appends(self.log, watcher, self._ids(n, tag), batch, inflight, res)


def committed_ids(event: dict[str, Any]) -> list[Any]:
    """The incident ids an ``incident_committed`` line names: a Raft replica logs one line per applied batch
    (``incident_ids``), the single-node incident log one per incident (``incident_id``)."""
    return event.get("incident_ids") or [event.get("incident_id")]


def attach_leader_apply_times(
    results: dict[str, CaseResult], leaders: dict[str, str], events: list[dict[str, Any]]
) -> None:
    """t0 -> the leader's ``incident_committed`` log line, per incident (wall clocks of one machine)."""
    applied: dict[tuple[str, str], float] = {}
    for e in events:
        if e.get("event") == "incident_committed":
            for iid in committed_ids(e):
                applied.setdefault((e.get("replica"), iid), datetime.fromisoformat(e["ts"]).timestamp())
    for name, res in results.items():
        leader = leaders[name]
        for iid, wall in res.sent_wall.items():
            t = applied.get((leader, iid))
            if t is not None:
                res.leader_apply_ms.append((t - wall) * 1e3)


def durable_commit_probe(directory: Path, n: int = 100) -> dict[str, float]:
    """p50/p99 of one-record durable ``EventLog.append`` on the benchmark's filesystem, right now: the
    machine is shared and its fsync cost moved from 0.4 ms (perf anchors) to ~8 ms during this work, and
    every garrison commit takes several of them."""
    path = Path(tempfile.mkdtemp(prefix="fsync-probe-", dir=directory))
    try:
        log = EventLog(path / "eventlog")
        samples = []
        for i in range(n):
            t0 = time.perf_counter()
            log.append("probe", [{"i": i}])
            samples.append((time.perf_counter() - t0) * 1e3)
        log.close()
    finally:
        shutil.rmtree(path, ignore_errors=True)
    s = summarize(samples)
    return {"p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"]}


def tx_only_entries(path: Path) -> int:
    """How often a sender queued > 950 messages and stopped receiving (Thespian's own log)."""
    if not path.exists():
        return 0
    return path.read_text(errors="replace").count("Entering tx-only mode")


def run_garrison(args: argparse.Namespace, data_dir: Path, actor_log: Path) -> dict[str, Any]:
    log_defs = prepare_environment(data_dir)
    results: dict[str, CaseResult] = {}
    leaders: dict[str, str] = {}
    out: dict[str, Any] = {}
    with stderr_to(actor_log):
        asys = ActorSystem(SYSTEM_BASE, {"Admin Port": free_loopback_port()}, logDefs=log_defs)
        bench = RaftBench(asys, data_dir)
        try:
            bench.start_tree()
            bench.wait_for_leader()
            stalled = False
            for wanted in (PUBLISHER, "gw2"):
                leader = bench.make_leader(wanted)
                label = "leader=publisher" if leader == PUBLISHER else "leader!=publisher"
                bench.proposed_serial(CaseResult(), WARMUP_OPS, f"warm-{leader}")
                runs = {
                    "proposed_serial": lambda r, t: bench.proposed_serial(r, args.ops, t),
                    "propose_entry_serial": lambda r, t, ld=leader: bench.propose_entry_serial(
                        r, args.ops, t, ld
                    ),
                    "proposed_pipelined": lambda r, t: bench.proposed_pipelined(
                        r, args.pipelined, t, args.batch, args.inflight
                    ),
                }
                for case, run in runs.items():
                    name = f"garrison {case} [{label}]"
                    results[name] = res = CaseResult()
                    leaders[name] = leader
                    try:
                        run(res, f"{case}-{leader}")
                    except BenchError as exc:
                        # keep what was measured; the cluster is not trusted for further cases
                        res.count, res.stalled = len(res.latencies_ms), str(exc)
                        stalled = True
                        break
                if stalled:
                    break
            try:
                out["final_status"] = {n: dataclasses.asdict(s) for n, s in bench.statuses().items()}
                out["restart_counts"] = {c["id"]: c["restarts_total"] for c in bench.tree_status().children}
            except BenchError as exc:
                out["final_status"] = out["restart_counts"] = f"no answer: {exc}"
        finally:
            with contextlib.suppress(Exception):
                asys.shutdown()
            out["leftovers_killed"] = len(kill_session_leftovers(bench.root_session))
    events = read_log_events(actor_log)
    attach_leader_apply_times(results, leaders, events)
    counts = collections.Counter(e.get("event", "?") for e in events)
    terms = sorted({e.get("term") for e in events if e.get("event") == "raft_role"} - {None})
    out["results"] = results
    out["leaders"] = leaders
    out["checks"] = {
        "entry_rejected": counts["entry_rejected"],
        "child_crashed": counts["child_crashed"],
        "incident_committed_log_lines": counts["incident_committed"],
        "terms_seen": terms,
        "thespian_tx_only_mode_entered": tx_only_entries(data_dir / "thespian-internal.log"),
    }
    return out


def run_pysyncobj(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"results": {}, "notes": []}
    run_id = uuid.uuid4().hex[:8]
    for config_name, conf in PYSYNCOBJ_CONFIGS.items():
        cluster = PySyncObjCluster.start(conf)
        try:
            leader = cluster.wait_for_leader()
            warm = [(f"w-{run_id}-{config_name}-{i}", incident(f"w{i}", i)) for i in range(5)]
            cluster.ask(leader, "sync", warm)
            # a default-config sync commit waits for the 0.1 s appendEntriesPeriod: fewer of them
            n_sync = args.ops if conf else min(args.ops, 100)
            records = [(f"s-{run_id}-{config_name}-{i}", incident(f"s{i}", i)) for i in range(n_sync)]
            t0 = time.perf_counter()
            sync_lat = cluster.ask(leader, "sync", records)
            sync = CaseResult(latencies_ms=sync_lat, count=n_sync, elapsed_s=time.perf_counter() - t0)
            records = [(f"p-{run_id}-{config_name}-{i}", incident(f"p{i}", i)) for i in range(args.pipelined)]
            piped = cluster.ask(leader, "pipelined", (records, args.batch, args.batch * args.inflight))
            pipelined = CaseResult(
                latencies_ms=piped["latencies_ms"], count=args.pipelined, elapsed_s=piped["elapsed_s"]
            )
            statuses = cluster.statuses()
            out["results"][f"{config_name} sync_serial"] = sync
            out["results"][f"{config_name} async_pipelined"] = pipelined
            out["notes"].append(
                f"{config_name}: conf {conf or 'defaults'}; leader {cluster.addresses[leader]}; terms at end "
                f"{[s['term'] for s in statuses]}; log lengths {[s['log_len'] for s in statuses]}; "
                f"async failures {piped['failures']}; CRITICAL '{'truncating already-applied'}' warnings "
                f"{sum(s['truncations'] for s in statuses)}"
            )
        finally:
            killed = cluster.stop()
            if killed:
                out["notes"].append(f"{config_name}: replica processes killed by pid after stop: {killed}")
    return out


def stats_of(res: CaseResult) -> dict[str, Any]:
    row: dict[str, Any] = {"n": len(res.latencies_ms)}
    if res.latencies_ms:
        s = summarize(res.latencies_ms)
        row |= {"p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"], "mean_ms": s["mean_ms"]}
    if res.leader_apply_ms:
        a = summarize(res.leader_apply_ms)
        row["leader_apply_p50_ms"], row["leader_apply_p99_ms"] = a["p50_ms"], a["p99_ms"]
    if res.stalled:
        row["stalled"] = res.stalled
    else:
        row["throughput_per_s"] = round(res.throughput(), 1)
    return row


def _cell(row: dict[str, Any], key: str, width: int, fmt: str = ".2f") -> str:
    value = row.get(key)
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{fmt}}"


def print_table(rows: dict[str, dict[str, Any]], ratios: dict[str, float]) -> None:
    header = f"{'case':<58}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'ops/s':>10}{'n':>6}"
    print(header + f"{'ldr p50':>9}{'ldr p99':>9}")
    for name, r in rows.items():
        cells = [_cell(r, k, 9) for k in ("p50_ms", "p99_ms", "mean_ms")]
        cells += [_cell(r, "throughput_per_s", 10, ".1f"), f"{r['n']:>6}"]
        cells += [_cell(r, k, 9) for k in ("leader_apply_p50_ms", "leader_apply_p99_ms")]
        print(f"{name:<58}{''.join(cells)}")
        if "stalled" in r:
            print(f"#   ^ STALLED after {r['n']} commits: {r['stalled']}")
    print("# ratios (garrison / PySyncObj; > 1 means garrison is slower for latency, faster for throughput):")
    for k, v in ratios.items():
        print(f"#   {k}: {v:.2f}")


def ratios_of(rows: dict[str, dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    pairs = {
        "serial_p50": ("p50_ms", "sync_serial"),
        "serial_p99": ("p99_ms", "sync_serial"),
        "pipelined_throughput": ("throughput_per_s", "async_pipelined"),
    }
    for gname, g in rows.items():
        if not gname.startswith("garrison"):
            continue
        for key, (metric, pcase) in pairs.items():
            if ("serial" in key) != ("serial" in gname):
                continue
            for pname in PYSYNCOBJ_CONFIGS:
                p = rows.get(f"{pname} {pcase}")
                if p and p.get(metric) and g.get(metric):
                    out[f"{gname} vs {pname} {key}"] = round(g[metric] / p[metric], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.raft_commit", description=__doc__.split("\n")[0])
    parser.add_argument("--ops", type=int, default=200, help="one-at-a-time commits per case (default 200)")
    parser.add_argument(
        "--pipelined", type=int, default=2000, help="pipelined commits per case (default 2000)"
    )
    parser.add_argument("--batch", type=int, default=100, help="incidents per append (default 100)")
    parser.add_argument("--inflight", type=int, default=2, help="uncommitted batches allowed (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir (logs)")
    args = parser.parse_args(argv)
    if min(args.ops, args.pipelined, args.batch, args.inflight) < 1:
        parser.error("--ops, --pipelined, --batch and --inflight must be >= 1")

    data_dir = Path(tempfile.mkdtemp(prefix="garrison-bench-raft-"))
    actor_log = data_dir / "actors.jsonl"
    load = os.getloadavg()[0]
    began = time.monotonic()
    ok = False
    try:
        probes = [durable_commit_probe(data_dir)]
        garrison = run_garrison(args, data_dir, actor_log)
        probes.append(durable_commit_probe(data_dir))
        pysyncobj = run_pysyncobj(args)
        ok = True
    except (BenchError, PySyncObjBenchError) as exc:
        print(f"benchmark failed: {exc}; actor logs in {actor_log}", file=sys.stderr)
        return 1
    finally:
        if ok and not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)

    rows = {name: stats_of(res) for name, res in {**garrison["results"], **pysyncobj["results"]}.items()}
    ratios = ratios_of(rows)
    print(
        f"# raft commit on {SYSTEM_BASE}: garrison 3 x RaftReplicaActor (fsync on) vs PySyncObj 0.3.17, 3 "
        "processes (NO fsync: in-memory log)"
    )
    print(
        f"# serial: {args.ops} one at a time; pipelined: {args.pipelined} in batches of {args.batch}, "
        f"at most {args.inflight} batches uncommitted; 'ldr' = t0 -> the leader's incident_committed log line"
    )
    print_table(rows, ratios)
    print(f"# durable 1-record LMDB commit (EventLog.append) on this disk, before / after garrison: {probes}")
    print(f"# garrison checks: {garrison['checks']}; restart counts {garrison['restart_counts']}")
    print(f"# garrison final raft status: {garrison['final_status']}")
    for note in pysyncobj["notes"]:
        print(f"# {note}")
    print(
        f"# load average at start {load:.2f}, at end {os.getloadavg()[0]:.2f}; wall time "
        f"{time.monotonic() - began:.1f}s; garrison processes killed after shutdown: {garrison['leftovers_killed']}"
    )
    result = {
        "bench": "raft_commit",
        "system_base": SYSTEM_BASE,
        "ops": args.ops,
        "pipelined": args.pipelined,
        "batch": args.batch,
        "inflight": args.inflight,
        "cases": rows,
        "ratios": ratios,
        "garrison_checks": garrison["checks"],
        "garrison_restart_counts": garrison["restart_counts"],
        "pysyncobj_fsync": False,
        "durable_commit_probe_before_after": probes,
        "load_avg_1m": round(load, 2),
    }
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
