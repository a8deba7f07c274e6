"""Another local user cannot run code as the node's user through its Thespian sockets (issue 7, item 6).

The attacker is real: ``runuser -u nobody`` runs a stdlib-only script that sends a Thespian-framed pickle whose
``__reduce__`` runs ``id -u > <marker>``. The marker directory is the test's own (only the node's user can write
there), so a marker holding the node's uid can only come from the node running the attacker's code. Each test
first shows the attack works on garrison without frame authentication, then that it fails on a patched one.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from thespian.actors import Actor, ActorAddress

from supervisors.thespian_env import ADMIN_PORTS, free_loopback_port, processes_in_session
from tests.system.nodes import REPO, LiveNode, supervisor, worker, write_topology

pytestmark = pytest.mark.system

SYSTEM_PYTHON = "/usr/bin/python3"  # the attacker's; the pyenv interpreter under /root is not theirs to run

# Runs as nobody with the system interpreter: stdlib only, no access to the repository.
ATTACKER = r"""
import json, os, pickle, socket, sys

marker_dir, mode, ports = sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3:]]


class Run:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def frame(port):
    body = pickle.dumps(Run(f"/usr/bin/id -u > {marker_dir}/ran-via-{port}"))
    return b"%d>" % len(body) + body  # Thespian's TCP framing


def can_write_markers():
    try:
        open(os.path.join(marker_dir, "probe"), "w").close()
        return True
    except OSError:
        return False


if mode == "send":  # connect to each port and send the frame
    for port in ports:
        out = {"port": port, "uid": os.getuid(), "can_write_markers": can_write_markers()}
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                out["from"] = "127.0.0.1:%d" % s.getsockname()[1]
                s.sendall(frame(port))
                reply = b""
                try:
                    while chunk := s.recv(4096):
                        reply += chunk
                    out["closed"] = True
                except (socket.timeout, ConnectionResetError):
                    out["closed"] = False
                out["reply_bytes"] = len(reply)
        except OSError as e:
            out["error"] = repr(e)
        print(json.dumps(out), flush=True)
else:  # "squat": hold a port the node sends to; answer its frame with ours as the "acknowledgement"
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    print(json.dumps({"port": port, "uid": os.getuid()}), flush=True)
    server.settimeout(30)
    conn, _ = server.accept()
    received = conn.recv(65536)
    conn.sendall(frame(port))
    conn.settimeout(5)
    try:
        closed = conn.recv(4096) == b""
    except (socket.timeout, ConnectionResetError):
        closed = False
    print(json.dumps({"received_bytes": len(received), "closed": closed}), flush=True)
"""

# A bare Thespian ActorSystem as garrison ran one before frame authentication (loopback only, plain
# pickle), or with it (``patched``). It reports its admin port, then on "go" asks an Echo actor and stops.
HOST = r"""
import json, os, sys, time

admin_port, log_file, patched, squat_port = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
os.environ["THESPIAN_BASE_IPADDR"] = "127.0.0.1"
os.environ["THESPLOG_FILE"] = log_file
from actors.logs import configure_logging
from supervisors import frame_auth
from supervisors.thespian_env import bind_loopback_only

configure_logging("json", "host")
bind_loopback_only()
if patched:
    frame_auth.install()
from thespian.actors import ActorAddress, ActorSystem
from thespian.system.transport.IPBase import TCPv4ActorAddress

asys = ActorSystem("multiprocTCPBase", {"Admin Port": admin_port}, logDefs=None)
try:
    echo = asys.createActor("tests.system.test_local_attacker.Echo")
    if squat_port:  # a message to an address whose port someone else now holds
        asys.tell(ActorAddress(TCPv4ActorAddress("127.0.0.1", squat_port, external=True)), "hello")
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    sys.stdin.readline()
    replies = [asys.ask(echo, f"ping-{i}", 10) for i in range(3)]
    print(json.dumps({"echo": replies}), flush=True)
finally:
    asys.shutdown()
