"""The README's "A supervised actor" section, executed exactly as printed: its code is the shipped code, its
topology is the shipped config/counter.yaml, and its shell commands, run in a fresh directory, print what
their ``# -> ...`` comments say (1, 2, 3, a crash, 4, the greeting), and `garrison status` shows the restart."""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
from pathlib import Path

from tests.system.nodes import REPO, LiveNode

SECTION = "## A supervised actor"


def _blocks() -> list[tuple[str, str]]:
    text = (REPO / "README.md").read_text()
    start = text.index(SECTION)
    section = text[start : text.index("\n## ", start + len(SECTION))]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


def _classes(source: str) -> dict[str, str]:
    return {n.name: ast.dump(n) for n in ast.parse(source).body if isinstance(n, ast.ClassDef)}


def test_readme_code_is_the_shipped_code() -> None:
    blocks = _blocks()
    python = [b for lang, b in blocks if lang == "python"]
    yaml_blocks = [b for lang, b in blocks if lang == "yaml"]
    assert len(python) == 1 and len(yaml_blocks) == 1
    shown = _classes(python[0])
    shipped = _classes((REPO / "actors" / "examples.py").read_text())
    assert {"Counter", "Greeter"} <= set(shown)
    for name, tree in shown.items():
        assert tree == shipped[name], f"README's {name} differs from actors/examples.py"
    assert yaml_blocks[0] == (REPO / "config" / "counter.yaml").read_text()
    compile(python[0], "README.md", "exec")


def test_readme_commands_run_exactly_as_printed(tmp_path: Path) -> None:
    blocks = [b for lang, b in _blocks() if lang == "bash"]
    assert len(blocks) == 2, "one block to start the node, one to talk to it"
    (run_line,) = [line for line in blocks[0].splitlines() if line.strip()]
    assert run_line.split("#")[0].split() == ["garrison", "run", "config/counter.yaml"]
    # a fresh directory holding only the README's topology (its data_dir is relative: it lands here)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "counter.yaml").write_text(dict(_blocks())["yaml"])
    runtime = tmp_path / "run"  # a private registry: "the only node this user runs" is this one
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "PYTHONPATH": str(REPO)}
    saved = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    try:
        node = _start(tmp_path, run_line)
    finally:
        if saved is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        else:
            os.environ["XDG_RUNTIME_DIR"] = saved
    try:
        node.wait_for("control_endpoint_ready", timeout=60)
        outputs = []
        for line in blocks[1].splitlines():
            command, _, comment = line.partition("#")
            if not command.strip():
                continue
            argv = shlex.split(command)
            assert argv[0] == "garrison"
            done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
            outputs.append((command.strip(), done))
            expected = comment.strip()
            if expected.startswith("-> error:"):
                assert done.returncode != 0 and done.stderr.strip() == expected[3:], (line, done)
            elif expected.startswith("->"):
                assert done.returncode == 0 and done.stdout.strip() == expected[3:], (line, done)
        assert node.named("child_crashed", child="counter"), "the boom really crashed the counter"
        status = outputs[-1][1]
        assert outputs[-1][0] == "garrison status" and status.returncode == 0, status.stderr
        assert re.search(r"counter +running .*inc 2 .*restarts 1 in 5s / 1 total", status.stdout), (
            status.stdout
        )
        assert "RuntimeError: asked to crash" in status.stdout
    finally:
        run = node.finish(stop=True)
    assert run.code == 0, run.stderr[-2000:]
    assert (tmp_path / "garrison-data" / "counter" / "eventlog" / "data.mdb").exists()


def _start(cwd: Path, run_line: str) -> LiveNode:
    """``garrison run config/counter.yaml`` as printed, in ``cwd``, plus only ``--log-format json`` (to read
    its events) and a ``--duration`` bound (a failing test cannot leave a node behind). LiveNode runs in the
    repository; this node runs where the README's reader would, so it is built here."""
    import threading

    cmd = [*shlex.split(run_line.split("#")[0]), "--log-format", "json", "--duration", "300"]
    node = LiveNode.__new__(LiveNode)
    node.proc = subprocess.Popen(
        cmd, cwd=cwd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=dict(os.environ)
    )
    node.events, node.lines, node._lock = [], [], threading.Lock()
    node._reader = threading.Thread(target=node._read, daemon=True)
    node._reader.start()
    return node
