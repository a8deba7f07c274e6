"""etcd's MustSync in the replica: what a message promises is durable before it leaves; the commit index
and the apply are written without the last fsync, and survive a SIGKILL of the writing process.

Real LMDB, real RaftCores, a real child process killed with SIGKILL, and strace counting the real
fdatasync calls. The replica is built without an actor (as in test_snapshot_incremental.py): its Ready
loop, storage and apply are the production code; only its transport is a list."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from actors import committed_index
from actors.eventlog import EventLog, WriteBatch
from actors.logs import get_logger
from actors.raft.codec import decode_message
from actors.raft.core import RaftCore
from actors.raft.durable_storage import DurableRaftStorage
from actors.raft.entries import signed_batch
from actors.raft.replica import RaftReplicaActor
from actors.raft.snapshot_file import SnapshotSpool
from actors.raft.storage import MemoryStorage
from actors.raft.types import Message, RaftConfig
from actors.streams import COMMITTED_INCIDENTS
from tests.harness.cluster import incident

REPO = Path(__file__).resolve().parents[3]
PEERS = ("a", "b")


class _Recorder:
    """The follower's event log with every commit recorded as (durable, keys written), in order, and
    every message sent recorded with what LMDB held for it at that moment (read by another handle)."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.commits: list[tuple[bool, list[str]]] = []
        self.original_batch = log.batch

    def batch(self, *, durable: bool = True, ring: bool = True) -> WriteBatch:
        batch = self.original_batch(durable=durable, ring=ring)
        commit = batch._log._commit
        recorder = self

        class _Log:  # the batch commits through the real EventLog, then we note what it was
            def _commit(self, b: WriteBatch) -> dict[str, list[int]]:
                assigned = commit(b)
                recorder.commits.append((b.durable, sorted(b._values) + sorted(b._appends)))
                return assigned

            def ring(self, streams: Any) -> None:
                recorder.log.ring(streams)

        batch._log = _Log()  # type: ignore[assignment]
        return batch


def _follower(log: EventLog, key: Ed25519PrivateKey) -> tuple[RaftReplicaActor, list[Message]]:
    """Replica ``b`` (a follower, publishing) with only the state its Ready loop uses; sent messages go
    to the returned list."""
    r = RaftReplicaActor.__new__(RaftReplicaActor)
    r._event_log = log
    r.replica = "b"
    r.log = get_logger(actor="test")
    r.storage = DurableRaftStorage(log, "b")
    r.core = RaftCore(
        RaftConfig(id="b", peers=PEERS, election_ticks=10, heartbeat_ticks=1), r.storage, random.Random(2)
    )
    r.publish, r.pending, r.prefix = True, {}, "raft/b/"
    r.offset_key, r.offset, r.read_upto = "offset/raft/b", 0, 0
    r.dispatched, r.published, r.applied_count = 0, 0, 0
    r.trusted = {"node-a": key.public_key()}
    r.pending_reads, r.read_waiters, r.last_role, r.snapshot_every = [], {}, None, 0
    r.spool, r.snapshot_waiting, r.remote = SnapshotSpool(log.path.parent, "b"), {}, set()
    sent: list[Message] = []
    r._send_raft = lambda to, data: sent.append(decode_message(data))  # type: ignore[method-assign]
    return r, sent


def _pump(leader: RaftCore, follower: RaftReplicaActor, sent: list[Message]) -> None:
    """Deliver messages both ways until both are quiet (the leader keeps its log in memory)."""
    for _ in range(50):
        moved = False
        while leader.has_ready():
            rd = leader.ready()
            storage = leader._log.storage
            if rd.entries:
                storage.append(list(rd.entries))  # type: ignore[attr-defined]
            if rd.hard_state is not None:
                storage.set_hard_state(rd.hard_state)  # type: ignore[attr-defined]
            leader.advance(rd)
            for m in rd.messages:
                follower.core.step(m)
                moved = True
            follower._drain()
        while sent:
            leader.step(sent.pop(0))
            moved = True
        if not moved:
            return


