"""Talk to a running node from outside it: ``connect(...)`` then ``ask`` / ``tell`` / ``status``.

    from supervisors.client import connect

    with connect(data_dir="./garrison-data/edge-1") as node:
        node.ask("root/counter", "incr", timeout=5)   # -> 1
        node.tell("root/counter", "incr")
        node.status()                                 # the running tree and the streams' offsets

Messages and replies are JSON values (strings, numbers, lists, objects). It speaks JSON lines over the
node's control socket (see ``supervisors.control``); only the node's user can open that socket.
"""

from __future__ import annotations

import itertools
import json
import socket
from pathlib import Path
from types import TracebackType
from typing import Any

from supervisors.control_paths import NodeEntry, connect_path, live_nodes, runtime_dir

__all__ = [
    "ActorCrashed",
    "AskTimedOut",
    "ControlError",
    "NoSuchActor",
    "NodeClient",
    "NodeNotRunning",
    "RequestFailed",
    "connect",
]

_MAX_ANSWER = 64 << 20


class ControlError(Exception):
    """Base of the client's errors; the message says what to do."""


class NodeNotRunning(ControlError):
    """No node answers where we looked."""


class NoSuchActor(ControlError):
    """The path names no actor (or one that will not be restarted); the message went to dead letters."""


class AskTimedOut(ControlError):
    """The actor did not answer within the timeout (it may still have handled the message)."""


class ActorCrashed(ControlError):
    """The actor crashed handling the message (its supervisor restarts it by its policy)."""


class RequestFailed(ControlError):
    """Any other refusal by the node: ``kind`` says which (bad_request, hold_full, busy, ...)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _find_node(node: str | None) -> NodeEntry:
    running = live_nodes()
    if node is not None:
        running = [e for e in running if e.node == node]
    where = f"{runtime_dir()}/nodes"
    if not running:
        who = f"node {node!r}" if node else "garrison node"
        raise NodeNotRunning(
            f"no running {who} found for this user (looked in {where}); start one with "
            "`garrison run TOPOLOGY`, or name it with --data-dir DIR or --topology FILE"
        )
    if len(running) > 1:
        listed = "; ".join(f"{e.node} ({e.data_dir})" for e in running)
        raise ControlError(
            f"several nodes are running ({listed}): pick one with --node NAME or --data-dir DIR"
        )
    return running[0]


def connect(
    data_dir: str | Path | None = None,
    topology: str | Path | None = None,
    node: str | None = None,
    timeout: float = 10.0,
) -> NodeClient:
    """Connect to a running node, named by its ``data_dir``, by ``topology`` file (+ ``node`` name when
    the file has several), by ``node`` name alone, or (nothing given) the one node this user runs."""
    if data_dir is None and topology is not None:
        from supervisors.topology import load_topology

        data_dir = load_topology(str(topology)).node(node).data_dir
    if data_dir is None:
        data_dir = _find_node(node).data_dir
    path = connect_path(data_dir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        raise NodeNotRunning(
            f"no node is listening on {path} ({exc.strerror}): start it with `garrison run TOPOLOGY` "
            f"(is {data_dir} the node's data_dir?)"
        ) from None
    except PermissionError:
        sock.close()
        raise ControlError(
            f"{path}: permission denied; only the user running the node may talk to it"
        ) from None
    return NodeClient(sock, str(data_dir))


class NodeClient:
    """One connection to a node's control socket. Not thread-safe; requests go one at a time."""

    def __init__(self, sock: socket.socket, data_dir: str) -> None:
        self.sock = sock
        self.data_dir = data_dir
        self._buf = b""
        self._ids = itertools.count(1)

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def ask(self, path: str, message: Any, timeout: float = 5.0) -> Any:
        """Send ``message`` to the actor at ``path`` and return its reply (raises on timeout or when
        the path names no actor)."""
        answer = self._call({"op": "ask", "path": path, "message": message, "timeout": timeout}, timeout)
        return answer.get("reply")

    def tell(self, path: str, message: Any) -> None:
        """Send ``message`` to ``path`` without waiting for an answer (an unknown path is dead-lettered by
        the node: see ``message_dead_lettered`` in its log)."""
        self._call({"op": "tell", "path": path, "message": message}, 5.0)

    def status(self) -> dict[str, Any]:
        """The supervision tree as running, and the streams' heads, offsets and lag."""
        status: dict[str, Any] = self._call({"op": "status"}, 5.0)["status"]
        return status

    def _call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        request["id"] = next(self._ids)
        try:
            data = json.dumps(request, allow_nan=False).encode() + b"\n"
        except (TypeError, ValueError) as exc:
            raise RequestFailed("bad_request", f"the message is not JSON: {exc}") from None
        self.sock.settimeout(timeout + 5.0)  # the node answers a timeout itself; this is the backstop
        try:
            self.sock.sendall(data)
            while True:
                answer = self._read_line()
                if answer.get("id") in (request["id"], None):
                    break
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise NodeNotRunning(f"the node stopped answering ({exc}); is it still running?") from None
        if answer.get("ok"):
            return answer
        kind, error = str(answer.get("kind", "")), str(answer.get("error", ""))
        if kind == "timeout":
            raise AskTimedOut(error)
        if kind == "crashed":
            raise ActorCrashed(error)
        if kind in ("no_such_actor", "not_restarted", "bad_path"):
            raise NoSuchActor(error)
        raise RequestFailed(kind, f"{kind}: {error}")

    def _read_line(self) -> dict[str, Any]:
        while b"\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the node")
            self._buf += chunk
            if len(self._buf) > _MAX_ANSWER:
                raise ConnectionError("answer too large")
        line, self._buf = self._buf.split(b"\n", 1)
        answer: dict[str, Any] = json.loads(line)
        return answer
