"""`garrison up` on real processes: two nodes of a cluster topology start (their certificates created),
a SIGKILLed node process is logged node_lost and restarted, SIGTERM to `up` stops every node gracefully,
and SIGKILL of `up` takes every node process with it. Nothing is left running afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from supervisors.process_tree import descendants
from supervisors.thespian_env import free_loopback_ports
from tests.system.nodes import REPO

pytestmark = [pytest.mark.system, pytest.mark.timeout(180)]

TREE = {"id": "root", "children": [{"id": "counter", "actor": "actors.examples.Counter"}]}


def write_cluster(tmp_path: Path) -> Path:
    import yaml

    ports = free_loopback_ports(2)  # one draw: two draws may return the same port
    nodes = [
        {
            "name": name,
            "role": role,
            "peer": f"127.0.0.1:{port}",
            "data_dir": str(tmp_path / "data" / name),
            "tree": TREE,
        }
        for (name, role), port in zip((("gw-1", "gateway"), ("edge-1", "edge")), ports, strict=True)
    ]
    path = tmp_path / "city.yaml"
    path.write_text(yaml.safe_dump({"nodes": nodes, "cluster": {"certs_dir": "certs"}}))
    return path


class UpRun:
    """`garrison up` in the background; its JSON lines (and its nodes', on the same stderr) collected."""

    def __init__(self, topology: Path) -> None:
        cmd = [sys.executable, "-m", "supervisors.cli", "up", str(topology), "--log-format", "json"]
        self.proc = subprocess.Popen(
            [*cmd, "--stop-timeout", "30"],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, as a shell's foreground job is (Ctrl-C below)
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

    def wait_for(self, event: str, count: int = 1, timeout: float = 60, **match: Any) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(found := self.named(event, **match)) >= count:
                return found
            time.sleep(0.05)
        tail = "".join(self.lines[-30:])
        raise AssertionError(f"no {count} x {event} {match} within {timeout}s; log tail:\n{tail}")

    def kill_all(self) -> None:
        """After a failure: SIGKILL up and everything below it, by PID."""
        victims = [self.proc.pid, *descendants(self.proc.pid)]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


def identity(pid: int) -> tuple[int, str] | None:
    """(pid, start time) of a live process, None when it is gone or a zombie (start time: no pid reuse)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else (pid, fields[19])


def still_running(processes: list[tuple[int, str]]) -> list[int]:
    return [pid for pid, start in processes if identity(pid) == (pid, start)]


def wait_gone(processes: list[tuple[int, str]], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := still_running(processes)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def snapshot_tree(pid: int) -> list[tuple[int, str]]:
    return [ident for p in descendants(pid) if (ident := identity(p)) is not None]


def stops_gracefully(up: UpRun, stop: Callable[[], None]) -> None:
    """``stop()`` signals ``up``: every node stops gracefully (none killed), ``up`` exits 0, nothing is left
    of what ran under it."""
    everything = snapshot_tree(up.proc.pid)
    assert len(everything) > 4  # the fault's target really runs: launchers, admins, actors
    stop()
    assert up.proc.wait(timeout=60) == 0, "".join(up.lines[-30:])
    up._reader.join(timeout=5)
    for name in ("gw-1", "edge-1"):
        assert up.named("node_stopped", node=name, exit_code=0), name
    assert up.named("up_stopped")[0]["killed"] == []
    assert wait_gone(everything, 10) == []


def test_up_starts_the_nodes_restarts_a_killed_one_and_stops_them_all(tmp_path: Path) -> None:
    up = UpRun(write_cluster(tmp_path))
    try:
        for name in ("gw-1", "edge-1"):
            up.wait_for("node_started", node=name)
        # the certificates a fresh checkout lacks were created, keys private
        certs = tmp_path / "certs"
        assert up.named("certs_created") and (certs / "ca.pem").exists()
        for name in ("ca", "gw-1", "edge-1"):
            assert stat.S_IMODE((certs / f"{name}.key").stat().st_mode) == 0o600

        # a node process SIGKILLed: really up's child, really dead, then lost and restarted by up
        victim = up.named("node_launched", node="gw-1")[0]["pid"]
        assert victim in {p for p, _ in snapshot_tree(up.proc.pid)}  # up's child, alive
        victim_tree = [identity(victim), *snapshot_tree(victim)]
        assert len(victim_tree) > 2 and None not in victim_tree  # the launcher, its admin and actors
        os.kill(victim, signal.SIGKILL)
        lost = up.wait_for("node_lost", node="gw-1")[0]
        assert (lost["pid"], lost["signal"], lost["exit_code"]) == (victim, "SIGKILL", None)
        assert lost["supervisor"] == "garrison-up" and lost["restart_in_s"] > 0
        assert wait_gone([i for i in victim_tree if i], 15) == []  # its whole tree went with it
        restarted = up.wait_for("node_restarted", node="gw-1")[0]
        assert restarted["pid"] != victim and restarted["restarts_total"] == 1
        up.wait_for("node_started", count=2, node="gw-1")  # the new launcher brought the node up again
        assert up.named("node_lost", node="edge-1") == []  # the other node was not touched

        # SIGTERM to up: every node stops gracefully, up exits 0, nothing is left
        stops_gracefully(up, lambda: up.proc.send_signal(signal.SIGTERM))
        for name in ("gw-1", "edge-1"):
            assert up.named("node_exited", node=name, exit_code=0), name
    finally:
        if up.proc.poll() is None:
            up.kill_all()


def test_ctrl_c_stops_every_node_gracefully(tmp_path: Path) -> None:
    """Ctrl-C in a terminal sends SIGINT to the foreground process group: `up` alone (each node runs in
    its own group, so the nodes hear it only from `up`, which stops them in order)."""
    up = UpRun(write_cluster(tmp_path))
    try:
        for name in ("gw-1", "edge-1"):
            up.wait_for("node_started", node=name)
        stops_gracefully(up, lambda: os.killpg(up.proc.pid, signal.SIGINT))
    finally:
        if up.proc.poll() is None:
            up.kill_all()


def test_sigkill_of_up_takes_every_node_with_it(tmp_path: Path) -> None:
    up = UpRun(write_cluster(tmp_path))
    everything: list[tuple[int, str]] = []
    try:
        for name in ("gw-1", "edge-1"):
            up.wait_for("node_started", node=name)
        everything = snapshot_tree(up.proc.pid)
        launchers = {e["pid"] for e in up.named("node_launched")}
        assert launchers <= {pid for pid, _ in everything} and len(everything) > 4
        up.proc.kill()
        assert up.proc.wait(timeout=10) == -signal.SIGKILL
        # no stop was requested: the kernel's PDEATHSIG cascade alone ends the nodes and their actors
        assert wait_gone(everything, 15) == []
        assert not up.named("up_stopping")
    finally:
        if up.proc.poll() is None:
            up.kill_all()
        for pid in still_running(everything):  # nothing, unless the assertion above failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
