"""Consumers are woken by the producer's commit, not by a timer (issue 10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.eventlog import EventLog
from tests.fault_actors import INPUT, OUTPUT
from tests.system.nodes import LiveNode, supervisor, worker, write_topology

pytestmark = pytest.mark.system


def test_a_consumer_without_any_timer_is_woken_by_every_append(tmp_path: Path) -> None:
    topo = write_topology(tmp_path, supervisor("root", [worker("copier", "tests.fault_actors.WokenCopier")]))
    node = LiveNode(topo)
    try:
        node.wait_for("child_started", child="copier", timeout=60)
        log = EventLog(tmp_path / "data" / "eventlog")  # another process appends, as a producer would
        for n in range(1, 6):
            log.append(INPUT, [{"n": n}])
            node.wait_for("copier_woken", through=n, timeout=20)  # its safety net is an hour away
        assert [r.payload["copied"] for r in log.read(OUTPUT)] == [1, 2, 3, 4, 5]
        log.close()
    finally:
        run = node.finish(stop=True)
    assert run.code == 0, run.stderr[-2000:]
