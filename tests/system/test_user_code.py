"""A user's actors next to their topology run with the installed ``garrison`` command, from another
working directory, with no PYTHONPATH: modules import from the topology's directory, from a ``python_path``
entry (relative to the file) and from the working directory, in the launcher and in every actor process."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.system

GARRISON = Path(sys.executable).parent / "garrison"  # the console script: sys.path[0] is its bin dir

USER_ACTOR = """\
import os

from actors.base import SupervisedActor


class {name}(SupervisedActor):
    def initial_state(self):
        return {{"starts": 0}}

    def apply_event(self, state, event):
        return {{"starts": state["starts"] + 1}}

    def on_start(self, args):
        self.persist({{"started": True}})
        self.log.info("user_actor_started", module=__name__, pid=os.getpid(), starts=self.state["starts"])
"""


def _package(root: Path, package: str, module: str, cls: str) -> None:
    pkg = root / package
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / f"{module}.py").write_text(USER_ACTOR.format(name=cls))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return env


def _run(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GARRISON), *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout
    )


def _events(stderr: str) -> list[dict[str, Any]]:
    out = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
    return out


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Path]:
    """``proj/`` holds the topology, ``myapp`` and ``lib/libapp``; ``elsewhere/`` (the cwd) holds
    ``cwdapp``. Returns (topology file, working directory)."""
    if not GARRISON.exists():
        pytest.skip(f"the garrison console script is not installed next to {sys.executable}")
    proj, cwd = tmp_path / "proj", tmp_path / "elsewhere"
    proj.mkdir()
    cwd.mkdir()
    _package(proj, "myapp", "counter", "Counter")
    _package(proj / "lib", "libapp", "worker", "LibWorker")
    _package(cwd, "cwdapp", "worker", "CwdWorker")
    topology = proj / "topology.yaml"
    topology.write_text(
        textwrap.dedent(
            f"""\
            python_path: [lib]
            nodes:
              - name: user-node
                data_dir: {tmp_path / "data"}
                tree:
                  id: root
                  children:
                    - {{id: counter, actor: myapp.counter.Counter}}
                    - {{id: lib, actor: libapp.worker.LibWorker}}
                    - {{id: cwd, actor: cwdapp.worker.CwdWorker}}
            """
        )
    )
    return topology, cwd


def test_user_modules_import_in_validate_and_in_every_actor_process(project: tuple[Path, Path]) -> None:
    topology, cwd = project
    # the precondition: without garrison's help, none of these modules is importable from that cwd
    bare = subprocess.run(
        [sys.executable, "-I", "-c", "import myapp.counter"],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert bare.returncode != 0 and "No module named 'myapp'" in bare.stderr

    checked = _run(["validate", str(topology)], cwd, timeout=60)
    assert checked.returncode == 0, checked.stderr
    assert "ok (1 node(s): user-node)" in checked.stdout

    run = _run(["run", str(topology), "--log-format", "json", "--duration", "4"], cwd, timeout=90)
    assert run.returncode == 0, run.stderr[-3000:]
    events = _events(run.stderr)
    started = {e["module"]: e for e in events if e.get("event") == "user_actor_started"}
    assert set(started) == {"myapp.counter", "libapp.worker", "cwdapp.worker"}, run.stderr[-3000:]
    # each ran in its own actor process (forked below the root supervisor), not in the launcher
    root_pid = next(e["root_pid"] for e in events if e.get("event") == "node_started")
    pids = {e["pid"] for e in started.values()}
    assert len(pids) == 3 and root_pid not in pids
    children = {e["child"] for e in events if e.get("event") == "child_started"}
    assert {"counter", "lib", "cwd"} <= children
    assert not [e for e in events if e.get("event") in ("child_crashed", "child_lost")]


def test_a_missing_module_names_where_it_was_searched(project: tuple[Path, Path], tmp_path: Path) -> None:
    topology, cwd = project
    text = topology.read_text().replace("python_path: [lib]\n", "python_path: [lib, no-such-dir]\n")
    bad = topology.with_name("bad.yaml")
    bad.write_text(text.replace("cwdapp.worker.CwdWorker", "nowhere.worker.Thing"))
    checked = _run(["validate", str(bad)], cwd, timeout=60)
    assert checked.returncode == 1
    assert f"{bad}:1: python_path[1]: no such directory: {topology.parent / 'no-such-dir'}" in checked.stderr
    assert "cannot import module 'nowhere.worker'" in checked.stderr
    assert "searched the topology's directory, the working directory and python_path too" in checked.stderr
