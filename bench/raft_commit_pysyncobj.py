"""The PySyncObj side of ``bench.raft_commit``: 3 ``SyncObj`` replicas in 3 processes on loopback.

Each replica process holds a replicated dict (``incident_id -> incident``, the same records the garrison side
commits) and obeys commands from the benchmark over a ``multiprocessing`` pipe; the benchmark sends the
measuring commands to the process whose replica is the leader, so that no commit is forwarded (a follower
would add a hop). PySyncObj keeps its log in memory and never fsyncs: its "committed" is weaker than
garrison's (which fsyncs on the leader, on the followers and on apply).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from supervisors.thespian_env import LOOPBACK, free_loopback_ports

LEADER_WAIT_S = 20.0
REPLY_WAIT_S = 120.0
SYNC_TIMEOUT_S = 5.0
TRUNCATION_WARNING = "truncating already-applied log entries"


class PySyncObjBenchError(Exception):
    """The PySyncObj cluster did not elect a leader, or a replica did not answer in time."""


class _TruncationCounter(logging.Handler):
    """Counts PySyncObj's CRITICAL "may have diverged" warnings (the perf anchors saw 50-109 per run)."""

    def __init__(self) -> None:
        super().__init__(level=logging.CRITICAL)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if TRUNCATION_WARNING in record.getMessage():
            self.count += 1


def _make_store(self_addr: str, partners: list[str], conf_kwargs: dict[str, Any]) -> Any:
    from pysyncobj import SyncObj, SyncObjConf, replicated

    class IncidentStore(SyncObj):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(self_addr, partners, conf=SyncObjConf(**conf_kwargs))
            self.incidents: dict[str, Any] = {}

        @replicated  # type: ignore[misc]
        def put(self, key: str, value: Any) -> int:
            self.incidents[key] = value
            return len(self.incidents)

    return IncidentStore()


def _sync_commits(store: Any, records: list[tuple[str, Any]]) -> list[float]:
    latencies = []
    for key, value in records:
        t0 = time.perf_counter()
        store.put(key, value, sync=True, timeout=SYNC_TIMEOUT_S)
        latencies.append((time.perf_counter() - t0) * 1e3)
    return latencies


def _pipelined_commits(store: Any, records: list[tuple[str, Any]], batch: int, window: int) -> dict[str, Any]:
    """Issue ``batch`` async commits at a time while at most ``window`` are outstanding (the same admission
    rule as the garrison side); per-commit latency = issue -> callback."""
    done = threading.Condition()
    issued_at: list[float] = [0.0] * len(records)
    latencies: list[float] = [0.0] * len(records)
    failures: list[Any] = []
    state = {"completed": 0}

    def callback_for(i: int) -> Callable[[Any, Any], None]:
        def callback(_result: Any, error: Any) -> None:
            now = time.perf_counter()
            with done:
                if error:
                    failures.append(error)
                latencies[i] = (now - issued_at[i]) * 1e3
                state["completed"] += 1
                done.notify_all()

        return callback

    t0 = time.perf_counter()
    for lo in range(0, len(records), batch):
        hi = min(lo + batch, len(records))
        need = hi - window  # completions needed before [lo, hi) may be issued
        with done:
            if not done.wait_for(lambda need=need: state["completed"] >= need, REPLY_WAIT_S):
                raise PySyncObjBenchError(f"window never opened: {state['completed']} of {lo} committed")
        now = time.perf_counter()
        for i in range(lo, hi):
            issued_at[i] = now
            key, value = records[i]
            store.put(key, value, callback=callback_for(i))
    with done:
        if not done.wait_for(lambda: state["completed"] == len(records), REPLY_WAIT_S):
            raise PySyncObjBenchError(f"only {state['completed']} of {len(records)} async commits finished")
    elapsed = time.perf_counter() - t0
    return {"elapsed_s": elapsed, "latencies_ms": latencies, "failures": len(failures)}


