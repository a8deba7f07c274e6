"""Frame authentication: nothing reaches pickle.loads without this node's MAC; rejections are logged, rate-limited."""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from supervisors import frame_auth
from supervisors.frame_auth import MAC_BYTES, AuthenticatedPickle, FrameRejected, RejectionLog

REPO = Path(__file__).resolve().parents[2]
SECRET = bytes(range(32))


class MakesDir:
    """A pickle that runs code when loaded: ``os.mkdir(path)``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (os.mkdir, (str(self.path),))


def quiet_codec(secret: bytes = SECRET) -> AuthenticatedPickle:
    return AuthenticatedPickle(secret, RejectionLog(burst=1000))


def test_a_frame_with_the_right_mac_passes() -> None:
    codec = quiet_codec()
    message = (("127.0.0.1", 4100), {"incr": 1, "payload": b"\x00" * 100})
    frame = codec.dumps(message)
    assert frame[MAC_BYTES:] == pickle.dumps(message)
    assert codec.loads(frame) == message


def test_a_frame_without_a_mac_is_rejected_before_it_is_unpickled(tmp_path: Path) -> None:
    codec = quiet_codec()
    attack = pickle.dumps(MakesDir(tmp_path / "ran"))
    with pytest.raises(FrameRejected):
        codec.loads(attack)
    with pytest.raises(FrameRejected):
        codec.loads(b"\x00" * (MAC_BYTES + len(attack)) + attack)  # a zero MAC in front
    assert not (tmp_path / "ran").exists()
    pickle.loads(attack)  # the same bytes do run code when unpickled: the attack was real
    assert (tmp_path / "ran").is_dir()


def test_a_frame_made_with_another_secret_is_rejected(tmp_path: Path) -> None:
    forged = quiet_codec(os.urandom(32)).dumps(MakesDir(tmp_path / "ran"))
    with pytest.raises(FrameRejected, match="does not match"):
        quiet_codec().loads(forged)
    assert not (tmp_path / "ran").exists()


def test_tampering_with_any_single_byte_fails() -> None:
    codec = quiet_codec()
    frame = codec.dumps(("sender", "incr"))
    for i in range(len(frame)):
        tampered = bytearray(frame)
        tampered[i] ^= 0x01
        with pytest.raises(FrameRejected):
            codec.verify(bytes(tampered))
    with pytest.raises(FrameRejected):
        codec.verify(frame[:-1])  # truncated
    with pytest.raises(FrameRejected, match="shorter"):
        codec.verify(frame[:MAC_BYTES])  # a MAC and nothing to cover


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="32 random bytes"):
        AuthenticatedPickle(b"too short")


def test_rejections_are_logged_with_the_peer_and_the_connection_is_shut_down() -> None:
    codec = quiet_codec()
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        client_port, server_port = client.getsockname()[1], server.getsockname()[1]
        try:
            frame_auth._current.sock = accepted  # what the transport wrapper sets around a decode
            with capture_logs() as logs, pytest.raises(FrameRejected):
                codec.loads(b"5>junk!" * 10)
            frame_auth._current.sock = None
            client.settimeout(5)
            assert client.recv(100) == b""  # the attacker gets nothing back, not even an error ack
        finally:
            client.close()
            accepted.close()
    [event] = logs
    assert event["event"] == "frame_rejected" and event["log_level"] == "warning"
    assert event["peer"] == f"127.0.0.1:{client_port}"
    assert event["local_port"] == server_port
    assert event["frame_bytes"] == 70 and event["suppressed"] == 0 and event["pid"] == os.getpid()


def test_rejection_lines_are_rate_limited_and_count_what_they_suppressed() -> None:
    now = [0.0]
    limit = RejectionLog(burst=3, every_s=10.0, clock=lambda: now[0])
    codec = AuthenticatedPickle(SECRET, limit)
    with capture_logs() as logs:
        for _ in range(1000):  # a flood
            with pytest.raises(FrameRejected):
                codec.loads(b"x" * 40)
        assert len(logs) == 3
        now[0] += 10.0  # one token back
        with pytest.raises(FrameRejected):
            codec.loads(b"x" * 40)
    assert [e["suppressed"] for e in logs] == [0, 0, 0, 997]


def test_install_patches_thespians_tcp_framing_once_and_acks_carry_the_mac() -> None:
    # In a subprocess: install() patches Thespian for the whole process, and this process runs other tests.
    script = """
import pickle
from thespian.system.transport import TCPTransport as tcp
from thespian.system.transport.streamBuffer import ReceiveBuffer, toSendBuffer
from actors.logs import configure_logging
from supervisors import frame_auth

configure_logging("json", "unit")
assert tcp.serializer is pickle
codec = frame_auth.install()
assert frame_auth.install() is codec and frame_auth.installed() is codec  # idempotent: one secret
assert tcp.serializer is codec
for ack, packet in ((tcp.ackMsg, "ACK"), (tcp.ackDataErrMsg, "ACK+DATAERR")):
    buf = ReceiveBuffer(tcp.serializer.loads)
    buf.addMore(ack)
    assert buf.completed() == (packet, b"")
wire = toSendBuffer(("sender", "incr"), tcp.serializer.dumps)  # what TCPTransport.serializer() sends
buf = ReceiveBuffer(tcp.serializer.loads)
buf.addMore(wire)
assert buf.completed() == (("sender", "incr"), b"")
plain = ReceiveBuffer(tcp.serializer.loads)
plain.addMore(toSendBuffer(("sender", "incr")))  # the old, unauthenticated framing
try:
    plain.completed()
except frame_auth.FrameRejected:
    print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok", out.stdout + out.stderr
    [line] = [json.loads(x) for x in out.stderr.splitlines() if x.startswith("{")]
    assert line["event"] == "frame_rejected" and line["node"] == "unit", line