"""


class Echo(Actor):
    """Answers a string with itself (the bare hosts' proof that they still work)."""

    def receiveMessage(self, message: Any, sender: ActorAddress) -> None:
        if isinstance(message, str):
            self.send(sender, message)


def _other_user() -> pwd.struct_passwd:
    """``nobody`` when this test may act as them; otherwise skip (or fail in CI, where it must run)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("the test is not running as root, so it cannot act as a second local user")
    if not shutil.which("runuser"):
        missing.append("runuser is not installed")
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        missing.append(f"{SYSTEM_PYTHON} is missing (.ci/run installs python3-minimal)")
    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        missing.append("there is no 'nobody' user")
    if missing:
        reason = "; ".join(missing)
        if os.environ.get("CI") == "true" and os.geteuid() == 0:
            pytest.fail(reason)
        pytest.skip(reason)
    return user


def _as_other_user(*args: str) -> list[str]:
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    return [runuser, "-u", "nobody", "--", SYSTEM_PYTHON, "-c", ATTACKER, *args]


def _attack(marker_dir: Path, ports: list[int]) -> list[dict[str, Any]]:
    out = subprocess.run(
        _as_other_user(str(marker_dir), "send", *map(str, ports)),
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=15 + 6 * len(ports),
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def _marker_dir(tmp_path: Path) -> Path:
    markers = tmp_path / "markers"
    markers.mkdir(mode=0o755)
    return markers


def _wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def listening_ports(pids: list[int]) -> dict[int, set[int]]:
    """TCP port -> the PIDs holding it, for every listening socket of ``pids`` (/proc/<pid>/fd inodes found
    in /proc/net/tcp*). A socket can be held by several: forked children inherit the launcher's."""
    holders: dict[str, set[int]] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:["):
                        holders.setdefault(target[8:-1], set()).add(pid)
    ports = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in f.readlines()[1:]:
                cols = row.split()
                if cols[3] == "0A" and cols[9] in holders:  # 0A = LISTEN
                    ports[int(cols[1].split(":")[1], 16)] = holders[cols[9]]
    return ports


def _session_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[3])


def _admin_session(admin_port: int) -> int:
    """The session Thespian's admin made for itself (setsid), never this test's own."""
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    sessions = {_session_of(pid) for pid in listening_ports(pids).get(admin_port, ())} - {os.getsid(0)}
    assert len(sessions) == 1, f"admin port {admin_port} held by sessions {sessions}"
    return sessions.pop()


class Host:
    """A bare Thespian host process (see HOST); its admin's session is SIGKILLed when it is done."""

    def __init__(self, tmp_path: Path, patched: bool, squat_port: int = 0) -> None:
        self.admin_port = free_loopback_port(ADMIN_PORTS)
        args = [
            str(self.admin_port),
            str(tmp_path / "thespian-host.log"),
            "1" if patched else "0",
            str(squat_port),
        ]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOST, *args],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        ready = self.proc.stdout.readline()
        assert ready.startswith("{"), f"host did not start: {ready!r} {self.proc.stderr.read()}"  # type: ignore[union-attr]
        self.admin_session = _admin_session(self.admin_port)

    def finish(self) -> tuple[list[str], list[dict[str, Any]]]:
        """Let it ask its Echo actor and stop: (its echo replies, its JSON log events)."""
        try:
            out, err = self.proc.communicate("go\n", timeout=60)
        finally:
            self.kill()
        replies = [json.loads(line)["echo"] for line in out.splitlines() if '"echo"' in line]
        events = [json.loads(line) for line in err.splitlines() if line.startswith('{"event"')]
        return (replies[0] if replies else []), events

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in processes_in_session(self.admin_session):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def host_factory(tmp_path: Path) -> Iterator[Any]:
    hosts: list[Host] = []

    def make(patched: bool, squat_port: int = 0) -> Host:
        hosts.append(Host(tmp_path, patched, squat_port))
        return hosts[-1]

    yield make
    for host in hosts:
        host.kill()


