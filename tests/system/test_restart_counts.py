"""On-call counters mean one thing in every event: ``restart_count`` is the restarts under the supervisor
within its current intensity period (what ``intensity`` is compared with), ``restarts_total`` the child's
lifetime restarts. Both are persisted, so a rebooted node keeps counting."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.system.nodes import run_node, supervisor, worker, write_topology

pytestmark = pytest.mark.system


def test_restart_count_and_restarts_total_in_exit_and_start_events_across_a_reboot(tmp_path: Path) -> None:
    flaky = worker("flaky", args={"action": "crash", "after": 0.1, "times": 2})
    topo = write_topology(tmp_path, supervisor("root", [worker("steady"), flaky], intensity=10, period=300))
    first = run_node(topo, duration=3)
    assert first.code == 0, first.stderr[-3000:]
    crashes = first.named("child_crashed", child="flaky")
    assert len(crashes) == 2, first.stderr[-3000:]  # the fault really happened, twice
    assert [(c["restart_count"], c["restarts_total"]) for c in crashes] == [(1, 1), (2, 2)]
    started = first.named("child_started", child="flaky")
    assert [(s["restart_count"], s["restarts_total"]) for s in started] == [(0, 0)]
    restarted = first.named("child_restarted", child="flaky")
    assert [(r["restart_count"], r["restarts_total"]) for r in restarted] == [(1, 1), (2, 2)]
    steady = first.named("child_started", child="steady")
    assert steady and steady[0]["restarts_total"] == 0

    # a reboot inside the period: the flaky child's starts are persisted, so it no longer crashes; its
    # first start of this boot still shows the restarts counted against intensity and its lifetime total
    second = run_node(topo, duration=2)
    assert second.code == 0, second.stderr[-3000:]
    assert not second.named("child_crashed")
    again = second.named("child_restarted", child="flaky") + second.named("child_started", child="flaky")
    assert [(e["restart_count"], e["restarts_total"]) for e in again] == [(2, 2)]
