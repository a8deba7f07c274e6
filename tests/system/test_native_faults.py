"""Native crashes and hangs are detected and reported, never spun on (issue 7.2).

Each test proves the fault happened (the process is gone, killed by the named signal, or was really spinning)
before it checks the report and the policy's answer.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.system.nodes import LiveNode, run_node, supervisor, worker, write_topology

pytestmark = pytest.mark.system

FAULTY = "tests.fault_actors.Faulty"


def cpu_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])  # utime + stime


@pytest.mark.parametrize(("action", "signal_name"), [("segv", "SIGSEGV"), ("sigbus", "SIGBUS")])
def test_native_fault_kills_the_process_and_is_reported_with_its_signal(
    tmp_path: Path, action: str, signal_name: str
) -> None:
    topo = write_topology(tmp_path, supervisor("root", [worker("native", FAULTY, args={"action": action})]))
    node = LiveNode(topo)
    try:
        node.wait_for("node_started", timeout=60)
        first_pid = node.pid_of("root", "native")
        lost = node.wait_for("child_lost", child="native", timeout=20)[0]
        assert lost["signal"] == signal_name, lost
        assert lost["reason"] == f"process killed by {signal_name} without a report"
        assert cpu_ticks(first_pid) is None, "the faulting process is still there (spinning on its fault?)"
        restarted = node.wait_for("child_restarted", child="native", timeout=20)[0]
        assert restarted["pid"] != first_pid
    finally:
        run = node.finish(stop=True)
    assert run.code == 0, run.stderr[-2000:]


def test_hang_in_on_start_is_killed_with_its_subtree_reported_and_escalated(tmp_path: Path) -> None:
    group = supervisor(
        "group",
        [worker("stuck", FAULTY, args={"action": "hang_in_start", "times": 99}, start_timeout=1.5)],
        intensity=1,
        period=30,
    )
    topo = write_topology(tmp_path, supervisor("root", [group], intensity=0, period=30))
    node = LiveNode(topo)
    try:
        first = node.wait_for("faulty_started", timeout=60)[0]
        stuck_pid = int(first["pid"])
        before = cpu_ticks(stuck_pid)
        time.sleep(0.5)
        after = cpu_ticks(stuck_pid)
        assert before is not None and after is not None and after - before >= 20, "not really spinning"
        timeout = node.wait_for("child_start_timeout", child="stuck", timeout=20)[0]
        assert timeout["path"] == "root/group/stuck" and timeout["timeout_s"] == 1.5
        assert timeout["pid"] == stuck_pid
        deadline = time.monotonic() + 5
        while cpu_ticks(stuck_pid) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cpu_ticks(stuck_pid) is None, "the hung process was not killed"
        crashed = node.wait_for("child_crashed", child="stuck", timeout=10)[0]
        assert crashed["exc_type"] == "StartTimeout" and crashed["message_type"] == "on_start"
        run = node.finish(timeout=60)
    finally:
        if node.proc.poll() is None:
            node.finish(stop=True)
    # intensity 1 in group: the second timeout escalates to root (intensity 0), which ends the node
    assert run.code == 1, run.stderr[-3000:]
    stopped = run.named("node_stopped")[0]
    assert "root supervisor escalated" in stopped["reason"], stopped
    assert len(run.named("child_start_timeout", child="stuck")) == 2
    pids = [int(e["pid"]) for e in run.named("faulty_started")]
    assert all(cpu_ticks(p) is None for p in pids), "a hung instance survived the node"
    assert run.leftover_processes() == []


@pytest.mark.parametrize(("action", "exc_type"), [("exit", "SystemExit"), ("interrupt", "KeyboardInterrupt")])
def test_sys_exit_and_keyboard_interrupt_are_crashes_reported_as_what_they_are(
    tmp_path: Path, action: str, exc_type: str
) -> None:
    topo = write_topology(tmp_path, supervisor("root", [worker("quitter", FAULTY, args={"action": action})]))
    run = run_node(topo, duration=3)
    assert run.code == 0, run.stderr[-2000:]
    crashed = run.named("child_crashed", child="quitter")
    assert len(crashed) == 1, crashed
    assert crashed[0]["exc_type"] == exc_type and crashed[0]["message_type"] == "timer:act"
    assert exc_type in crashed[0]["traceback"]
    assert run.named("child_restarted", child="quitter")
