"""The hop trace: stamps from real processes, and the commit path ``bench.commit_hops`` rebuilds from them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from actors.hoptrace import ENV
from bench.commit_hops import SEGMENTS, Breakdown, NodeTrace, commit_path

REPO = Path(__file__).resolve().parents[2]
STAMP_TWICE = (
    "from actors.hoptrace import enabled, stamp; stamp('R bell'); stamp('G from_peer gw-2'); print(enabled())"
)


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter: the module reads the variable once, at import."""
    clean = {k: v for k, v in os.environ.items() if k != ENV}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**clean, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_a_process_with_the_variable_appends_one_line_per_stamp_with_its_pid(tmp_path: Path) -> None:
    trace = tmp_path / "node.hoptrace"
    first = _python(STAMP_TWICE, {ENV: str(trace)})
    second = _python(STAMP_TWICE, {ENV: str(trace)})  # a second process appends, never truncates
    assert first.stdout.strip() == second.stdout.strip() == "True"
    lines = [line.split(" ", 2) for line in trace.read_text().splitlines()]
    assert [event for _, _, event in lines] == ["R bell", "G from_peer gw-2"] * 2
    times = [float(t) for t, _, _ in lines]
    assert times == sorted(times)  # one monotonic clock for both processes
    assert len({pid for _, pid, _ in lines}) == 2
    assert oct(trace.stat().st_mode & 0o777) == "0o600"


def test_without_the_variable_a_stamp_opens_nothing() -> None:
    done = _python(STAMP_TWICE + "; import actors.hoptrace as h; print(h._fd)", {})
    assert done.stdout.split() == ["False", "None"]


# One commit on leader gw-1 at t0 = 100.000 s; gw-3 answers first (its ack reaches the leader's replica at
# 100.0075), gw-2 later (100.0090). Times in ms after t0; pid 11/12 are a node's replica/gateway.
def _node(stamps: list[tuple[float, int, str]]) -> NodeTrace:
    return NodeTrace([f"{100 + ms / 1e3:.6f} {pid} {event}" for ms, pid, event in stamps])


LEADER = _node(
    [
        (0.2, 11, "R bell"),
        (0.6, 11, "L commit"),  # its own entry, written while the followers write theirs
        (0.7, 12, "G from_replica"),
        (1.5, 11, "L committed"),
        (1.7, 11, "L synced"),
        (1.8, 11, "R sent"),
        (7.2, 12, "G from_peer gw-3"),
        (7.5, 11, "R recv"),
        (7.7, 12, "L commit"),  # the gateway's own write: not the replica's, ignored
        (7.8, 12, "L committed"),
        (8.0, 11, "L commit"),
        (8.6, 12, "G from_peer gw-2"),
        (8.9, 11, "L committed"),
        (9.0, 11, "R recv"),
        (9.1, 11, "R sent"),
    ]
)
FOLLOWER_FIRST = _node(
    [
        (1.1, 22, "G from_peer gw-1"),
        (1.5, 21, "R recv"),
        (2.0, 21, "L commit"),
        (3.0, 21, "L committed"),
        (3.4, 21, "L synced"),
        (3.6, 21, "R sent"),
        (3.9, 22, "G from_replica"),
    ]
)
FOLLOWER_LATE = _node(
    [
        (1.2, 32, "G from_peer gw-1"),
        (1.6, 31, "R recv"),
        (2.1, 31, "L commit"),
        (4.0, 31, "L committed"),
        (4.5, 31, "L synced"),
        (4.7, 31, "R sent"),
        (5.0, 32, "G from_replica"),
    ]
)


def test_the_path_goes_through_the_follower_whose_ack_reached_the_leader_first() -> None:
    traces = {"gw-1": LEADER, "gw-2": FOLLOWER_LATE, "gw-3": FOLLOWER_FIRST}
    got = commit_path(100.0, 100.0095, "gw-1", traces)
    assert got is not None
    follower, durations = got
    assert follower == "gw-3"
    expected = [0.2, 0.5, 0.4, 0.4, 0.5, 1.0, 0.4, 0.5, 3.3, 0.3, 0.5, 0.9, 0.6]
    assert len(durations) == len(SEGMENTS)
    assert durations == pytest.approx(expected, abs=1e-6)
    assert sum(durations) == pytest.approx(9.5, abs=1e-6)  # the segments tile t0..t1 exactly


def test_a_commit_with_a_stamp_missing_or_after_it_was_seen_is_left_out() -> None:
    traces = {"gw-1": LEADER, "gw-2": FOLLOWER_LATE, "gw-3": FOLLOWER_FIRST}
    assert commit_path(100.0, 100.0085, "gw-1", traces) is None  # its apply ended after t1
    no_meta_sync = _node([(1.1, 22, "G from_peer gw-1"), (1.5, 21, "R recv")])
    assert commit_path(100.0, 100.0095, "gw-1", {"gw-1": LEADER, "gw-3": no_meta_sync}) is None
    breakdown = Breakdown()
    breakdown.add(100.0, 100.0085, "gw-1", traces)
    breakdown.add(100.0, 100.0095, "gw-1", traces)
    assert breakdown.left_out == 1
    assert breakdown.followers == {"gw-3": 1}
    assert breakdown.by_kind() == {"hop": 4.6, "work+hop": 1.6, "work": 1.0, "disk": 2.3}
