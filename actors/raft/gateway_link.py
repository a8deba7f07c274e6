"""The Raft lane between a node's replica and its peer gateway process: one Unix socket, no relay.

Before, every Raft message crossed the gateway shell on both nodes: replica -> (Thespian) -> shell ->
(stdin) -> gateway -> TLS -> gateway -> (stdout) -> shell -> (Thespian) -> replica. Each Thespian message
is pickled, HMAC-signed and acknowledged, and only one is in flight per target (the second append of a
broadcast waited for the ack of the first), so on a loaded 2-core machine a one-way trip took 10-15 ms,
more than a durable LMDB commit. Here the replica connects straight to its gateway:
replica -> (socket) -> gateway -> TLS -> gateway -> (socket) -> replica, two processes fewer per
direction and no Thespian message at all. The relay through the shell stays as the fallback while the
socket is not connected (the gateway is starting or restarting), so Raft never waits for it.

``<data_dir>/raft.sock``: created 0600 by the gateway inside the node's 0700 data_dir, and the gateway
also checks that a client runs as its own user (``SO_PEERCRED``). Frames are the shell pipe's
(``supervisors.peer.bridge``: ``u32 length | msgpack PipeRaft``, decoded with a schema, never pickle).
The gateway serves one client, the newest (a restarted replica's connection replaces its predecessor's).
Loss is allowed on this lane as on the pipe: a full buffer drops, Raft retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

from actors.hoptrace import stamp
from supervisors.peer.bridge import (
    MAX_PIPE_FRAME,
    PipeError,
    PipeMessage,
    PipeRaft,
    PipeReader,
    encode_pipe,
)

SOCKET_NAME: Final = "raft.sock"
BUFFER_LIMIT: Final = 8 << 20  # bytes waiting for a reader before frames are dropped (each side)
_READ: Final = 1 << 20
_SUN_PATH_MAX: Final = 100  # sun_path holds 108 bytes on Linux; longer paths go through /proc/self/fd
_CRED: Final = struct.Struct("3i")  # struct ucred: pid, uid, gid

__all__ = ["RaftLinkClient", "RaftLinkServer", "encode_pipe", "socket_path"]


def socket_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / SOCKET_NAME


@contextlib.contextmanager
def _addressable(path: Path) -> Iterator[str]:
    """A name ``bind``/``connect`` accept for ``path``: itself, or when too long for ``sun_path`` the same
    file through an open descriptor of its directory (``/proc/self/fd/N/raft.sock``)."""
    if len(os.fsencode(path)) < _SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


class _Buffered:
    """A non-blocking stream socket with a bounded output buffer (shared by both ends)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.out = bytearray()
        self.reader = PipeReader()
        self.dropped = 0

    def queue(self, frame: bytes) -> bool:
        """Buffer ``frame`` and write what the socket takes now; False if dropped (buffer full, or a frame
        the reader would refuse). An empty buffer takes any frame the reader accepts, so a snapshot larger
        than BUFFER_LIMIT still crosses. Raises OSError when the connection is broken."""
        too_big = len(frame) > MAX_PIPE_FRAME + 4  # + the length prefix
        if too_big or (self.out and len(self.out) + len(frame) > BUFFER_LIMIT):
            self.dropped += 1
            return False
        self.out += frame
        self.flush()
        return True

    def flush(self) -> bool:
        """Write what the socket takes; True while bytes remain. Raises OSError when broken."""
        while self.out:
            try:
                n = self.sock.send(self.out)
            except BlockingIOError:
                return True
            del self.out[:n]
        return False

    def receive(self) -> list[PipeMessage] | None:
        """The complete frames readable now; None once the peer closed. Raises OSError, PipeError."""
        messages: list[PipeMessage] = []
        while True:
            try:
                data = self.sock.recv(_READ)
            except BlockingIOError:
                return messages
            if not data:
                return None
            messages += self.reader.feed(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class RaftLinkClient:
    """The replica's end (synchronous: the actor watches :attr:`fileno` and calls :meth:`receive` when it
    is readable, :meth:`flush` while :meth:`send` left bytes behind)."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.path = socket_path(data_dir)
        self.conn: _Buffered | None = None
        self.connects = 0  # connections made (the first included): > 1 after a gateway restart
        self.sent = 0  # frames taken for the gateway
        self.received = 0  # frames from the gateway

    @property
    def connected(self) -> bool:
        return self.conn is not None

    @property
    def fileno(self) -> int:
        assert self.conn is not None, "connect() first"
        return self.conn.sock.fileno()

    def connect(self) -> bool:
        """Connect if the gateway listens (a local connect is immediate); False if it does not (yet)."""
        if self.conn is not None:
            return True
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _addressable(self.path) as name:
                sock.connect(name)
        except OSError:
            sock.close()
            return False
        self.conn = _Buffered(sock)
        self.connects += 1
        return True

    def send(self, peer: str, data: bytes, kind: str) -> bool:
        """Queue a Raft message for the replica on node ``peer``; False if it was not taken (not
        connected, buffer full, or the connection broke: then it is closed): use the fallback."""
        if self.conn is None:
            return False
        try:
            taken = self.conn.queue(encode_pipe(PipeRaft(peer, data, kind)))
        except OSError:
            self.close()
            return False
        self.sent += taken
        return taken

    @property
    def pending(self) -> bool:
        return self.conn is not None and bool(self.conn.out)

    def flush(self) -> bool:
        """Write buffered bytes; True while some remain."""
        if self.conn is None:
            return False
        try:
            return self.conn.flush()
        except OSError:
            self.close()
            return False

    def receive(self) -> list[PipeMessage] | None:
        """Raft messages (and drop notices) from the gateway; None when the link closed (it is closed
        here too)."""
        if self.conn is None:
            return None
        try:
            messages = self.conn.receive()
        except (OSError, PipeError):
            messages = None
        if messages is None:
            self.close()
            return None
        self.received += sum(isinstance(m, PipeRaft) for m in messages)
        return messages

    def status(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "connects": self.connects,
            "sent": self.sent,
            "received": self.received,
            "dropped": self.conn.dropped if self.conn is not None else 0,
        }

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class RaftLinkServer:
    """The gateway's end, in its asyncio loop: ``on_message(PipeRaft)`` for every frame the replica sends;
    :meth:`send` a frame to the replica (False while none is connected, or if dropped)."""

    def __init__(
        self, data_dir: str | os.PathLike[str], on_message: Callable[[PipeRaft], None], log: Any
    ) -> None:
        self.path = socket_path(data_dir)
        self.on_message = on_message
        self.log = log
        self.listener: socket.socket | None = None
        self.client: _Buffered | None = None
        self.writing = False
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Listen; False (logged) if the socket cannot be made: the replica then keeps the shell relay."""
        self.loop = loop
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # left by an earlier gateway: a new one replaces it
            with _addressable(self.path) as name:
                sock.bind(name)
            os.chmod(self.path, 0o600)  # inside the 0700 data_dir already; and the uid is checked at accept
            sock.listen(4)
        except OSError as exc:
            sock.close()
            self.log.error(
                "raft_link_unavailable",
                path=str(self.path),
                reason=f"{type(exc).__name__}: {exc}; Raft goes through the gateway shell instead",
            )
            return False
        sock.setblocking(False)
        self.listener = sock
        loop.add_reader(sock.fileno(), self._accept)
        return True

    @property
    def connected(self) -> bool:
        return self.client is not None

    def _accept(self) -> None:
        assert self.listener is not None and self.loop is not None
        try:
            sock, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        _pid, uid, _gid = _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
        if uid != os.getuid():
            sock.close()
            self.log.warning("raft_link_refused", reason=f"client runs as uid {uid}, not {os.getuid()}")
            return
        self._drop("replaced by a new connection")
        self.client = _Buffered(sock)
        self.loop.add_reader(sock.fileno(), self._read)
        self.log.info("raft_link_connected", path=str(self.path))

    def _read(self) -> None:
        client = self.client
        if client is None:
            return
        try:
            messages = client.receive()
            stamp("G from_replica")
        except (OSError, PipeError) as exc:
            self._drop(f"{type(exc).__name__}: {exc}")
            return
        if messages is None:
            self._drop("closed by the replica")
            return
        for msg in messages:
            if isinstance(msg, PipeRaft):
                self.on_message(msg)

    def send(self, frame: bytes) -> bool:
        """Queue an encoded pipe frame for the replica; False when none is connected or it was dropped."""
        client = self.client
        if client is None:
            return False
        try:
            taken = client.queue(frame)
        except OSError as exc:
            self._drop(f"{type(exc).__name__}: {exc}")
            return False
        self._watch_writable()
        return taken

    def _flush(self) -> None:
        client = self.client
        if client is None:
            return
        try:
            client.flush()
        except OSError as exc:
            self._drop(f"{type(exc).__name__}: {exc}")
            return
        self._watch_writable()

    def _watch_writable(self) -> None:
        assert self.loop is not None
        client = self.client
        want = client is not None and bool(client.out)
        if want and not self.writing and client is not None:
            self.loop.add_writer(client.sock.fileno(), self._flush)
            self.writing = True
        elif not want and self.writing:
            if client is not None:
                self.loop.remove_writer(client.sock.fileno())
            self.writing = False

    def _drop(self, reason: str) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        assert self.loop is not None
        self.loop.remove_reader(client.sock.fileno())
        if self.writing:
            self.loop.remove_writer(client.sock.fileno())
            self.writing = False
        client.close()
        self.log.info("raft_link_closed", reason=reason, dropped=client.dropped)

    def close(self) -> None:
        self._drop("gateway stopping")
        if self.listener is not None and self.loop is not None:
            self.loop.remove_reader(self.listener.fileno())
            self.listener.close()
            self.listener = None
        # the socket file stays: a restarted gateway may already have bound a new one at the same path
