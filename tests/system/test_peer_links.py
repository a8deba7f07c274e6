"""Peer links between real processes over real mutual TLS on loopback (supervisors/peer).

Each node is ``python -m tests.harness.peer_node`` (its own process, driven by JSON lines on stdin); the
certificates come from ``supervisors.certs`` (a real CA on disk); bad peers are real TLS/TCP clients in the
test process; a stalled peer is a real SIGSTOP; partitions go through tests/harness/fault_proxy.py.
Every fault is first checked to have happened (process state T, bytes really dropped by the proxy,
handshake really completed before the garbage) before the nodes' reaction is asserted.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from supervisors import certs
from supervisors.peer import Lane, PeerConfig, PeerNode
from supervisors.peer.frames import GossipFrame, Heartbeat, RaftFrame, encode_frame
from supervisors.thespian_env import free_loopback_ports
from tests.harness.fault_proxy import FaultProxy

pytestmark = [pytest.mark.system, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
LANES = ["raft", "gossip", "forward", "snapshot"]
T = TypeVar("T")

# Fast enough for short tests, slow enough for 2 shared cores: suspect after 400 ms, down after 1 s.
TIMING = {
    "heartbeat_ms": 200,
    "suspect_after_missed": 2,
    "down_after_missed": 5,
    "connect_timeout_ms": 1000,
    "backoff_min_ms": 50,
    "backoff_max_ms": 500,
}


def wait_until(check: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class PeerProc:
    """One node's peer links in its own process (its own session, stopped by PID)."""

    def __init__(self, config: PeerConfig, tmp_path: Path) -> None:
        self.name = config.node
        path = tmp_path / f"{self.name}.json"
        path.write_text(json.dumps(config.to_json()))
        self.log_path = tmp_path / f"{self.name}.log"
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.harness.peer_node", str(path)],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                start_new_session=True,
            )
        ready = self._line(timeout=30)
        assert "ready" in ready, ready

    def _line(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise AssertionError(f"{self.name} did not answer within {timeout} s; log:\n{self.log_tail()}")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"{self.name} exited ({self.proc.poll()}); log:\n{self.log_tail()}")
        return json.loads(line)

    def ask(self, timeout: float = 10, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        self.proc.stdin.flush()
        return self._line(timeout)

    def send(self, peer: str, lanes: list[str], count: int = 1, size: int = 0) -> dict[str, Any]:
        return self.ask(cmd="send", peer=peer, lanes=lanes, count=count, size=size)

    def status(self) -> dict[str, Any]:
        return self.ask(cmd="status")

    def events(self, event: str, **match: Any) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                e = json.loads(line)
                if e.get("event") == event and all(e.get(k) == v for k, v in match.items()):
                    found.append(e)
        return found

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-30:])

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


@pytest.fixture(scope="module")
def certs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    certs.init_ca(d)
    for node in ("a", "b", "c", "e", "mallory"):
        certs.issue_node_cert(d, node)
    return d


@pytest.fixture(scope="module")
def other_ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("other-ca")
    certs.init_ca(d)
    certs.issue_node_cert(d, "c")  # the right name, the wrong CA
    return d


@pytest.fixture
def procs() -> Iterator[list[PeerProc]]:
    started: list[PeerProc] = []
    try:
        yield started
    finally:
        for p in started:
            p.stop()


def config(
    certs_dir: Path, node: str, nodes: tuple[PeerNode, ...], listen_port: int | None = None, **extra: Any
) -> PeerConfig:
    files = certs.node_files(certs_dir, node)
    return PeerConfig(
        node=node,
        nodes=nodes,
        ca=files.ca,
        cert=files.cert,
        key=files.key,
        listen_port=listen_port,
        **{**TIMING, **extra},
    )


def topology(**roles: str) -> tuple[PeerNode, ...]:
    ports = free_loopback_ports(len(roles))
    return tuple(
        PeerNode(name, role, "127.0.0.1", port)
        for (name, role), port in zip(roles.items(), ports, strict=True)
    )