def test_no_listening_socket_of_a_node_runs_another_users_pickle(tmp_path: Path, host_factory: Any) -> None:
    nobody = _other_user()
    markers = _marker_dir(tmp_path)

    # The attack is real: garrison's Thespian without frame authentication runs it as the node's user.
    bare = host_factory(patched=False)
    [sent] = _attack(markers, [bare.admin_port])
    assert sent["uid"] == nobody.pw_uid and not sent["can_write_markers"], sent
    ran = markers / f"ran-via-{bare.admin_port}"
    _wait_for(lambda: ran.exists() and ran.read_text().strip(), 10, "the unpatched admin to run the payload")
    assert ran.read_text().strip() == str(os.getuid()) and ran.stat().st_uid == os.getuid()
    assert bare.finish()[0] == ["ping-0", "ping-1", "ping-2"]

    # The same attack on every listening socket of a real node.
    topo = write_topology(
        tmp_path, supervisor("root", [worker("a"), supervisor("group", [worker("b")])]), name="attacked"
    )
    node = LiveNode(topo)
    try:
        session = node.session()
        node.wait_for("child_started", child="b")
        # the launcher creates the control endpoint after the tree is up; meanwhile its Thespian client
        # holds a transient listening socket that would be gone by the time it is attacked
        node.wait_for("control_endpoint_ready")
        actor_pids = {node.pid_of("root", "a"), node.pid_of("root/group", "b")}
        actor_pids.add(int(node.named("node_started")[0]["root_pid"]))
        launcher_cmdline = Path(f"/proc/{node.proc.pid}/cmdline").read_bytes()
        for pid in actor_pids:  # forked, not exec'd: they inherit the launcher's frame secret in memory
            assert Path(f"/proc/{pid}/cmdline").read_bytes() == launcher_cmdline, pid
        ports = listening_ports([node.proc.pid, *processes_in_session(session)])
        owners = set().union(*ports.values())
        assert node.proc.pid in owners and actor_pids <= owners, (ports, actor_pids)
        assert len(owners) >= len(actor_pids) + 2  # + the launcher and Thespian's admin (and its logger)

        results = _attack(markers, sorted(ports))
        assert [r["port"] for r in results] == sorted(ports)
        for r in results:  # each one connected, got nothing back and was hung up on
            assert r["uid"] == nobody.pw_uid and "error" not in r, r
            assert r["closed"] and r["reply_bytes"] == 0, r
        rejected = node.wait_for("frame_rejected", timeout=15, count=len(ports))
        assert {e["local_port"] for e in rejected} == set(ports)
        assert {e["peer"] for e in rejected} == {r["from"] for r in results}
        assert all(e["level"] == "warning" and "MAC" in e["reason"] for e in rejected)

        # The node still works: a SIGKILLed worker is noticed and restarted, and it stops cleanly.
        victim = node.pid_of("root", "a")
        os.kill(victim, signal.SIGKILL)
        node.wait_for("child_lost", child="a")
        node.wait_for("child_restarted", child="a")
        assert node.pid_of("root", "a") != victim
    finally:
        run = node.finish(stop=True)
    assert run.code == 0, run.stderr[-3000:]
    assert run.named("node_stopped") and run.leftover_processes() == []
    assert len(run.named("frame_rejected")) == len(ports)  # only the attacker's frames, none of the node's
    assert sorted(p.name for p in markers.iterdir()) == [f"ran-via-{bare.admin_port}"]


def _squatter(markers: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        _as_other_user(str(markers), "squat"),
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def test_a_forged_acknowledgement_from_a_squatted_port_is_rejected(tmp_path: Path, host_factory: Any) -> None:
    """An actor's port is free again after it dies; whoever takes it answers the next send to the old address."""
    nobody = _other_user()
    markers = _marker_dir(tmp_path)
    outcomes = {}
    for patched in (False, True):
        proc, squatting = _squatter(markers)
        port = squatting["port"]
        assert squatting["uid"] == nobody.pw_uid, squatting
        try:
            host = host_factory(patched=patched, squat_port=port)
            out, _ = proc.communicate(timeout=30)
            replies, events = host.finish()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        [squat] = [json.loads(line) for line in out.splitlines()]
        assert squat["received_bytes"] > 0, squat  # the host really sent to the squatted port
        ran = markers / f"ran-via-{port}"
        if not patched:  # the attack is real: the unpatched sender runs the forged acknowledgement
            _wait_for(ran.exists, 10, "the unpatched sender to run the payload")
        outcomes[patched] = (ran.exists(), replies, [e for e in events if e["event"] == "frame_rejected"])
    assert outcomes[False][0] and not outcomes[True][0], outcomes
    _, replies, rejected = outcomes[True]
    assert replies == ["ping-0", "ping-1", "ping-2"]  # the sender goes on working
    assert len(rejected) == 1 and rejected[0]["peer"] == f"127.0.0.1:{port}", rejected
