"""Run a real node (``python -m supervisors.cli run``) from a topology written by the test."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from supervisors.thespian_env import processes_in_session

REPO = Path(__file__).resolve().parents[2]


@dataclass
class NodeRun:
    code: int
    events: list[dict[str, Any]]
    stderr: str

    def named(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [
            e for e in self.events if e.get("event") == event and all(e.get(k) == v for k, v in match.items())
        ]

    def leftover_processes(self) -> list[int]:
        started = self.named("node_started")
        if not started or not started[0].get("session"):
            return []
        return processes_in_session(int(started[0]["session"]))


def write_topology(tmp_path: Path, tree: dict[str, Any], name: str = "test-node") -> Path:
    topo = {"nodes": [{"name": name, "data_dir": str(tmp_path / "data"), "tree": tree}]}
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(topo))
    return path


def run_node(topology: Path, duration: float, timeout: float = 90, extra: list[str] | None = None) -> NodeRun:
    cmd = [sys.executable, "-m", "supervisors.cli", "run", str(topology), "--log-format", "json"]
    cmd += ["--duration", str(duration), *(extra or [])]
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    events = []
    for line in proc.stderr.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                events.append(json.loads(line))
    return NodeRun(proc.returncode, events, proc.stderr)


def worker(id: str, actor: str = "tests.fixture_actors.Scripted", **fields: Any) -> dict[str, Any]:
    return {"id": id, "actor": actor, **fields}


def supervisor(id: str, children: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"id": id, "children": children, **fields}