def peer_up(proc: PeerProc, peer: str) -> dict[str, Any] | None:
    link = proc.status()["status"][peer]
    return link if link["state"] == "up" else None


def received(proc: PeerProc, peer: str, lane: str) -> int:
    return int(proc.status()["received"].get(peer, {}).get(lane, 0))


def last_payload(proc: PeerProc, peer: str, lane: str) -> str | None:
    return proc.status()["last"].get(peer, {}).get(lane)


# ---- three nodes ---------------------------------------------------------------------------------------


def test_three_nodes_exchange_frames_on_every_lane_and_heartbeats_measure_rtt(
    certs_dir: Path, tmp_path: Path, procs: list[PeerProc]
) -> None:
    nodes = topology(a="gateway", b="gateway", c="gateway")
    procs += [PeerProc(config(certs_dir, n.name, nodes), tmp_path) for n in nodes]
    by_name = {p.name: p for p in procs}
    for p in procs:
        for q in procs:
            if p is not q:
                wait_until(lambda p=p, q=q: peer_up(p, q.name), 20, f"{p.name} to see {q.name} up")
    for p in procs:
        for q in procs:
            if p is not q:
                answer = p.send(q.name, LANES, count=3)
                assert (answer["queued"], answer["dropped"]) == (12, 0), answer
    for p in procs:
        for q in procs:
            if p is not q:
                for lane in LANES:
                    wait_until(
                        lambda p=p, q=q, lane=lane: received(p, q.name, lane) == 3,
                        10,
                        f"{p.name} to receive 3 {lane} frames from {q.name}",
                    )
    status = by_name["a"].status()
    for peer in ("b", "c"):
        link = status["status"][peer]
        assert link["state"] == "up" and link["rtt_ms"] is not None and link["rtt_ms"] > 0, link
        assert link["connected_out"] and link["connected_in"], link
        assert link["sent"] == {lane: 3 for lane in LANES}, link
        assert link["dropped"] == {} and link["refused"] == 0, link
    # the payloads that arrived are the ones sent (sender:seq), not just counts
    assert by_name["b"].status()["last"]["a"]["raft"].startswith("a:")
    assert by_name["a"].events("peer_connected", peer="b", direction="out")
    assert by_name["a"].events("peer_connected", peer="b", direction="in")
    assert by_name["a"].events("peer_state", peer="c", state="up")


# ---- bad peers -----------------------------------------------------------------------------------------


def tls_client(files: certs.NodeFiles, trust: Path, port: int) -> ssl.SSLSocket:
    """A TLS client presenting ``files``' certificate, trusting ``trust`` to verify node a."""
    ctx = ssl.create_default_context(cafile=str(trust))
    ctx.load_cert_chain(str(files.cert), str(files.key))
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return ctx.wrap_socket(sock, server_hostname=certs.node_san("a"))


def closed_by_server(sock: socket.socket, timeout: float = 5) -> str:
    """How the server ended the connection (EOF, reset or a TLS alert); fails if it stays open."""
    sock.settimeout(timeout)
    try:
        while data := sock.recv(4096):
            assert len(data) < 1 << 20, "the server kept sending"
        return "eof"
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open for {timeout} s") from None
    except (ssl.SSLError, ConnectionError) as error:
        return f"{type(error).__name__}: {error}"
    finally:
        sock.close()


def read_frame(sock: ssl.SSLSocket) -> bytes:
    data = b""
    while len(data) < 5 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
        chunk = sock.recv(4096)
        assert chunk, "connection closed while reading a frame"
        data += chunk
    return data


