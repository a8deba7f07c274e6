"""Poison quarantine: an input that crashes an actor N times in a row is set aside, and the next instance
goes on after it (issue 7.3). Real processes, real LMDB."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from actors.eventlog import EventLog
from tests.fault_actors import INPUT, OUTPUT
from tests.system.nodes import REPO, LiveNode, supervisor, worker, write_topology

pytestmark = pytest.mark.system


def test_a_poison_record_is_isolated_quarantined_and_skipped_exactly_once(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "data" / "eventlog")
    log.append(INPUT, [{"n": n, "poison": n == 7} for n in range(1, 21)])
    log.close()
    consumer = worker("consumer", "tests.fault_actors.PoisonConsumer", args={"batch": 8}, poison_after=3)
    topo = write_topology(tmp_path, supervisor("root", [consumer], intensity=5, period=30))
    node = LiveNode(topo)
    try:
        quarantined = node.wait_for("poison_quarantined", child="consumer", timeout=60)[0]
        node.wait_for("poison_skipped", timeout=20)
    finally:
        run = node.finish(stop=True)
    assert run.code == 0, run.stderr[-3000:]
    crashes = run.named("child_crashed", child="consumer")
    assert len(crashes) == 3, crashes  # the fault really happened, three times
    assert crashes[0]["input"] == {"kind": "stream", "stream": INPUT, "first": 1, "last": 8}
    assert crashes[1]["input"] == {"kind": "stream", "stream": INPUT, "first": 7, "last": 7}
    assert quarantined["input"] == {"kind": "stream", "stream": INPUT, "first": 7, "last": 7}
    assert quarantined["crashes"] == 3 and "cannot digest record 7" in quarantined["reason"]
    log = EventLog(tmp_path / "data" / "eventlog")
    copied = [r.payload["copied"] for r in log.read(OUTPUT)]
    assert copied == [n for n in range(1, 21) if n != 7]
    letters = [r.payload for r in log.read("deadletters/poison")]
    assert len(letters) == 1 and letters[0]["records"] == [{"seq": 7, "payload": {"n": 7, "poison": True}}]
    assert "ValueError: cannot digest record 7" in letters[0]["traceback"]
    log.close()
    data_dir = str(tmp_path / "data")
    listed = garrison("dead-letters", "list", "--data-dir", data_dir)
    assert (
        listed.returncode == 0 and "poison\t1\tpending\tValueError: cannot digest record 7" in listed.stdout
    )
    replayed = garrison("dead-letters", "replay", "poison", "--data-dir", data_dir)
    assert replayed.returncode == 0 and "replayed 1 dead letter(s) of poison: [1]" in replayed.stdout
    again = garrison("dead-letters", "replay", "poison", "--data-dir", data_dir)
    assert "replayed 0 dead letter(s)" in again.stdout  # at most once
    log = EventLog(tmp_path / "data" / "eventlog")
    assert [r.payload for r in log.read(INPUT, after=20)] == [{"n": 7, "poison": True}]


def garrison(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisors.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_a_poison_message_resent_by_its_sender_is_quarantined_and_dropped(tmp_path: Path) -> None:
    children = [
        worker("crasher", "tests.fault_actors.Crasher", poison_after=3),
        worker("pinger", "tests.fault_actors.Pinger", args={"target": "crasher", "every": 0.3}),
    ]
    topo = write_topology(tmp_path, supervisor("root", children, intensity=10, period=30))
    node = LiveNode(topo)
    try:
        quarantined = node.wait_for("poison_quarantined", child="crasher", timeout=60)[0]
        node.wait_for("poison_skipped", count=3, timeout=20)
        handled_before = len(node.named("crasher_handled"))
        node.wait_for("crasher_handled", count=handled_before + 3, timeout=20)
    finally:
        run = node.finish(stop=True)
    assert run.code == 0, run.stderr[-3000:]
    crashes = run.named("child_crashed", child="crasher")
    assert len(crashes) == 3, crashes
    assert {c["input"]["digest"] for c in crashes} == {quarantined["input"]["digest"]}
    assert quarantined["input"]["message_type"] == "dict"
    assert not run.named("restart_intensity_exceeded")
