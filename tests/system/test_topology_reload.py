"""A bad topology copied over a running node's file is reported and ignored; the node keeps working."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.system.nodes import LiveNode, supervisor, worker, write_topology
from tests.unit.test_hostile_topology import billion_laughs

pytestmark = pytest.mark.system

MAX_LAUNCHER_GROWTH_KB = 100 * 1024  # a billion-laughs expansion would be gigabytes


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def _beats(node: LiveNode) -> int:
    return max((e["beats"] for e in node.named("heartbeat")), default=0)


def test_bad_reloads_are_logged_and_the_node_runs_on_and_stops_gracefully(tmp_path: Path) -> None:
    tree = supervisor(
        "root", [worker("hb", actor="actors.examples.Heartbeat", args={"interval": 0.2}, restart="permanent")]
    )
    topo = write_topology(tmp_path, tree)
    good = topo.read_text()
    bad_files: list[tuple[str, bytes, str]] = [
        ("garbage", b"\x00\xff\xfe garbage \x89PNG\r\n", "not UTF-8 text"),
        ("billion laughs", billion_laughs().encode(), "more than 20000 values"),
        (
            "schema error",
            good.replace("restart: permanent", "restart: sometimes").encode(),
            "restart: must be",
        ),
        ("syntax error", b"nodes: [\n  {name: a,\n", "not valid YAML"),
    ]
    assert "restart: permanent" in good  # so the schema-error file really differs from the good one
    node = LiveNode(topo, duration=180)  # bounds the node's life should the test lose track of it
    try:
        node.wait_for("node_started", timeout=60)
        node.wait_for("heartbeat", timeout=30)
        rss_before = _rss_kb(node.proc.pid)
        for i, (what, content, expected) in enumerate(bad_files, start=1):
            topo.write_bytes(content)  # copied over in place, as an operator would
            failed = node.wait_for("topology_reload_failed", timeout=30, count=i)[-1]
            # the fault happened: the running node really read this hostile file
            assert failed["file"] == str(topo) and expected in " ".join(failed["errors"]), (what, failed)
            assert node.proc.poll() is None, f"node died after reloading the {what} file"
            beats = _beats(node)
            node.wait_until(lambda b=beats: _beats(node) > b, timeout=30, what=f"heartbeats after {what}")
        assert _rss_kb(node.proc.pid) - rss_before < MAX_LAUNCHER_GROWTH_KB
        assert not node.named("node_stopped")
        # the reloader still works: a good file with new args after the bad ones is applied
        doc = yaml.safe_load(good)
        doc["nodes"][0]["tree"]["children"][0]["args"]["interval"] = 0.3
        topo.write_text(yaml.safe_dump(doc))
        reloaded = node.wait_for("topology_reloaded", timeout=30)[0]
        assert reloaded["reconfigured"] == ["hb"]
        beats = _beats(node)
        node.wait_until(lambda: _beats(node) > beats, timeout=30, what="heartbeats after a good reload")
    finally:
        code = node.stop()
    assert code == 0
    (stopped,) = node.named("node_stopped")
    assert stopped["exit_code"] == 0 and stopped["reason"] == "SIGTERM"
    assert not node.named("child_crashed")