def test_bad_peers_are_refused_and_logged_and_good_links_keep_flowing(
    certs_dir: Path, other_ca_dir: Path, tmp_path: Path, procs: list[PeerProc]
) -> None:
    # a and b run; c (gateway) and e (edge) are topology nodes the test impersonates with their real certs
    nodes = topology(a="gateway", b="gateway", c="gateway", e="edge")
    a, b = (
        PeerProc(config(certs_dir, n, nodes, peers=("b", "c", "e") if n == "a" else ("a",)), tmp_path)
        for n in ("a", "b")
    )
    procs += [a, b]
    wait_until(lambda: peer_up(a, "b") and peer_up(b, "a"), 20, "a and b to link")
    port = nodes[0].port
    ca = certs_dir / certs.CA_CERT

    # 1. a client certificate from another CA (with a topology name): refused during the handshake
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(other_ca_dir / "c.pem"), str(other_ca_dir / "c.key"))
    try:
        tls = ctx.wrap_socket(sock, server_hostname=certs.node_san("a"))
        ended = closed_by_server(tls)  # TLS 1.3: the client finishes first, the server's alert follows
    except (ssl.SSLError, ConnectionError) as error:
        ended = str(error)
    assert "unknown ca" in ended.lower() or "eof" in ended.lower() or "reset" in ended.lower(), ended
    refused = wait_until(lambda: a.events("peer_refused"), 10, "peer_refused for the foreign CA")
    assert "certificate verify failed" in refused[0]["reason"], refused

    # 2. a valid certificate of our CA whose name is not a topology node
    tls = tls_client(certs.node_files(certs_dir, "mallory"), ca, port)
    assert tls.version() is not None  # the handshake really completed: the SAN check is what refuses it
    closed_by_server(tls)
    refused = wait_until(
        lambda: [e for e in a.events("peer_refused") if "mallory.garrison" in e["names"]],
        10,
        "mallory refused",
    )
    assert refused[0]["reason"] == "certificate names no node of the topology", refused

    # 3. a plain-TCP client
    plain = socket.create_connection(("127.0.0.1", port), timeout=5)
    plain.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    closed_by_server(plain)
    wait_until(lambda: len(a.events("peer_refused")) >= 3, 10, "the plain-TCP client refused")
    assert "TLS error" in a.events("peer_refused")[2]["reason"], a.events("peer_refused")

    # 4-6. c's real certificate, then bytes that are not frames: each closes that connection
    attacks = {
        "garbage": (struct.pack(">IB", 9, Lane.RAFT) + b"\xc1" * 8, "malformed RAFT body"),
        "oversized": (struct.pack(">IB", 0x7FFFFFFF, Lane.RAFT), "exceeds max_frame"),
        "unknown lane": (struct.pack(">IB", 2, 99) + b"\xc0", "unknown lane 99"),
    }
    for name, (data, reason) in attacks.items():
        tls = tls_client(certs.node_files(certs_dir, "c"), ca, port)
        assert tls.version() is not None, name
        wait_until(lambda: a.status()["status"]["c"]["connected_in"], 10, f"{name}: a accepted c")
        tls.sendall(data)
        closed_by_server(tls)  # oversized: closed without waiting for the 2 GB body
        wait_until(
            lambda reason=reason: [e for e in a.events("frame_refused", peer="c") if reason in e["reason"]],
            10,
            f"frame_refused for {name}",
        )
    assert {e["action"] for e in a.events("frame_refused", peer="c")} == {"closed"}

    # 7. an edge node on the Raft lane: the frame is refused, its connection and its gossip go on
    tls = tls_client(certs.node_files(certs_dir, "e"), ca, port)
    tls.sendall(encode_frame(RaftFrame(sender="e", recipient="a", payload=b"vote for me")))
    tls.sendall(encode_frame(GossipFrame(sender="e", payload=b"e:1")))
    wait_until(lambda: last_payload(a, "e", "gossip") == "e:1", 10, "a to receive e's gossip")
    tls.sendall(encode_frame(Heartbeat(seq=7, sent_ns=1)))
    assert read_frame(tls) == encode_frame(Heartbeat(seq=7, sent_ns=1, reply=True))  # still served
    tls.close()
    refused = a.events("frame_refused", peer="e")
    assert [(e["lane"], e["action"]) for e in refused] == [("raft", "dropped")], refused
    assert received(a, "e", "raft") == 0

    # the good link was never touched: frames still flow both ways, both sides up
    for sender, receiver in ((a, b), (b, a)):
        seq = sender.send(receiver.name, ["raft", "gossip"])["seq"]
        wait_until(
            lambda s=sender, r=receiver, seq=seq: (
                last_payload(r, s.name, "raft") == f"{s.name}:{seq}"
                and last_payload(r, s.name, "gossip") == f"{s.name}:{seq}"
            ),
            10,
            f"{receiver.name} to receive {sender.name}'s frames after the attacks",
        )
    assert peer_up(a, "b") and peer_up(b, "a")


