"""A topology reload checks args like a start does: a misspelt key in a running node's file is a
``topology_reload_failed`` naming it (with its suggestion), and the worker keeps running on its old args
instead of being restarted with the typo silently ignored."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.system.nodes import LiveNode, supervisor, worker, write_topology

pytestmark = pytest.mark.system


def _beats(node: LiveNode) -> int:
    return max((e["beats"] for e in node.named("heartbeat")), default=0)


def test_a_reload_with_a_misspelt_arg_is_refused_and_the_worker_runs_on(tmp_path: Path) -> None:
    tree = supervisor("root", [worker("hb", actor="actors.examples.Heartbeat", args={"interval": 0.2})])
    topo = write_topology(tmp_path, tree)
    node = LiveNode(topo, duration=120)
    try:
        node.wait_for("heartbeat", timeout=60)
        doc = yaml.safe_load(topo.read_text())
        doc["nodes"][0]["tree"]["children"][0]["args"] = {"intervall": 5}
        topo.write_text(yaml.safe_dump(doc))
        failed = node.wait_for("topology_reload_failed", timeout=30)[0]
        # the fault happened: the running node read the file with the typo
        assert failed["file"] == str(topo)
        assert any("args.intervall: unknown key (did you mean interval?)" in e for e in failed["errors"]), (
            failed
        )
        beats = _beats(node)
        node.wait_until(lambda: _beats(node) >= beats + 3, timeout=30, what="heartbeats on the old interval")
    finally:
        code = node.stop()
    assert code == 0
    assert not node.named("child_reconfigured") and not node.named("child_crashed")
