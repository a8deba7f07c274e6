"""The last log line of a node always carries the real outcome, whatever ended it (issue 7.5)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.system.nodes import REPO, supervisor, worker, write_topology

pytestmark = pytest.mark.system


def test_a_launcher_failure_is_exit_4_and_the_last_line_says_why(tmp_path: Path) -> None:
    topo = write_topology(tmp_path, supervisor("root", [worker("a", args={"action": "none"})]))
    # a launcher bug, injected: the supervision loop raises once the node is up
    script = textwrap.dedent(
        f"""
        import sys
        from supervisors import node
        original = node.NodeRunner._supervise
        def broken(self, asys, duration):
            raise RuntimeError("injected launcher bug")
        node.NodeRunner._supervise = broken
        from supervisors.cli import main
        sys.argv = ["garrison", "run", {str(topo)!r}, "--log-format", "json", "--duration", "30"]
        main()
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    stopped = [e for e in events if e.get("event") == "node_stopped"]
    assert "RuntimeError: injected launcher bug" in proc.stderr  # the fault really happened (traceback)
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert stopped and stopped[-1]["exit_code"] == 4, stopped
    assert "launcher failed: RuntimeError: injected launcher bug" in stopped[-1]["reason"]
    assert stopped[-1]["reason"] != "stopped"