# ---- a stalled peer ------------------------------------------------------------------------------------


def process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_a_stopped_peer_fills_only_its_own_queue_and_recovers_after_sigcont(
    certs_dir: Path, tmp_path: Path, procs: list[PeerProc]
) -> None:
    nodes = topology(a="gateway", b="gateway", c="gateway")
    small = {"queue_sizes": {Lane.RAFT: 8, Lane.GOSSIP: 8, Lane.FORWARD: 8, Lane.SNAPSHOT: 4}}
    procs += [PeerProc(config(certs_dir, n.name, nodes, **small), tmp_path) for n in nodes]
    a, b, c = procs
    wait_until(lambda: peer_up(a, "b") and peer_up(a, "c") and peer_up(c, "a"), 20, "a linked to b and c")

    c.signal(signal.SIGSTOP)
    wait_until(lambda: process_state(c.proc.pid) == "T", 5, "c to be stopped")
    # Far more than loopback socket buffers hold: a's writer to c blocks in drain, then its queue fills.
    for _ in range(10):
        answer = a.send("c", ["raft"], count=40, size=100_000)  # answered at once: send never blocks
        if answer["dropped"]:
            break
    assert answer["dropped"] > 0, answer
    status = a.status()
    assert status["status"]["c"]["dropped"]["raft"] > 0, status["status"]["c"]
    assert status["unreachable"]["c"]["raft"] == status["status"]["c"]["dropped"]["raft"]
    assert a.events("queue_dropped", peer="c", lane="raft")

    # meanwhile a's frames to b flow as before
    for _ in range(3):
        seq = a.send("b", ["raft", "gossip"])["seq"]
        wait_until(lambda seq=seq: last_payload(b, "a", "raft") == f"a:{seq}", 10, f"b to receive a:{seq}")
    assert last_payload(b, "a", "gossip") == f"a:{seq}"
    assert a.status()["status"]["b"]["dropped"] == {}
    wait_until(lambda: a.events("peer_state", peer="c", state="down"), 10, "a to mark c down")
    assert process_state(c.proc.pid) == "T"  # c was stopped all along

    c.signal(signal.SIGCONT)
    wait_until(lambda: peer_up(a, "c"), 20, "c up again after SIGCONT")
    seq = a.send("c", ["raft"], size=10)["seq"]
    wait_until(
        lambda: last_payload(c, "a", "raft") == f"a:{seq}", 20, "c to receive a frame sent after SIGCONT"
    )
    wait_until(lambda: peer_up(c, "a") and peer_up(c, "b"), 20, "c to see its peers up again")


# ---- partitions through the fault proxy ----------------------------------------------------------------


