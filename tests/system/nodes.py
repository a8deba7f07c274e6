"""Run a real node (``python -m supervisors.cli run``) from a topology written by the test."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
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


class LiveNode:
    """A node running in the background; its JSON log lines are collected as they come."""

    def __init__(self, topology: Path, duration: float = 600) -> None:
        import threading

        cmd = [sys.executable, "-m", "supervisors.cli", "run", str(topology), "--log-format", "json"]
        cmd += ["--duration", str(duration)]
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        self.events: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self.lines.append(line)
                if line.startswith("{"):
                    with contextlib.suppress(json.JSONDecodeError):
                        self.events.append(json.loads(line))

    def named(self, event: str, **match: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [
                e
                for e in self.events
                if e.get("event") == event and all(e.get(k) == v for k, v in match.items())
            ]

    def wait_for(self, event: str, timeout: float = 30, count: int = 1, **match: Any) -> list[dict[str, Any]]:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.named(event, **match)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(
            f"no {count} x {event} {match} within {timeout}s; last events: {self.events[-10:]}"
        )

    def wait_until(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = condition()
            if result:
                return result
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; log tail:\n{''.join(self.lines[-30:])}")

    def finish(self, timeout: float = 60, stop: bool = False) -> NodeRun:
        """Wait for the node to exit (after a graceful SIGTERM stop when ``stop``); kill it on timeout."""
        import signal as _signal

        if stop and self.proc.poll() is None:
            self.proc.send_signal(_signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(timeout=5)
        run = NodeRun(code, list(self.events), "".join(self.lines))
        for pid in run.leftover_processes():  # only after a failure: the launcher cleans up after itself
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, _signal.SIGKILL)
        return run

    def pid_of(self, supervisor: str, child: str) -> int:
        started = self.named("child_started", supervisor=supervisor, child=child)
        started += self.named("child_restarted", supervisor=supervisor, child=child)
        return int(started[-1]["pid"])

    def session(self) -> int:
        return int(self.wait_for("node_started")[0]["session"])

    def stop(self, timeout: float = 60) -> int:
        import signal as _signal

        if self.proc.poll() is None:
            self.proc.send_signal(_signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def kill_whole_node(self) -> None:
        """SIGKILL the launcher and every process of the node's session (a power cut, minus the disk)."""
        import os
        import signal as _signal

        session = self.session()
        self.proc.kill()
        self.proc.wait()
        for pid in processes_in_session(session):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, _signal.SIGKILL)
        self._reader.join(timeout=5)
