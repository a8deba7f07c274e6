"""Only a process of this node can get a frame unpickled: HMAC-SHA256 on every Thespian TCP frame.

Thespian's TCP transport (``thespian/system/transport/TCPTransport.py``) frames a message as
``b"%d>" % len(body) + body`` with ``body = serializer.dumps((sender, message))`` and hands every complete body
to ``serializer.loads`` (``pickle``), both for incoming messages and for the acknowledgement a sender waits
for. Any local user who can connect to 127.0.0.1 could therefore run code as the node's user.

:func:`install` swaps that module's ``serializer`` for :class:`AuthenticatedPickle`: ``dumps`` prefixes the
pickle with ``HMAC-SHA256(secret, pickle)``; ``loads`` checks it (constant time) before ``pickle.loads`` ever
sees a byte, and raises :class:`FrameRejected` otherwise. The secret is ``os.urandom(32)`` made once per node
in the launcher before its ``ActorSystem`` exists; the admin, Thespian's logger and every actor are forked
from it (Thespian's default ``fork`` start method, checked here), so they inherit it in memory. It is never
written to a file, the environment or a command line; only the node's user (ptrace rights) can read it.

A rejected frame is logged (``frame_rejected``, rate-limited), its connection is shut down before Thespian
can answer, and Thespian's own error handling drops the half-read message; the process goes on serving.
Not covered: replay of a captured frame (reading loopback traffic already needs root) and Thespian's UDP
and multiprocessing-queue transports (garrison uses neither).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import multiprocessing
import os
import pickle
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors.logs import get_logger

SECRET_BYTES = 32
MAC_BYTES = hashlib.sha256().digest_size
# Each process logs at most LOG_BURST rejections at once, then one per LOG_EVERY_S: a flood of bad frames
# costs an attacker a connection each but costs the disk only a few lines a minute per process.
LOG_BURST = 10
LOG_EVERY_S = 6.0


class FrameRejected(Exception):
    """A Thespian frame without a valid MAC: it was not sent by a process of this node."""


class FrameAuthUnavailable(RuntimeError):
    """The per-node secret cannot reach the actor processes."""


@dataclass
class RejectionLog:
    """Token bucket for ``frame_rejected`` lines; the next line logged carries how many were suppressed."""

    burst: int = LOG_BURST
    every_s: float = LOG_EVERY_S
    clock: Callable[[], float] = time.monotonic
    tokens: float = field(init=False)
    last: float = field(init=False)
    suppressed: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)
        self.last = self.clock()

    def admit(self) -> int | None:
        """``None`` if this rejection must not be logged, else the count suppressed since the last line."""
        now = self.clock()
        self.tokens = min(float(self.burst), self.tokens + (now - self.last) / self.every_s)
        self.last = now
        if self.tokens < 1.0:
            self.suppressed += 1
            return None
        self.tokens -= 1.0
        suppressed, self.suppressed = self.suppressed, 0
        return suppressed


# The socket whose frame is being decoded, set around Thespian's two decode sites (a thread-local because
# the launcher's ActorSystem client may be used from more than one thread).
_current = threading.local()


class AuthenticatedPickle:
    """Drop-in for the ``pickle`` module as Thespian's TCP ``serializer``: ``dumps`` and ``loads`` only."""

    def __init__(self, secret: bytes, rejections: RejectionLog | None = None) -> None:
        if len(secret) < SECRET_BYTES:
            raise ValueError(f"the frame secret must be at least {SECRET_BYTES} random bytes")
        self._secret = secret
        self.rejections = rejections or RejectionLog()

    def mac(self, payload: bytes) -> bytes:
        return hmac.digest(self._secret, payload, "sha256")  # one-shot OpenSSL HMAC: the fastest path

    def dumps(self, obj: Any) -> bytes:
        payload = pickle.dumps(obj)
        return self.mac(payload) + payload

    def verify(self, frame: bytes) -> bytes:
        """The pickle inside ``frame``, or :class:`FrameRejected`; nothing is unpickled here."""
        frame = bytes(frame)
        if len(frame) <= MAC_BYTES:
            raise FrameRejected(f"frame of {len(frame)} bytes is shorter than its {MAC_BYTES}-byte MAC")
        tag, payload = frame[:MAC_BYTES], frame[MAC_BYTES:]
        if not hmac.compare_digest(tag, self.mac(payload)):
            raise FrameRejected("frame MAC does not match this node's secret")
        return payload

    def loads(self, frame: bytes) -> Any:
        try:
            payload = self.verify(frame)
        except FrameRejected as rejected:
            self._reject(rejected, len(frame))
            raise
        return pickle.loads(payload)

    def _reject(self, rejected: FrameRejected, size: int) -> None:
        sock = getattr(_current, "sock", None)
        peer, local_port = _endpoints(sock)
        if sock is not None:
            # Before Thespian sends its courtesy "ACK+DATAERR": an unauthenticated peer gets no byte back.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        suppressed = self.rejections.admit()
        if suppressed is not None:
            get_logger().warning(
                "frame_rejected",
                reason=str(rejected),
                peer=peer,
                local_port=local_port,
                frame_bytes=size,
                pid=os.getpid(),
                suppressed=suppressed,
            )


