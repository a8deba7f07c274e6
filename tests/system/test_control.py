"""The control endpoint on a real node: the Python client and the CLI (ask, tell, status), an owner-only
socket (through a symlink when the data_dir path is too long for AF_UNIX), hostile frames answered with
errors, and a clear error when no node runs."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from supervisors.client import NodeNotRunning, connect
from supervisors.control import MAX_FRAME
from tests.system.nodes import REPO, LiveNode

LONG = "a-data-dir-whose-path-is-too-long-for-a-unix-socket-" * 2


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveNode, Path, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("control")
    runtime = tmp / "run"
    runtime.mkdir(mode=0o700)
    data_dir = tmp / LONG / "data"
    tree = {
        "id": "root",
        "children": [
            {"id": "counter", "actor": "actors.examples.Counter", "backoff": {"min": 0.2, "max": 0.2}},
            {"id": "greeter", "actor": "actors.examples.Greeter"},
        ],
    }
    topology = tmp / "topology.yaml"
    topology.write_text(
        yaml.safe_dump({"nodes": [{"name": "ctl-node", "data_dir": str(data_dir), "tree": tree}]})
    )
    saved = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    live = LiveNode(topology, duration=300)
    try:
        live.wait_for("control_endpoint_ready", timeout=60)
        yield live, data_dir, env
    finally:
        if saved is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        else:
            os.environ["XDG_RUNTIME_DIR"] = saved
        run = live.finish(stop=True)
        assert run.code == 0, run.stderr[-3000:]
    assert not (data_dir / "control.sock").exists() and not (data_dir / "control.sock").is_symlink()


def garrison(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "supervisors.cli", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_socket_is_owner_only_and_found_through_a_symlink(
    node: tuple[LiveNode, Path, dict[str, str]],
) -> None:
    _, data_dir, env = node
    link = data_dir / "control.sock"
    assert len(os.fsencode(link)) > 107  # the premise: this path cannot be bound
    assert link.is_symlink()
    target = Path(os.readlink(link))
    assert target.parent == Path(env["XDG_RUNTIME_DIR"]) / "garrison"
    st = os.stat(target)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(target.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700


def test_cli_ask_tell_status_against_a_running_node(node: tuple[LiveNode, Path, dict[str, str]]) -> None:
    live, data_dir, env = node
    where = ["--data-dir", str(data_dir)]
    first = garrison(env, "ask", "root/counter", '"incr"', *where)
    assert first.returncode == 0, first.stderr
    start = json.loads(first.stdout)
    assert garrison(env, "tell", "root/counter", '"incr"', "--node", "ctl-node").returncode == 0
    # no option: the only node this user runs (the registry is private to this test's runtime dir)
    assert json.loads(garrison(env, "ask", "root/counter", '"get"').stdout) == start + 1
    greeting = garrison(env, "ask", "root/greeter", '"ada"', *where)
    assert json.loads(greeting.stdout) == f"hello ada, you are visitor {start + 2}"

    pid = json.loads(garrison(env, "status", "--json", *where).stdout)["tree"]["children"][0]["pid"]
    crashed = garrison(env, "ask", "root/counter", '"boom"', *where)
    assert crashed.returncode == 6 and "RuntimeError: asked to crash" in crashed.stderr
    live.wait_for("child_restarted", child="counter")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the crash really ended that instance
    assert json.loads(garrison(env, "ask", "root/counter", '"incr"', *where).stdout) == start + 3

    text = garrison(env, "status", *where)
    assert text.returncode == 0, text.stderr
    assert "root\n├─ counter" in text.stdout and "└─ greeter" in text.stdout
    # in the period: 1, or 0 once the 5 s period has passed on a slow machine; in total: 1 either way
    assert re.search(r"restarts [01] in 5s / 1 total", text.stdout), text.stdout
    assert "crash: RuntimeError: asked to crash (handling str) -> restart" in text.stdout
    assert "actor/root/counter" in text.stdout  # the streams section
    status = json.loads(garrison(env, "status", "--json", *where).stdout)
    counter = status["tree"]["children"][0]
    assert counter["status"] == "running" and counter["incarnation"] == 2 and counter["pid"] != pid
    assert counter["last_exit"]["reason"] == "RuntimeError: asked to crash"
    assert status["streams"]["heads"]["actor/root/counter"] == start + 3


def test_cli_errors_name_the_problem(node: tuple[LiveNode, Path, dict[str, str]], tmp_path: Path) -> None:
    _, data_dir, env = node
    bad = garrison(env, "ask", "root/counter", "incr", "--data-dir", str(data_dir))
    assert bad.returncode == 2 and "not JSON" in bad.stderr and """'"incr"'""" in bad.stderr
    missing = garrison(env, "ask", "root/nobody", '"x"', "--data-dir", str(data_dir))
    assert missing.returncode == 3 and "no child 'nobody'" in missing.stderr
    stopped = garrison(env, "ask", "root/counter", '"incr"', "--data-dir", str(tmp_path))
    assert stopped.returncode == 4 and "garrison run" in stopped.stderr
    with pytest.raises(NodeNotRunning, match="garrison run"):
        connect(data_dir=tmp_path)


def test_hostile_frames_get_error_answers_and_the_node_keeps_answering(
    node: tuple[LiveNode, Path, dict[str, str]],
) -> None:
    _, data_dir, _ = node
    path = os.readlink(data_dir / "control.sock")
    expected = _count(data_dir)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(path)
        reader = sock.makefile("rb")
        for frame in (
            b"not json",
            b'{"op": "launch"}',
            b'{"op": "ask", "path": "root/counter", "x": 1}',
            b"[1,2]",
        ):
            sock.sendall(frame + b"\n")
            answer = json.loads(reader.readline())
            assert answer["ok"] is False and answer["kind"] == "bad_request", answer
        sock.sendall(b'{"op": "ask", "path": "root/counter", "message": "get", "timeout": 0}\n')
        assert json.loads(reader.readline())["kind"] == "bad_request"
        sock.sendall(b'{"op": "ask", "path": "root/counter", "message": "get", "id": 7}\n')
        assert json.loads(reader.readline()) == {"ok": True, "reply": expected, "id": 7}
    with socket.socket(
        socket.AF_UNIX
    ) as sock:  # a frame over the bound: an error, then the connection closes
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(b"x" * (MAX_FRAME + 100))
        answer = json.loads(sock.makefile("rb").readline())
        assert answer["kind"] == "frame_too_large"
    with connect(data_dir=data_dir) as client:
        assert isinstance(client.ask("root/counter", "get"), int)


def _count(data_dir: Path) -> int:
    with connect(data_dir=data_dir) as client:
        return int(client.ask("root/counter", "get"))