def test_a_follower_acks_a_new_entry_only_once_it_is_durable_and_a_commit_only_ready_skips_the_last_fsync(
    tmp_path: Path,
) -> None:
    key = Ed25519PrivateKey.generate()
    log = EventLog(tmp_path / "eventlog")
    rec = _Recorder(log)
    log.batch = rec.batch  # type: ignore[method-assign]
    follower, sent = _follower(log, key)
    acked: list[tuple[int, bool]] = []  # (index acked, entry durable in LMDB when the ack left)
    send = follower._send_raft

    def send_checked(to: str, data: bytes) -> None:
        m = decode_message(data)
        if m.type == "append_resp" and not m.reject and m.index:
            key_ = f"raft/b/e/{m.index:020d}"
            durable = any(d and key_ in keys for d, keys in rec.commits)
            acked.append((m.index, durable))
        send(to, data)

    follower._send_raft = send_checked  # type: ignore[method-assign]
    leader = RaftCore(
        RaftConfig(id="a", peers=PEERS, election_ticks=10, heartbeat_ticks=1),
        MemoryStorage(),
        random.Random(1),
    )
    for _ in range(40):  # a campaigns and wins (b votes: its vote is a must-sync Ready)
        leader.tick()
        _pump(leader, follower, sent)
        if leader.role == "leader":
            break
    assert leader.role == "leader", "the leader must be elected before anything is proposed"
    for i in range(3):
        (entry,) = signed_batch("node-a", [incident(f"i-{i}")], key)
        leader.propose(entry)
        _pump(leader, follower, sent)
    leader.tick()  # a heartbeat carries the last commit index to b
    _pump(leader, follower, sent)

    # the fault-free path really ran: b acknowledged the three entries (and the no-op of the term)
    assert len({index for index, _ in acked}) >= 4, acked
    assert all(durable for _, durable in acked), f"an ack left before its entry was durable: {acked}"
    # every incident applied and published once
    published = [r.payload["incident"]["incident_id"] for r in log.read(COMMITTED_INCIDENTS)]
    assert published == ["i-0", "i-1", "i-2"]
    # each indexed on disk in its record's transaction, for the API's duplicate check
    assert [committed_index.lookup(log, iid) for iid in published] == [1, 2, 3]
    # the last one was committed by the heartbeat alone (no new entry): that apply skipped the last fsync
    applies = [(d, keys) for d, keys in rec.commits if COMMITTED_INCIDENTS in keys]
    assert applies and not applies[-1][0], applies
    # and every commit that carried an entry was durable (the vote's too: b's first durable write)
    for durable, keys in rec.commits:
        if any("/e/" in k for k in keys):
            assert durable, keys
    first_hs = next(c for c in rec.commits if "raft/b/hs" in c[1])  # the vote for a
    assert first_hs[0], first_hs
    log.close()


_WRITER = textwrap.dedent(
    """
    import sys, time
    from actors.eventlog import EventLog
    log = EventLog(sys.argv[1])
    n = int(sys.argv[2])
    for i in range(n):
        with log.batch(durable=sys.argv[3] == "durable") as b:
            b.put_value(f"k/{i}", i)
    print("written", flush=True)
    time.sleep(float(sys.argv[4]))
    """
)


def _writer(
    path: Path, n: int, mode: str, sleep: float, strace_to: Path | None = None
) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-c", _WRITER, str(path), str(n), mode, str(sleep)]
    if strace_to is not None:
        cmd = ["strace", "-f", "-qq", "-e", "trace=fdatasync,fsync,msync", "-o", str(strace_to), *cmd]
    return subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}
    )


def test_durable_and_relaxed_commits_both_survive_a_sigkill_of_the_writer(tmp_path: Path) -> None:
    for mode in ("durable", "relaxed"):
        path = tmp_path / mode
        proc = _writer(path, 20, mode, 60)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL  # it really died by SIGKILL, mid-sleep
        log = EventLog(path)
        try:
            assert [log.get_value(f"k/{i}") for i in range(20)] == list(range(20)), mode
        finally:
            log.close()


def _strace_works() -> bool:
    if shutil.which("strace") is None:
        return False
    probe = subprocess.run(
        ["strace", "-qq", "-e", "trace=fdatasync", "true"], capture_output=True, timeout=30
    )
    return probe.returncode == 0  # ptrace may be forbidden (a container's seccomp profile)


@pytest.mark.skipif(not _strace_works(), reason="needs a working strace to count the real fdatasync calls")
def test_a_relaxed_commit_skips_exactly_the_meta_page_sync(tmp_path: Path) -> None:
    counts = {}
    for mode in ("durable", "relaxed"):
        trace = tmp_path / f"{mode}.strace"
        proc = _writer(tmp_path / mode, 30, mode, 0, strace_to=trace)
        assert proc.wait(timeout=60) == 0
        counts[mode] = sum("fdatasync(" in line for line in trace.read_text().splitlines())
    # durable: the pages' sync inside the commit + the meta page's; relaxed: the pages' only
    assert counts["durable"] - counts["relaxed"] == 30, counts
    assert counts["relaxed"] >= 30, counts