def _endpoints(sock: Any) -> tuple[str | None, int | None]:
    sock = getattr(sock, "socket", sock)  # Thespian wraps some sockets
    peer = local_port = None
    with contextlib.suppress(Exception):
        host, port = sock.getpeername()[:2]
        peer = f"{host}:{port}"
    with contextlib.suppress(Exception):
        local_port = int(sock.getsockname()[1])
    return peer, local_port


def _decoding(sock_of: Callable[..., Any], method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a transport method so that a rejection inside it knows which socket the frame came on."""

    def wrapped(self: Any, item: Any, *args: Any, **kwargs: Any) -> Any:
        previous = getattr(_current, "sock", None)
        _current.sock = sock_of(item)
        try:
            return method(self, item, *args, **kwargs)
        finally:
            _current.sock = previous

    return wrapped


def _ack_rejected(method: Callable[..., Any]) -> Callable[..., Any]:
    """A forged acknowledgement (someone now holds a dead actor's port) fails that send, like ACK+DATAERR.

    Unwrapped, the exception would abort the transmit without finishing it and leak one of the 20 slots.
    """

    def wrapped(self: Any, intent: Any, rcv: bytes) -> Any:
        try:
            return method(self, intent, rcv)
        except FrameRejected:
            from thespian.system.transport import SendStatus

            intent.result = SendStatus.BadPacket
            intent.stage = self._XMITStepFinishCleanup
            return self._nextTransmitStep(intent)

    return wrapped


_installed: AuthenticatedPickle | None = None


def install(secret: bytes | None = None) -> AuthenticatedPickle:
    """Authenticate every frame of Thespian's TCP transport in this process and the ones it forks.

    Call before the ``ActorSystem`` is created. Idempotent: later calls keep the first secret (a running
    admin holds it), so ``secret`` only matters on the first call (tests; ``None`` makes a fresh one).
    """
    global _installed
    if _installed is not None:
        return _installed
    if "fork" not in multiprocessing.get_all_start_methods():
        raise FrameAuthUnavailable(
            "Thespian cannot fork here, so actor processes would not inherit the frame secret; "
            "run garrison on Linux (or another platform with fork)"
        )
    from thespian.system.transport import TCPTransport as tcp
    from thespian.system.transport.streamBuffer import ackDataErrPacket, ackPacket, toSendBuffer

    codec = AuthenticatedPickle(secret if secret is not None else os.urandom(SECRET_BYTES))
    # Thespian reads these module globals at call time (ReceiveBuffer(serializer.loads), serializer.dumps,
    # socket.send(ackMsg)), so replacing them covers every frame, acknowledgements included.
    tcp.serializer = codec
    tcp.ackMsg = toSendBuffer(ackPacket, codec.dumps)
    tcp.ackDataErrMsg = toSendBuffer(ackDataErrPacket, codec.dumps)
    transport = tcp.TCPTransport
    transport._addedDataToIncoming = _decoding(lambda inc: inc.socket, transport._addedDataToIncoming)
    transport._check_XMIT_4_done = _ack_rejected(
        _decoding(lambda intent: getattr(intent, "socket", None), transport._check_XMIT_4_done)
    )
    _installed = codec
    return codec


def installed() -> AuthenticatedPickle | None:
    return _installed