@pytest.mark.parametrize("direction", ["to_target", "to_client"])
def test_blackholing_one_direction_makes_the_peer_suspect_then_down_and_heal_brings_it_up(
    certs_dir: Path, tmp_path: Path, procs: list[PeerProc], direction: str
) -> None:
    # a reaches b only through the proxy; b listens on its real port
    real_b, port_a, proxy_port = free_loopback_ports(3)  # one draw: two draws may return the same port
    with FaultProxy(("127.0.0.1", real_b), listen_port=proxy_port) as proxy:
        nodes = (
            PeerNode("a", "gateway", "127.0.0.1", port_a),
            PeerNode("b", "gateway", "127.0.0.1", proxy.port),
        )
        a = PeerProc(config(certs_dir, "a", nodes), tmp_path)
        procs.append(a)
        procs.append(PeerProc(config(certs_dir, "b", nodes, listen_port=real_b), tmp_path))
        b = procs[1]
        wait_until(lambda: peer_up(a, "b"), 20, "a to see b up through the proxy")
        assert proxy.connections >= 1 and proxy.forwarded["to_target"] > 0  # traffic really goes through it

        proxy.blackhole(direction)
        wait_until(lambda: proxy.dropped[direction] > 0, 10, f"the proxy to drop bytes going {direction}")
        wait_until(lambda: a.events("peer_state", peer="b", state="suspect"), 10, "a to suspect b")
        wait_until(lambda: a.events("peer_state", peer="b", state="down"), 10, "a to mark b down")
        link = a.status()["status"]["b"]
        assert link["state"] == "down" and link["last_error"], link
        assert peer_up(b, "a")  # the other direction (b dials a directly) never went through the proxy

        proxy.heal()
        wait_until(lambda: peer_up(a, "b"), 20, "a to see b up again after heal")
        seq = a.send("b", ["raft"])["seq"]
        wait_until(lambda: last_payload(b, "a", "raft") == f"a:{seq}", 10, "a frame through the healed proxy")


def test_a_delay_through_the_proxy_shows_in_the_measured_rtt_and_the_link_stays_up(
    certs_dir: Path, tmp_path: Path, procs: list[PeerProc]
) -> None:
    real_b, port_a, proxy_port = free_loopback_ports(3)  # one draw: two draws may return the same port
    with FaultProxy(("127.0.0.1", real_b), listen_port=proxy_port, seed=1) as proxy:
        nodes = (
            PeerNode("a", "gateway", "127.0.0.1", port_a),
            PeerNode("b", "gateway", "127.0.0.1", proxy.port),
        )
        procs.append(PeerProc(config(certs_dir, "a", nodes), tmp_path))
        procs.append(PeerProc(config(certs_dir, "b", nodes, listen_port=real_b), tmp_path))
        a, b = procs
        wait_until(lambda: peer_up(a, "b"), 20, "a to see b up through the proxy")
        proxy.delay(150, jitter_ms=20, direction="to_client")  # the echoes come back late
        # the RTT a measures includes the injected delay (a lower bound the fault itself sets)
        link = wait_until(
            lambda: (lk := a.status()["status"]["b"])["rtt_ms"] >= 130 and lk,
            10,
            "a's RTT to b to include the delay",
        )
        assert link["state"] == "up", link  # 150 ms late is well within the 1 s down threshold
        seq = a.send("b", ["forward"])["seq"]
        wait_until(
            lambda: last_payload(b, "a", "forward") == f"a:{seq}", 10, "a frame through the slow proxy"
        )
        assert proxy.forwarded["to_client"] > 0
        assert not a.events("peer_state", peer="b", state="down")


def test_a_peer_that_connects_to_us_is_dialled_back_at_once_not_after_our_backoff(
    certs_dir: Path, tmp_path: Path, procs: list[PeerProc]
) -> None:
    """A restarted node's peers back off dialling it while it is down; when it is back and connects to
    them, they dial it at once: until then its answers (Raft votes, acks) had no way back."""
    nodes = topology(a="gateway", b="gateway")
    # a long backoff: once a's first dial to b fails, a sleeps 4-8 s before the next one
    a = PeerProc(config(certs_dir, "a", nodes, backoff_min_ms=8000, backoff_max_ms=20000), tmp_path)
    procs.append(a)
    wait_until(lambda: a.events("peer_dial_failed", peer="b"), 10, "a's first dial to b to fail")
    failed_at = time.monotonic()
    procs.append(PeerProc(config(certs_dir, "b", nodes), tmp_path))  # b dials a as soon as it is up
    b_ready = time.monotonic()
    assert b_ready - failed_at < 2.0, "b started too late to tell a redial from a's own backoff"
    wait_until(lambda: a.events("peer_connected", peer="b", direction="in"), 10, "b to connect to a")
    wait_until(lambda: a.events("peer_connected", peer="b", direction="out"), 10, "a to dial b again")
    dialled_after = time.monotonic() - failed_at
    assert dialled_after < 3.0, (
        f"a dialled b {dialled_after:.2f} s after its failed dial: it waited its backoff"
    )
    seq = a.send("b", ["raft"])["seq"]
    wait_until(
        lambda: last_payload(procs[1], "a", "raft") == f"a:{seq}", 10, "a's frame on its new link to b"
    )


