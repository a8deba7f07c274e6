"""State survives crashes and node restarts (snapshot + replay); nothing of the node is left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.eventlog import EventLog
from tests.system.nodes import run_node, supervisor, worker, write_topology

pytestmark = pytest.mark.system


def test_state_recovered_after_crash_and_after_node_restart(tmp_path: Path) -> None:
    acc = worker(
        "acc", actor="tests.fixture_actors.Accumulator", args={"crash_at": 41, "target": 60, "tick": 0.005}
    )
    topo = write_topology(tmp_path, supervisor("root", [acc]))
    first = run_node(topo, duration=4)
    assert first.code == 0, first.stderr[-3000:]
    recovered = [e["count"] for e in first.named("accumulator_recovered")]
    # fresh start at 0, then the restarted instance recovers 41 (not 0, not the corrupt -999)
    assert recovered == [0, 41]
    assert first.named("accumulator_done", count=60)

    second = run_node(topo, duration=1)
    assert second.code == 0, second.stderr[-3000:]
    assert [e["count"] for e in second.named("accumulator_recovered")] == [60]

    log = EventLog(tmp_path / "data" / "eventlog")
    snap = log.load_snapshot("actor/root/acc")
    assert snap is not None and snap[0] >= 50  # snapshot_every=10: recovery used snapshot + replay
    assert log.first_seq("actor/root/acc") in (0, snap[0] + 1)  # compacted up to the snapshot
    log.close()


def test_node_sockets_listen_on_loopback_only(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    from tests.system.nodes import REPO

    topo = write_topology(tmp_path, supervisor("root", [worker("a"), worker("b")]))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "supervisors.cli",
            "run",
            str(topo),
            "--log-format",
            "json",
            "--duration",
            "4",
        ],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        session = None
        deadline = time.monotonic() + 30
        while session is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if '"node_started"' in line:
                import json

                session = json.loads(line)["session"]
        assert session is not None
        from supervisors.thespian_env import processes_in_session

        listening = _listening_sockets(processes_in_session(session))
        assert listening, "the node's actor system should be listening on loopback"
        assert all(addr == "127.0.0.1" for addr, _ in listening), listening
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()


def _listening_sockets(pids: list[int]) -> list[tuple[str, int]]:
    import os
    import socket
    import struct

    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in f.readlines()[1:]:
                cols = row.split()
                local, state, inode = cols[1], cols[3], cols[9]
                if state == "0A" and inode in inodes:  # 0A = LISTEN
                    hexaddr, hexport = local.split(":")
                    if len(hexaddr) == 8:
                        addr = socket.inet_ntoa(struct.pack("<I", int(hexaddr, 16)))
                    else:
                        addr = "ipv6:" + hexaddr
                    out.append((addr, int(hexport, 16)))
    return out
