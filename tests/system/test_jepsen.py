"""Jepsen-style proof on real processes (issue 9): concurrent clients against a 3-gateway cluster while a
seeded nemesis partitions, kills and pauses nodes; the history must be linearizable (`garrison
check-history --model log`), no acknowledged incident lost, none duplicated, none answered 4xx/503 in the
log, and every node's final log identical. CI size: two seeds of 30 s of faults; `python -m bench.jepsen` runs
many more. The seed is printed first: `python -m bench.jepsen --seed N --seeds 1` reruns it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.jepsen import run

pytestmark = [pytest.mark.system, pytest.mark.timeout(240)]

SECONDS = 30.0


@pytest.mark.parametrize("seed", [11, 23])
def test_history_is_linearizable_and_nothing_acknowledged_is_lost(tmp_path: Path, seed: int) -> None:
    print(f"jepsen seed {seed}: reproduce with `python -m bench.jepsen --seed {seed} --seeds 1`")
    report = run(tmp_path, seed, SECONDS, clients=4)
    print(report.summary())
    # the run really exercised the cluster under faults before its verdicts mean anything
    assert report.faults, "the nemesis injected nothing"
    kinds = set(report.kinds)
    assert kinds & {"isolate-follower", "isolate-leader", "leader-outbound"}, report.summary()
    assert kinds & {"kill", "pause"}, report.summary()
    assert report.verdicts["faults landed"] == "ok", report.summary()
    assert report.outcomes["append 201"] > 0 and report.outcomes["read ok"] > 0, report.summary()
    failed = {name: v for name, v in report.verdicts.items() if v != "ok"}
    assert not failed, f"seed {seed} failed (history {report.history}):\n{report.summary()}"