def test_a_peer_still_starting_is_logged_at_info_one_that_was_up_and_went_away_as_a_warning(
    certs_dir: Path, tmp_path: Path, procs: list[PeerProc]
) -> None:
    """Every node of a cluster started at once finds its later peers not listening yet: that is not worth a
    warning (a new user saw nine on a healthy start). The same refusal from a peer that was up is."""
    nodes = topology(a="gateway", b="gateway")
    a = PeerProc(config(certs_dir, "a", nodes, backoff_min_ms=100, backoff_max_ms=300), tmp_path)
    procs.append(a)
    starting = wait_until(lambda: a.events("peer_dial_failed", peer="b"), 10, "a's first dial to b to fail")
    assert "Refused" in starting[0]["reason"], starting  # b's port really refused: nothing listens there
    assert [e["level"] for e in starting] == ["info"], starting
    b = PeerProc(config(certs_dir, "b", nodes), tmp_path)
    procs.append(b)
    wait_until(lambda: peer_up(a, "b"), 10, "a's link to b up")
    b.proc.kill()  # b's node died: its port refuses again
    b.proc.wait(timeout=5)
    assert b.proc.returncode == -signal.SIGKILL
    gone = wait_until(
        lambda: [e for e in a.events("peer_dial_failed", peer="b") if e["level"] == "warning"],
        15,
        "a's dial to the dead b to fail",
    )
    assert "Refused" in gone[0]["reason"], gone


def test_a_peer_stopping_on_purpose_is_logged_as_left_at_info_not_as_a_failure(
    certs_dir: Path, tmp_path: Path, procs: list[PeerProc]
) -> None:
    """A node that stops gracefully tells its peers first (a heartbeat marked ``leaving``, echoed back): a
    rolling restart of a city is not some thirty warnings of links lost. A killed peer still is a warning
    (the test above)."""
    nodes = topology(a="gateway", b="gateway")
    a = PeerProc(config(certs_dir, "a", nodes, backoff_min_ms=100, backoff_max_ms=300), tmp_path)
    b = PeerProc(config(certs_dir, "b", nodes), tmp_path)
    procs += [a, b]
    wait_until(lambda: peer_up(a, "b") and peer_up(b, "a"), 10, "both links up")
    assert b.proc.stdin is not None
    b.proc.stdin.close()  # the harness node closes its links and exits
    assert b.proc.wait(timeout=10) == 0
    wait_until(lambda: len(a.events("peer_disconnected", peer="b")) >= 2, 10, "a's two links to b to end")
    wait_until(lambda: a.events("peer_dial_failed", peer="b"), 10, "a's redial of the stopped b to fail")
    assert [e["level"] for e in a.events("peer_left", peer="b")] == ["info"]
    for event in ("peer_disconnected", "peer_state", "peer_dial_failed"):
        levels = {e["level"] for e in a.events(event, peer="b") if e.get("state") != "up"}
        assert levels == {"info"}, (event, a.events(event, peer="b"))
    (down,) = [e for e in a.events("peer_state", peer="b") if e["state"] == "down"]
    assert down["last_error"] == "stopped on purpose"
    # b comes back: its link is up again, and a later failure of it would be a warning again
    (tmp_path / "again").mkdir()
    b2 = PeerProc(config(certs_dir, "b", nodes), tmp_path / "again")
    procs.append(b2)
    wait_until(lambda: peer_up(a, "b"), 10, "a's link to the restarted b up")
    b2.proc.kill()
    assert b2.proc.wait(timeout=5) == -signal.SIGKILL
    wait_until(
        lambda: [e for e in a.events("peer_disconnected", peer="b") if e["level"] == "warning"],
        10,
        "the killed b's link to end with a warning",
    )
