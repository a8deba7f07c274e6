"""New worker args in the topology file (a model, a threshold) roll out without restarting the node."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.system.nodes import LiveNode, supervisor, worker, write_topology
from tests.system.test_pipeline import STEPS

pytestmark = pytest.mark.system


def test_changed_args_restart_only_that_worker_and_it_resumes_its_offset(tmp_path: Path) -> None:
    tree = supervisor(
        "root",
        [
            worker(
                "sensors",
                actor="actors.pipeline.sensor.SimulatedSensorActor",
                args={"seed": 7, "speedup": 300, "max_steps": STEPS},
            ),
            supervisor(
                "pipeline",
                [
                    worker(
                        "inference",
                        actor="actors.pipeline.inference.InferenceActor",
                        args={"threshold": 0.85},
                    )
                ],
            ),
        ],
    )
    topo = write_topology(tmp_path, tree)
    node = LiveNode(topo)
    try:
        node.wait_for("inference_resumed", threshold=0.85)
        node.wait_for("node_started")
        doc = yaml.safe_load(topo.read_text())
        inference = doc["nodes"][0]["tree"]["children"][1]["children"][0]
        inference["args"]["threshold"] = 0.9
        doc["nodes"][0]["tree"]["children"][0]["restart"] = "transient"  # not an args change
        topo.write_text(yaml.safe_dump(doc))
        resumed = node.wait_for("inference_resumed", threshold=0.9, timeout=20)[0]
        assert resumed["offset"] > 0  # continues where the old instance stopped
        assert node.named("child_reconfigured", supervisor="root/pipeline", child="inference")
        warn = node.wait_for("topology_change_needs_restart")[0]
        assert warn["changes"] == ["sensors: worker settings other than args changed"]
        assert not node.named("child_restarted", child="sensors")
        topo.write_text("nodes: [")
        failed = node.wait_for("topology_reload_failed", timeout=20)[0]
        assert "not valid YAML" in failed["errors"][0]
    finally:
        assert node.stop() == 0
    assert node.named("node_stopped")[0]["exit_code"] == 0
