"""A model that cannot load degrades inference to the heuristic; incidents keep flowing; a good model
put in place later is picked up without restarting the node."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from actors.eventlog import EventLog
from actors.streams import COMMITTED_INCIDENTS
from models.detector import DEFAULT_MODEL_PATH
from models.features_graph import windows_model_path
from tests.system.nodes import LiveNode, supervisor, worker, write_topology
from tests.system.test_pipeline import STEPS

pytestmark = pytest.mark.system


def test_corrupt_model_degrades_to_heuristic_and_recovers_when_a_good_one_appears(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"\x08\x07garbage, not a protobuf" * 50)
    tree = supervisor(
        "root",
        [
            worker(
                "sensors",
                actor="actors.pipeline.sensor.SimulatedSensorActor",
                args={"seed": 7, "speedup": 900, "max_steps": STEPS},
            ),
            worker("inference", actor="actors.pipeline.inference.InferenceActor", args={"model": str(model)}),
            worker("incident-log", actor="actors.pipeline.incident_log.IncidentLogActor"),
        ],
    )
    node = LiveNode(write_topology(tmp_path, tree))
    try:
        degraded = node.wait_for("model_degraded", timeout=30)[0]
        assert str(model) in degraded["reason"] and "not a loadable ONNX model" in degraded["reason"]
        assert degraded["fallback"] == "heuristic-1"
        detections = node.wait_for("detection", timeout=60)
        assert detections[0]["model_version"] == "heuristic-1"
        node.wait_for("incident_committed", timeout=30)
        if not DEFAULT_MODEL_PATH.exists():
            pytest.fail(f"{DEFAULT_MODEL_PATH} is missing: build it with `garrison model build`")
        shutil.copyfile(DEFAULT_MODEL_PATH, tmp_path / "staged.onnx")
        (tmp_path / "staged.onnx").replace(model)  # atomic swap, as a rollout would do
        loaded = node.wait_for("model_loaded", timeout=30)[0]
        assert loaded["path"] == str(model) and loaded["model_version"] != "heuristic-1"
        assert loaded["windows_model"] is None  # the classifier alone: features in numpy
        # its windows model (features in the graph) put next to it later is a rollout too
        windows = windows_model_path(model)
        shutil.copyfile(windows_model_path(DEFAULT_MODEL_PATH), tmp_path / "staged_windows.onnx")
        (tmp_path / "staged_windows.onnx").replace(windows)
        reloaded = node.wait_for("model_loaded", count=2, timeout=30)[1]
        assert reloaded["windows_model"] == str(windows)
        assert not node.named("child_crashed")
    finally:
        assert node.stop() == 0
    time.sleep(0.1)
    log = EventLog(tmp_path / "data" / "eventlog")
    try:
        assert log.read(COMMITTED_INCIDENTS)
    finally:
        log.close()
