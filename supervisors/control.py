"""The node's control endpoint: a Unix domain socket only the node's user can open, speaking JSON lines.

Why a Thespian actor watching sockets (``ThespianWatch``), not a thread or a TCP port: the actor's own select
loop wakes it when the listening socket or a connection is readable, so there is no polling and no thread,
and it can route by name like any actor (it hands each request to the root supervisor as a ``Route``).
Why a Unix socket with JSON: file permissions (0600 in the 0700 data_dir) decide who may talk to the node,
and nothing that arrives is unpickled; each frame is decoded with a msgspec schema and bounded in size.

Frames, one JSON object per line::

    {"op": "ask", "path": "root/counter", "message": "incr", "timeout": 5, "id": 1}
    -> {"ok": true, "reply": 1, "id": 1}
    {"op": "tell", "path": "root/counter", "message": "incr"}   -> {"ok": true}
    {"op": "status"}                                              -> {"ok": true, "status": {...}}
    failures -> {"ok": false, "kind": "timeout"|"no_such_actor"|"bad_request"|..., "error": "..."}

The endpoint never creates actors and never writes to the event log (it reads heads and offsets for
``status``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import time
from datetime import timedelta
from typing import Any, Literal

import msgspec
from thespian.actors import (
    Actor,
    ActorExitRequest,
    ThespianWatch,
    WakeupMessage,
    WatchMessage,
)

from actors.logs import configure_logging, get_logger
from actors.messages import (
    AskFailed,
    ControlConfigure,
    ControlReady,
    Reply,
    Route,
    TreeStatus,
    TreeStatusRequest,
)
from supervisors.control_paths import NodeEntry, bind_path, register_node, unregister_node
from supervisors.stream_status import stream_status

__all__ = ["MAX_FRAME", "ControlEndpoint", "Request"]

MAX_FRAME = 1 << 20  # bytes in one request line; a longer line is answered with an error and closed
MAX_CONNECTIONS = 64
MAX_PENDING_PER_CONNECTION = 256
MAX_TIMEOUT_S = 3600.0
STATUS_TIMEOUT_S = 3.0  # a supervisor that does not answer within this is shown as "no answer"
_SEND_TIMEOUT_S = 2.0  # a client that does not read its answers is disconnected
CONTROL_SENDER = "control"


class Request(msgspec.Struct, forbid_unknown_fields=True):
    op: Literal["ask", "tell", "status"]
    path: str = ""
    message: Any = None
    timeout: float = 5.0
    id: int | str | None = None


_decoder = msgspec.json.Decoder(Request)
_encoder = msgspec.json.Encoder()


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.pending = 0


class ControlEndpoint(Actor):
    """See the module docstring. Created by the launcher once the root supervisor started."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cfg: ControlConfigure | None = None
        self.listener: socket.socket | None = None
        self.socket_path = ""
        self.link: str | None = None
        self.conns: dict[int, _Conn] = {}
        self.requests: dict[str, tuple[int, Any]] = {}  # request id -> (connection fd, client's id)
        self.ids = itertools.count(1)
        self.status_waiters: list[tuple[int, Any]] = []
        self.status_outstanding: set[str] = set()
        self.status_parts: dict[str, TreeStatus] = {}
        self.log: Any = get_logger()

    # -- Thespian entry ------------------------------------------------------------------------------

    def receiveMessage(self, msg: object, sender: Any) -> ThespianWatch | None:
        try:
            self._receive(msg, sender)
        except Exception as exc:  # one bad request or connection must never take the endpoint down
            self.log.error("control_endpoint_error", reason=f"{type(exc).__name__}: {exc}"[:500])
        if self.listener is None:
            return None
        return ThespianWatch([self.listener.fileno(), *self.conns])

    def _receive(self, msg: object, sender: Any) -> None:
        if isinstance(msg, ControlConfigure):
            self._configure(msg, sender)
        elif isinstance(msg, WatchMessage):
            for fd in list(msg.ready):
                if self.listener is not None and fd == self.listener.fileno():
                    self._accept()
                elif fd in self.conns:
                    self._read(fd)
        elif isinstance(msg, Reply):
            self._answer_request(msg.request_id, {"ok": True, "reply": msg.value})
        elif isinstance(msg, AskFailed):
            self._answer_request(msg.request_id, {"ok": False, "kind": msg.kind, "error": msg.reason})
        elif isinstance(msg, TreeStatus):
            self._status_part(msg)
        elif isinstance(msg, WakeupMessage):
            self._on_wakeup(msg.payload)
        elif isinstance(msg, ActorExitRequest):
            self._close_all()

    # -- setup and teardown --------------------------------------------------------------------------

    def _configure(self, cfg: ControlConfigure, sender: Any) -> None:
        if self.cfg is not None:
            return
        self.cfg = cfg
        configure_logging(cfg.log_format, cfg.node)
        self.log = get_logger(supervisor="control")
        try:
            path, link = bind_path(cfg.data_dir)
            self.listener = _listen(str(path))
            if link is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(link)
                os.symlink(path, link)
                self.link = str(link)
            self.socket_path = str(path)
            register_node(NodeEntry(cfg.node, str(cfg.data_dir), self.socket_path, os.getpid()))
        except OSError as exc:
            self.send(sender, ControlReady("", f"{type(exc).__name__}: {exc}"))
            return
        self.send(sender, ControlReady(self.socket_path))

    def _close_all(self) -> None:
        for fd in list(self.conns):
            self._drop(fd)
        if self.listener is not None:
            self.listener.close()
            self.listener = None
            for path in (self.socket_path, self.link):
                if path:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
            if self.cfg is not None:
                unregister_node(self.cfg.data_dir)

    # -- connections ---------------------------------------------------------------------------------

    def _accept(self) -> None:
        assert self.listener is not None
        try:
            sock, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        if len(self.conns) >= MAX_CONNECTIONS:
            with contextlib.suppress(OSError):
                sock.sendall(_line({"ok": False, "kind": "busy", "error": "too many connections"}))
            sock.close()
            return
        sock.setblocking(False)
        self.conns[sock.fileno()] = _Conn(sock)

    def _read(self, fd: int) -> None:
        conn = self.conns[fd]
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(fd)
            return
        conn.buf += data
        while b"\n" in conn.buf and fd in self.conns:
            line, conn.buf = conn.buf.split(b"\n", 1)
            if len(line) > MAX_FRAME:
                break
            if line.strip():
                self._request(fd, line)
        if fd in self.conns and len(conn.buf) > MAX_FRAME:
            error = f"request line longer than {MAX_FRAME} bytes"
            self._write(fd, {"ok": False, "kind": "frame_too_large", "error": error})
            self._drop(fd)

    def _drop(self, fd: int) -> None:
        conn = self.conns.pop(fd, None)
        if conn is not None:
            conn.sock.close()

    def _write(self, fd: int, answer: dict[str, Any]) -> None:
        conn = self.conns.get(fd)
        if conn is None:
            return  # the client went away: its late answer has nobody to go to
        try:
            data = _line(answer)
        except (TypeError, msgspec.EncodeError, ValueError) as exc:
            data = _line(
                {"ok": False, "kind": "unencodable_reply", "error": f"{exc}"[:500], "id": answer.get("id")}
            )
        try:
            conn.sock.settimeout(_SEND_TIMEOUT_S)
            conn.sock.sendall(data)
            conn.sock.setblocking(False)
        except OSError:
            self._drop(fd)

    # -- requests ------------------------------------------------------------------------------------

    def _request(self, fd: int, line: bytes) -> None:
        try:
            req = _decoder.decode(line)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            self._write(fd, {"ok": False, "kind": "bad_request", "error": f"{exc}"[:500]})
            return
        if req.op == "status":
            self._start_status(fd, req.id)
            return
        if not req.path:
            self._write(fd, {"ok": False, "kind": "bad_request", "error": "'path' is required", "id": req.id})
            return
        if not 0 < req.timeout <= MAX_TIMEOUT_S:
            error = f"'timeout' must be > 0 and <= {MAX_TIMEOUT_S:g} seconds"
            self._write(fd, {"ok": False, "kind": "bad_request", "error": error, "id": req.id})
            return
        assert self.cfg is not None
        path = req.path.lstrip("/")
        if req.op == "tell":
            self.send(self.cfg.root, Route(path, req.message, self.myAddress, CONTROL_SENDER, None))
            self._write(fd, {"ok": True, "id": req.id})
            return
        conn = self.conns[fd]
        if conn.pending >= MAX_PENDING_PER_CONNECTION:
            error = f"more than {MAX_PENDING_PER_CONNECTION} asks in flight on one connection"
            self._write(fd, {"ok": False, "kind": "busy", "error": error, "id": req.id})
            return
        request_id = f"control.{next(self.ids)}"
        self.requests[request_id] = (fd, req.id)
        conn.pending += 1
        self.wakeupAfter(timedelta(seconds=req.timeout), payload=("ask", request_id, path, req.timeout))
        self.send(self.cfg.root, Route(path, req.message, self.myAddress, CONTROL_SENDER, request_id))

    def _answer_request(self, request_id: str, answer: dict[str, Any]) -> None:
        found = self.requests.pop(request_id, None)
        if found is None:
            self.log.info("control_answer_late", request_id=request_id)
            return
        fd, client_id = found
        if fd in self.conns:
            self.conns[fd].pending -= 1
        self._write(fd, {**answer, "id": client_id})

    def _on_wakeup(self, payload: Any) -> None:
        if isinstance(payload, tuple) and payload[:1] == ("ask",):
            _, request_id, path, timeout = payload
            if request_id in self.requests:
                error = f"{path} did not answer within {timeout:g}s"
                self._answer_request(request_id, {"ok": False, "kind": "timeout", "error": error})
        elif payload == "status":
            self._finish_status()

    # -- status: the running tree, gathered supervisor by supervisor ----------------------------------

    def _start_status(self, fd: int, client_id: Any) -> None:
        assert self.cfg is not None
        self.status_waiters.append((fd, client_id))
        if len(self.status_waiters) > 1:
            return  # joins the collection under way
        self.status_parts, self.status_outstanding = {}, {"<root>"}
        self.send(self.cfg.root, TreeStatusRequest())
        self.wakeupAfter(timedelta(seconds=STATUS_TIMEOUT_S), payload="status")

    def _status_part(self, part: TreeStatus) -> None:
        if not self.status_waiters:
            return
        self.status_outstanding.discard("<root>" if not self.status_parts else part.supervisor)
        self.status_outstanding.discard(part.supervisor)
        self.status_parts[part.supervisor] = part
        for child in part.children:
            address = child.get("address")
            if child.get("supervisor") and address is not None and child.get("status") != "stopped":
                self.status_outstanding.add(str(child.get("path")))
                self.send(address, TreeStatusRequest())
        if not self.status_outstanding:
            self._finish_status()

    def _finish_status(self) -> None:
        if not self.status_waiters:
            return
        assert self.cfg is not None
        root = next(iter(self.status_parts.values()), None)
        tree = _assemble(root.supervisor, self.status_parts) if root else None
        status: dict[str, Any] = {
            "node": self.cfg.node,
            "data_dir": self.cfg.data_dir,
            "socket": self.socket_path,
            "at": time.time(),
            "tree": tree,
            "unanswered": sorted(self.status_outstanding),
        }
        try:
            status["streams"] = stream_status(self.cfg.data_dir)
        except Exception as exc:  # status must show the tree even when the log cannot be read
            status["streams"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        waiters, self.status_waiters = self.status_waiters, []
        self.status_outstanding = set()
        for fd, client_id in waiters:
            self._write(fd, {"ok": True, "status": status, "id": client_id})


def _assemble(path: str, parts: dict[str, TreeStatus]) -> dict[str, Any]:
    part = parts.get(path)
    node: dict[str, Any] = {"path": path, "children": []}
    if part is None:
        node["unanswered"] = True
        return node
    for child in part.children:
        entry = {k: v for k, v in child.items() if k != "address"}
        if child.get("supervisor"):
            entry["children"] = _assemble(str(child.get("path")), parts)["children"]
        node["children"].append(entry)
    return node


def _line(answer: dict[str, Any]) -> bytes:
    return _encoder.encode(answer) + b"\n"


def _listen(path: str) -> socket.socket:
    # the data_dir lock is held by this node's launcher: whatever socket file is there is a stale one
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # created 0600: never a moment where another user could connect
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(16)
    sock.setblocking(False)
    return sock
