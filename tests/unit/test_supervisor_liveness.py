"""A child whose process is gone is taken to have exited even when Thespian never says so
(``Supervisor.check_liveness``): the shell's check over a real core and real processes (a live one, an
unreaped zombie, a reaped one, a SIGKILLed one not reaped yet)."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

import supervisors.supervisor as supervisor_module
from supervisors.process_tree import process_exited
from supervisors.sequencer import History, Log, Sequencer
from supervisors.spec import SupervisorSpec, WorkerSpec
from supervisors.supervisor import Supervisor


@pytest.fixture
def zombie() -> Iterator[int]:
    """A child process that has exited and that nobody has reaped yet."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    deadline = time.monotonic() + 5
    while not process_exited(pid):
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.01)
    with open(f"/proc/{pid}/stat", "rb") as f:
        assert b") Z " in f.read()  # really a zombie, still in the process table
    yield pid
    os.waitpid(pid, 0)


@pytest.fixture
def live() -> Iterator[int]:
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    yield pid
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def test_process_exited_knows_live_zombie_and_reaped_processes(live: int, zombie: int) -> None:
    assert not process_exited(live)
    assert not process_exited(os.getpid())
    assert process_exited(zombie)
    reaped = os.fork()
    if reaped == 0:
        os._exit(0)
    os.waitpid(reaped, 0)
    assert process_exited(reaped)


def _supervisor(pids: dict[str, int]) -> tuple[Supervisor, list[Any]]:
    spec = SupervisorSpec(
        "root", children=tuple(WorkerSpec(c, "tests.fixture_actors.Scripted") for c in pids)
    )
    sup = Supervisor.__new__(Supervisor)  # the shell's check only: no actor system
    sup.core = Sequencer(
        spec, path="root", parent=None, history=History(), poison={}, rng=random.Random(0), hold_limit=10
    )
    actions: list[Any] = []
    sup._run = actions.extend  # type: ignore[method-assign]
    sup._liveness_due = sup._busy_until = 0.0
    sup.schedule = lambda name, seconds: actions.append(("timer", name, seconds))  # type: ignore[method-assign]
    actions += sup.core.start(time.time())
    for child, pid in pids.items():
        actions += sup.core.child_spawned(child, 1, pid)
        actions += sup.core.child_started(child, 1, pid, time.time())
    actions.clear()
    return sup, actions


def test_a_child_whose_process_is_gone_is_reported_lost_and_restarted(live: int, zombie: int) -> None:
    sup, actions = _supervisor({"alive": live, "vanished": zombie})
    sup.check_liveness()
    logged = [(a.event, a.fields.get("child")) for a in actions if isinstance(a, Log)]
    assert ("child_lost", "vanished") in logged, actions
    assert all(child != "alive" for _, child in logged), logged
    assert sup.core.children["alive"].status == "running"
    actions.clear()
    sup.check_liveness()  # the same exit is not reported twice
    assert not [a for a in actions if isinstance(a, Log) and a.event == "child_lost"], actions


def test_a_killed_child_seen_before_thespian_reaped_it_is_logged_with_its_signal_and_left_to_reap(
    live: int,
) -> None:
    """The liveness check can see a SIGKILLed child as a zombie before Thespian's SIGCHLD handling reaps
    it and records its status: it was then logged lost with no signal (a chaos soak in CI expected
    SIGKILL). Its status is read without reaping it: Thespian must still be able to."""
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    os.kill(pid, signal.SIGKILL)
    try:
        deadline = time.monotonic() + 5
        while not process_exited(pid):
            assert time.monotonic() < deadline, "the child did not die"
            time.sleep(0.01)
        sup, actions = _supervisor({"alive": live, "killed": pid})
        sup.check_liveness()
        (lost,) = [a for a in actions if isinstance(a, Log) and a.event == "child_lost"]
        assert lost.fields["child"] == "killed" and lost.fields["signal"] == "SIGKILL", lost.fields
        with open(f"/proc/{pid}/stat", "rb") as f:
            assert b") Z " in f.read(), "reaped by the check: Thespian would wait for it for ever"
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def test_children_are_checked_every_second_while_busy_and_rarely_when_quiet(
    live: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After children were spawned, started or exited, every LIVENESS_S (when Thespian missed exits);
    once they have been quiet for LIVENESS_BUSY_FOR_S, every LIVENESS_IDLE_S: an idle node sleeps."""
    clock = [1000.0]
    monkeypatch.setattr(supervisor_module.time, "monotonic", lambda: clock[0])
    sup, actions = _supervisor({"alive": live})
    timers = lambda: [a for a in actions if isinstance(a, tuple) and a[0] == "timer"]  # noqa: E731
    sup._children_busy()
    assert timers() == [("timer", supervisor_module._LIVENESS_TIMER, supervisor_module.LIVENESS_S)]
    clock[0] += supervisor_module.LIVENESS_S
    sup.on_timer(supervisor_module._LIVENESS_TIMER)  # still busy: again in a second
    assert timers()[-1][2] == supervisor_module.LIVENESS_S
    clock[0] += supervisor_module.LIVENESS_BUSY_FOR_S
    sup.on_timer(supervisor_module._LIVENESS_TIMER)  # quiet now: rarely
    assert timers()[-1][2] == supervisor_module.LIVENESS_IDLE_S
    sup._children_busy()  # a child event: a check within a second, the slow timer superseded
    assert timers()[-1][2] == supervisor_module.LIVENESS_S
    count = len(timers())
    clock[0] += supervisor_module.LIVENESS_S
    sup.on_timer(supervisor_module._LIVENESS_TIMER)
    clock[0] += supervisor_module.LIVENESS_IDLE_S
    sup.on_timer(supervisor_module._LIVENESS_TIMER)  # the old slow timer: it checks, re-arms once
    assert len(timers()) == count + 2
