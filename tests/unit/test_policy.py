from __future__ import annotations

import random

import pytest

from supervisors.policy import Escalate, Forget, History, RestartChildren, backoff_delay, decide, record_start
from supervisors.spec import Backoff, ExitKind, Restart, Strategy, WorkerSpec

CHILDREN = (
    WorkerSpec("a", "x.A"),
    WorkerSpec("b", "x.B", restart=Restart.TRANSIENT),
    WorkerSpec("c", "x.C", restart=Restart.TEMPORARY),
    WorkerSpec("d", "x.D", backoff=Backoff(min_s=1, max_s=5, jitter=0, reset_after_s=60)),
)


def _decide(child: str, kind: ExitKind, history: History = History(), now: float = 100.0, **kw):  # noqa: B008
    args = {"strategy": Strategy.ONE_FOR_ONE, "intensity": 3, "period": 5.0} | kw
    return decide(
        children=CHILDREN, history=history, child=child, kind=kind, now=now, rng=random.Random(1), **args
    )


@pytest.mark.parametrize(
    ("child", "kind", "restarted"),
    [
        ("a", ExitKind.NORMAL, True),
        ("a", ExitKind.CRASH, True),
        ("a", ExitKind.LOST, True),
        ("b", ExitKind.NORMAL, False),
        ("b", ExitKind.SHUTDOWN, False),
        ("b", ExitKind.CRASH, True),
        ("b", ExitKind.LOST, True),
        ("c", ExitKind.CRASH, False),
        ("c", ExitKind.LOST, False),
    ],
)
def test_restart_type_decides_whether(child: str, kind: ExitKind, restarted: bool) -> None:
    directive = _decide(child, kind).directive
    assert isinstance(directive, RestartChildren if restarted else Forget)


def test_strategy_decides_which() -> None:
    assert _decide("b", ExitKind.CRASH, strategy=Strategy.ONE_FOR_ONE).directive.children == ("b",)
    assert _decide("b", ExitKind.CRASH, strategy=Strategy.ONE_FOR_ALL).directive.children == ("a", "b", "d")
    assert _decide("b", ExitKind.CRASH, strategy=Strategy.REST_FOR_ONE).directive.children == ("b", "d")


@pytest.mark.parametrize("strategy", [Strategy.ONE_FOR_ALL, Strategy.REST_FOR_ONE])
def test_temporary_bystander_is_stopped_and_not_restarted(strategy: Strategy) -> None:
    # OTP supervisor_SUITE:temporary_bystander: a temporary child terminated because a sibling exited is
    # removed, never restarted
    directive = _decide("b", ExitKind.CRASH, strategy=strategy).directive
    assert isinstance(directive, RestartChildren)
    assert "c" not in directive.children and directive.not_restarted == ("c",)
    assert _decide("b", ExitKind.CRASH, strategy=Strategy.ONE_FOR_ONE).directive.not_restarted == ()


def test_intensity_window_slides_and_then_escalates() -> None:
    h = History()
    for t in (0.0, 1.0, 2.0):
        d = _decide("a", ExitKind.CRASH, h, now=t)
        assert isinstance(d.directive, RestartChildren)
        h = d.history
    d = _decide("a", ExitKind.CRASH, h, now=3.0)
    assert isinstance(d.directive, Escalate) and d.restarts_in_window == 4
    # the restart at t=0 has left the 5 s window by t=5.5: three in the window, still allowed
    assert isinstance(_decide("a", ExitKind.CRASH, h, now=5.5).directive, RestartChildren)


def test_backoff_grows_caps_and_resets_after_a_stable_run() -> None:
    h = History()
    delays = []
    for t in range(5):
        d = _decide("d", ExitKind.CRASH, h, now=1000.0 + t * 10, intensity=100, period=1)
        delays.append(d.directive.delay)
        h = record_start(d.history, "d", 1000.0 + t * 10)
    assert delays == [1, 2, 4, 5, 5]
    d = _decide("d", ExitKind.CRASH, h, now=1000.0 + 40 + 61, intensity=100, period=1)
    assert d.directive.delay == 1


def test_backoff_jitter_stays_in_bounds() -> None:
    rng = random.Random(7)
    b = Backoff(min_s=1, max_s=8, jitter=0.5)
    for attempt in range(6):
        base = min(8, 2**attempt)
        assert base * 0.5 <= backoff_delay(b, attempt, rng) <= base * 1.5


def test_history_round_trips_through_json() -> None:
    h = _decide("d", ExitKind.CRASH).history
    assert History.from_json(h.to_json()) == h


def test_restarts_are_counted_by_the_exit_that_caused_them_across_a_reload() -> None:
    history = History()
    for now, kind in ((100.0, ExitKind.CRASH), (200.0, ExitKind.LOST), (300.0, ExitKind.LOST)):
        history = _decide("a", kind, history, now=now).history
    assert history.restart_counts == {"a": 3}
    assert history.restart_kinds == {"a": {"crash": 1, "lost": 2}}
    assert History.from_json(history.to_json()) == history
    # a history saved before reasons were counted still loads: its restarts have none
    old = {k: v for k, v in history.to_json().items() if k != "restart_kinds"}
    assert History.from_json(old).restart_kinds == {} and History.from_json(old).restart_counts == {"a": 3}
