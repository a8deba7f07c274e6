"""Jepsen-style proof on real processes (issue 9): concurrent clients against a 3-gateway cluster while a
seeded nemesis partitions, kills, pauses and slows nodes; the history must be linearizable (`garrison
check-history --model log`), no acknowledged incident lost, none duplicated, none answered 4xx/503 in the
log, and every node's final log identical. CI size: three seeds of 16 s of faults, two of them with an edge
node (clients append through it; the nemesis cuts, kills, pauses and slows it too), each seed chosen so that
its first three faults cover a partition, a kill or pause, and a delay; `python -m bench.jepsen` runs many
more. The seed is printed first: `python -m bench.jepsen --seed N --seeds 1` reruns it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.jepsen import run

pytestmark = [pytest.mark.system, pytest.mark.timeout(240)]

SECONDS = 16.0


@pytest.mark.parametrize(("seed", "edges"), [(31, ()), (19, ("edge-1",)), (37, ("edge-1",))])
def test_history_is_linearizable_and_nothing_acknowledged_is_lost(
    tmp_path: Path, seed: int, edges: tuple[str, ...]
) -> None:
    rerun = f"python -m bench.jepsen --seed {seed} --seeds 1" + (f" --edges {len(edges)}" if edges else "")
    print(f"jepsen seed {seed}: reproduce with `{rerun}`")
    report = run(tmp_path, seed, SECONDS, clients=4, edges=edges)
    print(report.summary())
    # the run really exercised the cluster under faults before its verdicts mean anything
    assert report.faults, "the nemesis injected nothing"
    kinds = set(report.kinds)
    assert kinds & {"isolate-follower", "isolate-leader", "leader-outbound"}, report.summary()
    assert kinds & {"kill", "pause"}, report.summary()
    assert "delay" in kinds, report.summary()  # every CI seed slows every link of one named node
    assert report.verdicts["faults landed"] == "ok", report.summary()
    assert report.outcomes["append 201"] > 0 and report.outcomes["read ok"] > 0, report.summary()
    if edges:  # the edge really took appends (forwarded to the leader) and really was hit by a fault
        assert report.outcomes["append 201 via edge"] > 0, report.summary()
    failed = {name: v for name, v in report.verdicts.items() if v != "ok"}
    assert not failed, f"seed {seed} failed (history {report.history}):\n{report.summary()}"