def replica_main(self_addr: str, partners: list[str], conf_kwargs: dict[str, Any], conn: Any) -> None:
    """Entry point of one replica process: serve the benchmark's commands until ``stop``."""
    counter = _TruncationCounter()
    logging.getLogger("pysyncobj").addHandler(counter)
    store = _make_store(self_addr, partners, conf_kwargs)
    try:
        while True:
            cmd, arg = conn.recv()
            if cmd == "status":
                status = store.getStatus()
                leader = status["leader"]
                conn.send(
                    {
                        "self": self_addr,
                        "leader": None if leader is None else str(getattr(leader, "address", leader)),
                        "is_leader": bool(store._isLeader()),
                        "ready": bool(store.isReady()),
                        "term": status["raft_term"],
                        "log_len": status["log_len"],
                        "truncations": counter.count,
                    }
                )
            elif cmd == "sync":
                conn.send(_sync_commits(store, arg))
            elif cmd == "pipelined":
                records, batch, window = arg
                conn.send(_pipelined_commits(store, records, batch, window))
            elif cmd == "stop":
                store.destroy_synchronous()
                conn.send("stopped")
                return
    except Exception as exc:  # report the failure to the benchmark instead of leaving it waiting
        with contextlib.suppress(Exception):
            conn.send({"error": f"{type(exc).__name__}: {exc}"})
        raise


@dataclass
class PySyncObjCluster:
    """Three replica processes; every process started here is stopped by its PID in :meth:`stop`."""

    conf_kwargs: dict[str, Any]
    processes: list[Any]
    pipes: list[Any]
    addresses: list[str]

    @classmethod
    def start(cls, conf_kwargs: dict[str, Any], size: int = 3) -> PySyncObjCluster:
        ctx = mp.get_context("spawn")  # a clean interpreter: nothing of Thespian or LMDB inherited
        addresses = [f"{LOOPBACK}:{port}" for port in free_loopback_ports(size)]
        processes, pipes = [], []
        for addr in addresses:
            ours, theirs = ctx.Pipe()
            partners = [a for a in addresses if a != addr]
            proc = ctx.Process(target=replica_main, args=(addr, partners, conf_kwargs, theirs), daemon=True)
            proc.start()
            processes.append(proc)
            pipes.append(ours)
        return cls(conf_kwargs, processes, pipes, addresses)

    def ask(self, i: int, cmd: str, arg: Any = None, timeout: float = REPLY_WAIT_S) -> Any:
        self.pipes[i].send((cmd, arg))
        if not self.pipes[i].poll(timeout):
            raise PySyncObjBenchError(f"replica {self.addresses[i]} did not answer {cmd!r} within {timeout}s")
        reply = self.pipes[i].recv()
        if isinstance(reply, dict) and "error" in reply:
            raise PySyncObjBenchError(f"replica {self.addresses[i]} failed on {cmd!r}: {reply['error']}")
        return reply

    def statuses(self) -> list[dict[str, Any]]:
        return [self.ask(i, "status") for i in range(len(self.pipes))]

    def wait_for_leader(self) -> int:
        """Index of the leader's process once every replica is ready and agrees on it."""
        deadline = time.monotonic() + LEADER_WAIT_S
        while time.monotonic() < deadline:
            statuses = self.statuses()
            leaders = [i for i, s in enumerate(statuses) if s["is_leader"]]
            agreed = {s["leader"] for s in statuses}
            if len(leaders) == 1 and all(s["ready"] for s in statuses) and len(agreed) == 1:
                return leaders[0]
            time.sleep(0.05)
        raise PySyncObjBenchError(f"no agreed leader within {LEADER_WAIT_S}s: {self.statuses()}")

    def stop(self) -> list[int]:
        """Stop every replica process; the PIDs that had to be killed are returned."""
        for i in range(len(self.pipes)):
            with contextlib.suppress(Exception):
                self.pipes[i].send(("stop", None))
        killed = []
        for proc in self.processes:
            proc.join(timeout=5.0)
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                killed.append(proc.pid)
                proc.join(timeout=2.0)
        return killed
