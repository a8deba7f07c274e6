"""A dead process takes its whole subtree with it, and a superseded instance can never write (issue 7.1).

Every test first proves the fault happened (the victim's pid is gone), then checks what must follow.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors.eventlog import EventLog, FencedOff
from supervisors.thespian_env import processes_in_session
from tests.system.nodes import REPO, LiveNode, supervisor, worker, write_topology

pytestmark = pytest.mark.system


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_dead(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.02)
    return [p for p in pids if alive(p)]


def tree(tmp_path: Path) -> Path:
    group = supervisor(
        "group",
        [
            worker("a", args={"action": "none"}),
            supervisor("inner", [worker("b", args={"action": "none"})]),
        ],
    )
    return write_topology(tmp_path, supervisor("root", [group, worker("c", args={"action": "none"})]))


def test_killed_nested_supervisor_takes_its_subtree_and_is_replaced(tmp_path: Path) -> None:
    node = LiveNode(tree(tmp_path))
    try:
        node.wait_for("node_started", timeout=60)
        group = node.pid_of("root", "group")
        below = [node.pid_of("root/group", "a"), node.pid_of("root/group", "inner")]
        below.append(node.pid_of("root/group/inner", "b"))
        sibling = node.pid_of("root", "c")
        os.kill(group, signal.SIGKILL)
        assert wait_dead([group], 5) == [], "the supervisor was not killed"
        assert wait_dead(below, 5) == [], f"orphans of the killed supervisor still run: {below}"
        lost = node.wait_for("child_lost", child="group", supervisor="root")[0]
        assert lost["signal"] == "SIGKILL", lost
        node.wait_for("child_restarted", child="group", supervisor="root")
        node.wait_until(
            lambda: node.named("child_started", supervisor="root/group/inner", child="b")[1:],
            20,
            "a fresh grandchild",
        )
        fresh = node.pid_of("root/group/inner", "b")
        assert fresh not in below and alive(fresh)
        assert alive(sibling), "one_for_one: the sibling of the killed supervisor must keep running"
    finally:
        run = node.finish(stop=True)
    assert run.code == 0, run.stderr[-2000:]
    assert run.named("node_stopped")[0]["killed_leftover_processes"] is None, run.named("leftover_processes")[
        0
    ]["processes"]


def test_killed_launcher_stops_the_whole_node_and_frees_its_data_dir(tmp_path: Path) -> None:
    topology = tree(tmp_path)
    node = LiveNode(topology)
    node.wait_for("node_started", timeout=60)
    session = node.session()
    members = processes_in_session(session)
    assert len(members) >= 6, members  # admin, logger, root, group, inner, a, b, c
    node.proc.send_signal(signal.SIGKILL)
    node.proc.wait(timeout=10)
    assert node.proc.returncode == -signal.SIGKILL
    assert wait_dead(members, 5) == [], "processes of the node outlived its launcher"
    again = LiveNode(topology)
    try:
        again.wait_for("node_started", timeout=60)
    finally:
        run = again.finish(stop=True)
    assert run.code == 0, run.stderr[-2000:]


def test_second_node_on_a_data_dir_names_the_pids_holding_it(tmp_path: Path) -> None:
    topology = tree(tmp_path)
    node = LiveNode(topology)
    try:
        node.wait_for("node_started", timeout=60)
        second = subprocess.run(
            [sys.executable, "-m", "supervisors.cli", "run", str(topology), "--duration", "5"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert second.returncode == 2, second.stderr
        assert f"launcher pid {node.proc.pid}" in second.stderr, second.stderr
        assert str(node.proc.pid) in second.stderr.split("processes holding", 1)[1]
    finally:
        run = node.finish(stop=True)
    assert run.code == 0


def _orphan_writer(
    path: str,
    ready: multiprocessing.synchronize.Event,
    go: multiprocessing.synchronize.Event,
    result: multiprocessing.Queue,
) -> None:  # type: ignore[type-arg]
    log = EventLog(path)
    log.acquire_fence("root/raft/r1")
    log.append("raft/r1", [{"term": 1}])
    ready.set()
    go.wait(30)
    try:
        log.append("raft/r1", [{"term": 1, "orphan": True}])
        result.put("written")
    except FencedOff as exc:
        result.put(f"fenced: {exc}")


def test_superseded_instance_cannot_write_even_while_running(tmp_path: Path) -> None:
    """Fencing, on two real processes over one LMDB file: the newer instance takes the token, and the
    older one (still alive, like an orphan or a SIGSTOPped process) has its next commit refused."""
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no LMDB handle crosses a fork
    ready, go, result = ctx.Event(), ctx.Event(), ctx.Queue()
    path = str(tmp_path / "eventlog")
    old = ctx.Process(target=_orphan_writer, args=(path, ready, go, result))
    old.start()
    try:
        assert ready.wait(30), "the first instance did not start"
        newer = EventLog(path)
        token = newer.acquire_fence("root/raft/r1")
        assert token == 2
        assert old.is_alive(), "the superseded instance must still be running for this test to mean anything"
        go.set()
        outcome = result.get(timeout=30)
        assert outcome.startswith("fenced: "), outcome
        assert "superseded by token 2" in outcome
        newer.append("raft/r1", [{"term": 2}])
        assert [r.payload for r in newer.read("raft/r1")] == [{"term": 1}, {"term": 2}]
    finally:
        old.join(10)
