"""Restart latency of a garrison supervisor, next to bare Thespian actor creation, in one run.

    python -m bench.restart_latency [--trials N] [--warmup W] [--settle S] [--keep]

Cases (interleaved round-robin, one trial of each per round, so that machine load drifts hit all alike):
- ``garrison_stateless``: the benchmark sends ``crash`` to a child of the real ``Supervisor`` at t0; the
  child raises, reports ``ChildFailed``, is stopped, the policy decides (and persists its history), a fresh
  instance is created and configured; it announces itself to the benchmark, which pings it; t0 -> pong.
- ``garrison_stateful``: the same with a child that has persisted state, so each fresh instance also opens
  the node's event log and replays its (empty) stream, as a real garrison actor does.
- ``bare_in_actor``: t0 -> a plain Thespian parent actor ``createActor``s a plain child, which announces
  itself the same way; ping; pong (the same discovery path as the garrison cases).
- ``bare_outside``: t0 -> ``ActorSystem.createActor`` of a plain actor from this process; ping; pong.

All on ``multiprocTCPBase``, loopback-only (``supervisors.thespian_env``). The actors' JSON logs go to a
file in the temporary data dir and are checked afterwards (one crash and one restart per garrison trial, no
escalation).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from thespian.actors import ActorExitRequest, ActorSystem

from actors.messages import (
    ChildSpawned,
    ChildStarted,
    Configure,
    RootEscalated,
    TreeStatus,
    TreeStatusRequest,
)
from bench.bench_actors import CRASH, PING, PONG, WHOAMI, Ready, Spawn
from supervisors.spec import Restart, Strategy, SupervisorSpec, WorkerSpec
from supervisors.supervisor import SUPERVISOR_CLASS
from supervisors.thespian_env import (
    SYSTEM_BASE,
    free_loopback_port,
    prepare_environment,
    processes_in_session,
)

WAIT_S = 10.0
GARRISON_CHILDREN = ("stateless", "stateful")
CASES = ("garrison_stateless", "garrison_stateful", "bare_in_actor", "bare_outside")
BASELINES = ("bare_in_actor", "bare_outside")
PHASE_LABELS = {
    "child_crashed": "  t0 -> restart decided (log)",
    "ready": "  t0 -> announcement received",
    "child_restarted": "  t0 -> ChildStarted at sup. (log)",
}


class BenchError(Exception):
    """The benchmark could not complete a trial (timeout, escalation, missing answer)."""


class Mailbox:
    """Messages to the benchmark's external address, kept until a waiter asks for them (``ask`` would
    return whichever message comes first, e.g. a late announcement instead of the pong)."""

    def __init__(self, asys: Any) -> None:
        self.asys = asys
        self.kept: collections.deque[object] = collections.deque()

    def wait_for(self, match: Callable[[object], bool], what: str, timeout: float = WAIT_S) -> object:
        for msg in list(self.kept):
            if match(msg):
                self.kept.remove(msg)
                return msg
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self.asys.listen(left)
            if msg is None:
                continue
            if isinstance(msg, RootEscalated):
                raise BenchError(f"the root supervisor escalated ({msg.reason}); raise --intensity")
            if match(msg):
                return msg
            self.kept.append(msg)
        raise BenchError(f"no {what} within {timeout}s (kept unmatched: {list(self.kept)[:5]})")

    def ping(self, address: Any) -> None:
        self.asys.tell(address, PING)
        self.wait_for(lambda m: m == PONG, "pong")


@dataclass
class Samples:
    total_ms: list[float]
    ready_ms: list[float]  # t0 -> announcement received (garrison and bare_in_actor only)


def summarize(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values)
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p99_ms": round(float(np.percentile(arr, 99)), 3),
        "mean_ms": round(float(arr.mean()), 3),
        "max_ms": round(float(arr.max()), 3),
        "n": len(values),
    }


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Send this process's fd 2 (inherited by the Thespian admin and every actor) to ``path``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as f:
        os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


class RestartBench:
    def __init__(self, asys: Any, data_dir: Path, intensity: int, period: float) -> None:
        self.asys = asys
        self.box = Mailbox(asys)
        self.data_dir = data_dir
        self.intensity = intensity
        self.period = period
        self.root_session: int | None = None
        self.children: dict[str, Ready] = {}
        self.leftover_stats: list[str] = []
        self.crash_walls: dict[str, list[float]] = {name: [] for name in GARRISON_CHILDREN}

    def start_tree(self) -> None:
        whoami = self.asys.createActor("bench.bench_actors.WhoAmI")
        me = self.asys.ask(whoami, WHOAMI, WAIT_S)
        if me is None:
            raise BenchError("WhoAmI did not answer: cannot learn the benchmark's own address")
        self.me = me
        self.bare_parent = self.asys.createActor("bench.bench_actors.BareParent")
        spec = SupervisorSpec(
            id="bench",
            strategy=Strategy.ONE_FOR_ONE,
            intensity=self.intensity,
            period=self.period,
            children=tuple(
                WorkerSpec(
                    id=name,
                    actor="bench.bench_actors.RestartProbe",
                    args={"announce_to": me, "stateful": name == "stateful"},
                    restart=Restart.PERMANENT,
                    # every trial sends the same ``crash`` message: without this, its third crash would
                    # quarantine it as poison and the next instance would skip it (no crash, no restart)
                    poison_after=10**9,
                )
                for name in GARRISON_CHILDREN
            ),
        )
        self.root = self.asys.createActor(SUPERVISOR_CLASS)
        self.asys.tell(
            self.root,
            Configure(
                node="bench",
                supervisor="",
                child_id="bench",
                args={},
                data_dir=str(self.data_dir),
                log_format="json",
                incarnation=1,
                extra={"spec": spec},
            ),
        )
        spawned = self.box.wait_for(lambda m: isinstance(m, ChildSpawned), "ChildSpawned from the root")
        assert isinstance(spawned, ChildSpawned)
        self.root_session = spawned.session
        self.box.wait_for(lambda m: isinstance(m, ChildStarted), "ChildStarted from the root", 30.0)
        for name in GARRISON_CHILDREN:
            self.children[name] = self._ready(name, 1)

    def _ready(self, tag: str, incarnation: int) -> Ready:
        msg = self.box.wait_for(
            lambda m: isinstance(m, Ready) and m.tag == tag and m.incarnation == incarnation,
            f"announcement of {tag} #{incarnation}",
        )
        assert isinstance(msg, Ready)
        return msg

    def garrison_restart(self, name: str) -> tuple[float, float]:
        old = self.children[name]
        self.crash_walls[name].append(time.time())
        t0 = time.perf_counter()
        self.asys.tell(old.address, CRASH)
        fresh = self._ready(name, old.incarnation + 1)
        t_ready = time.perf_counter()
        self.box.ping(fresh.address)
        t1 = time.perf_counter()
        self.children[name] = fresh
        return (t1 - t0) * 1e3, (t_ready - t0) * 1e3

    def bare_in_actor(self, trial: int) -> tuple[float, float]:
        t0 = time.perf_counter()
        self.asys.tell(self.bare_parent, Spawn(self.me, trial))
        fresh = self._ready("bare", trial)
        t_ready = time.perf_counter()
        self.box.ping(fresh.address)
        t1 = time.perf_counter()
        self.asys.tell(fresh.address, ActorExitRequest())
        return (t1 - t0) * 1e3, (t_ready - t0) * 1e3

    def bare_outside(self) -> float:
        t0 = time.perf_counter()
        address = self.asys.createActor("bench.bench_actors.Echo")
        self.box.ping(address)
        t1 = time.perf_counter()
        self.asys.tell(address, ActorExitRequest())
        return (t1 - t0) * 1e3

    def measure(self, case: str, trial: int) -> tuple[float, float | None]:
        if case.startswith("garrison_"):
            return self.garrison_restart(case.removeprefix("garrison_"))
        if case == "bare_in_actor":
            return self.bare_in_actor(trial)
        return self.bare_outside(), None

    def run(self, trials: int, warmup: int, settle_s: float) -> dict[str, Samples]:
        samples = {case: Samples([], []) for case in CASES}
        for trial in range(1, warmup + trials + 1):
            measured: dict[str, tuple[float, float | None]] = {}
            # rotate the order so that no case always follows the same one, and let the previous case's
            # exiting processes go away first (their teardown would otherwise land in the next span)
            shift = trial % len(CASES)
            for case in CASES[shift:] + CASES[:shift]:
                time.sleep(settle_s)
                measured[case] = self.measure(case, trial)
            if trial <= warmup:
                continue
            for case, (total, ready) in measured.items():
                samples[case].total_ms.append(total)
                if ready is not None:
                    samples[case].ready_ms.append(ready)
        return samples

    def tree_status(self) -> TreeStatus:
        self.asys.tell(self.root, TreeStatusRequest())
        status = self.box.wait_for(lambda m: isinstance(m, TreeStatus), "TreeStatus from the root")
        assert isinstance(status, TreeStatus)
        return status

    def kill_leftovers(self) -> list[int]:
        if self.root_session is None or self.root_session == os.getsid(0):
            return []
        # processes still exiting after shutdown() are given a moment before they count as left over
        deadline = time.monotonic() + 1.0
        while (leftovers := processes_in_session(self.root_session)) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in leftovers:
            with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
                self.leftover_stats.append(f.read()[:120])
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return leftovers


def read_log_events(path: Path) -> list[dict[str, Any]]:
    events = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                events.append(json.loads(line))
    return events


def phase_samples(
    events: list[dict[str, Any]], crash_walls: dict[str, list[float]], warmup: int
) -> dict[str, dict[str, list[float]]]:
    """Where a garrison restart spends its time, from the supervisor's log timestamps (same wall clock):
    t0 -> ``child_crashed`` (crash reported, old process exited, policy decided, history persisted) and
    t0 -> ``child_restarted`` (the fresh instance's ``ChildStarted`` reached the supervisor)."""
    out: dict[str, dict[str, list[float]]] = {}
    for name, walls in crash_walls.items():
        phases: dict[str, list[float]] = {}
        for event in ("child_crashed", "child_restarted"):
            stamps = sorted(
                datetime.fromisoformat(e["ts"]).timestamp()
                for e in events
                if e.get("event") == event and e.get("child") == name
            )
            if len(stamps) != len(walls):
                continue  # a missing or extra log line: no breakdown rather than a misaligned one
            phases[event] = [(t - w) * 1e3 for t, w in zip(stamps, walls, strict=True)][warmup:]
        out[f"garrison_{name}"] = phases
    return out


def print_table(stats: dict[str, dict[str, Any]], trials: int, warmup: int) -> None:
    print(f"# restart latency on {SYSTEM_BASE}: {trials} trials per case (+{warmup} warm-up), interleaved")
    header = f"{'case':<34}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'max ms':>9}"
    header += f"{'p50/in-actor':>14}{'p50/outside':>13}"
    print(header)
    for case in CASES:
        s = stats[case]["total"]
        ratios = "".join(
            f"{s['p50_ms'] / stats[base]['total']['p50_ms']:>{w}.2f}x"
            for base, w in (("bare_in_actor", 13), ("bare_outside", 12))
        )
        row = f"{case:<34}{s['p50_ms']:>9.2f}{s['p99_ms']:>9.2f}{s['mean_ms']:>9.2f}{s['max_ms']:>9.2f}"
        print(row + ratios)
        for key, label in PHASE_LABELS.items():
            if key in stats[case]:
                r = stats[case][key]
                print(
                    f"{label:<34}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['mean_ms']:>9.2f}{r['max_ms']:>9.2f}"
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.restart_latency", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--trials", type=int, default=100, help="measured trials per case (default 100)")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured rounds first (default 5)")
    parser.add_argument("--intensity", type=int, default=1000, help="supervisor intensity (default 1000)")
    parser.add_argument("--period", type=float, default=0.5, help="supervisor period in s (default 0.5)")
    parser.add_argument(
        "--settle", type=float, default=0.05, help="untimed pause before each trial in s (default 0.05)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir (logs)")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error("--trials must be >= 1")

    data_dir = Path(tempfile.mkdtemp(prefix="garrison-bench-restart-"))
    actor_log = data_dir / "actors.jsonl"
    load = os.getloadavg()[0]
    began = time.monotonic()
    leftovers: list[int] = []
    ok = False
    try:
        log_defs = prepare_environment(data_dir)
        with stderr_to(actor_log):
            asys = ActorSystem(SYSTEM_BASE, {"Admin Port": free_loopback_port()}, logDefs=log_defs)
            bench = RestartBench(asys, data_dir, args.intensity, args.period)
            try:
                bench.start_tree()
                samples = bench.run(args.trials, args.warmup, args.settle)
                status = bench.tree_status()
            finally:
                with contextlib.suppress(Exception):
                    asys.shutdown()
                leftovers = bench.kill_leftovers()
        log_events = read_log_events(actor_log)
        ok = True
    except BenchError as exc:
        print(f"benchmark failed: {exc}; actor logs in {actor_log}", file=sys.stderr)
        return 1
    finally:
        if ok and not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)

    events = collections.Counter(e.get("event", "?") for e in log_events)
    phases = phase_samples(log_events, bench.crash_walls, args.warmup)
    stats: dict[str, dict[str, Any]] = {}
    for case, s in samples.items():
        stats[case] = {"total": summarize(s.total_ms)}
        if s.ready_ms:
            stats[case]["ready"] = summarize(s.ready_ms)
        for phase, values in phases.get(case, {}).items():
            stats[case][phase] = summarize(values)
    print_table(stats, args.trials, args.warmup)
    rounds = args.trials + args.warmup
    restarts = {c["id"]: c["restarts_total"] for c in status.children}
    print(
        f"# checks: restarts_total per child {restarts} (expected {rounds} each); log events "
        f"child_crashed={events['child_crashed']} child_restarted={events['child_restarted']} "
        f"(expected {rounds * len(GARRISON_CHILDREN)}), supervisor_escalated={events['supervisor_escalated']}"
    )
    print(
        f"# load average at start {load:.2f}; wall time {time.monotonic() - began:.1f}s; "
        f"processes of the node session still alive 1 s after shutdown (killed): {len(leftovers)}"
    )
    for stat in bench.leftover_stats:
        print(f"#   left over: {stat}")
    ratios = {
        f"{case}_vs_{base}_p50": round(stats[case]["total"]["p50_ms"] / stats[base]["total"]["p50_ms"], 3)
        for case in CASES
        if case not in BASELINES
        for base in BASELINES
    }
    ratios |= {
        f"{case}_vs_{base}_p99": round(stats[case]["total"]["p99_ms"] / stats[base]["total"]["p99_ms"], 3)
        for case in CASES
        if case not in BASELINES
        for base in BASELINES
    }
    result = {
        "bench": "restart_latency",
        "system_base": SYSTEM_BASE,
        "trials": args.trials,
        "warmup": args.warmup,
        "cases": stats,
        "ratios": ratios,
        "restart_counts": restarts,
        "log_events": {k: events[k] for k in ("child_crashed", "child_restarted", "supervisor_escalated")},
        "load_avg_1m": round(load, 2),
        "leftover_processes_killed": len(leftovers),
    }
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
