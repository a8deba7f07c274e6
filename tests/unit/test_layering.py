"""Pure cores do no I/O: no Thespian, LMDB, onnxruntime, logging, clock, sockets or threads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"thespian", "lmdb", "onnxruntime", "structlog", "time", "socket", "threading", "asyncio", "os"}
PURE = [
    "supervisors/spec.py",
    "supervisors/policy.py",
    "supervisors/sequencer.py",
    "supervisors/poison.py",
    "actors/dispatch/policy.py",
    "actors/dispatch/marks.py",
    "actors/linearizability/__init__.py",
    "actors/linearizability/models.py",
    "actors/linearizability/history.py",
    "actors/linearizability/search.py",
    "models/simulator.py",
    "models/features.py",
    "models/episodes.py",
    *sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "actors" / "raft").glob("*.py")
        # the shell side of actors/raft: the replica actor, its LMDB storage, its keys, its socket to the
        # gateway, its snapshot files
        if p.name
        not in ("replica.py", "durable_storage.py", "node_keys.py", "gateway_link.py", "snapshot_file.py")
    ),
    *sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "actors" / "crdt").glob("*.py") if p.name != "replica.py"
    ),
]


@pytest.mark.parametrize("path", PURE)
def test_pure_module_imports_no_io(path: str) -> None:
    tree = ast.parse((ROOT / path).read_text())
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN, f"{path} imports {name}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            value = node.func.value
            if isinstance(value, ast.Name) and value.id == "random" and node.func.attr != "Random":
                pytest.fail(f"{path} calls random.{node.func.attr}: inject a random.Random instead")
