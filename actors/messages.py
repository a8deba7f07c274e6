"""Control messages between supervisors, supervised actors and the node launcher.

Module-level frozen dataclasses: Thespian pickles messages by module path, so each class has exactly one
import path, and nothing passed between actors is mutable. Bulk data never travels here: it goes through
the event log (see ``actors.eventlog``); these messages only carry control and small notifications.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Configure:
    """First message to every supervised actor: who it is, where its state lives, its arguments."""

    node: str
    supervisor: str  # path of the supervising supervisor, e.g. "root/pipeline"; "" for the root
    child_id: str
    args: dict[str, Any]
    data_dir: str
    log_format: str
    incarnation: int  # 1 for the first start, +1 for every restart of this child id
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChildSpawned:
    """Sent by a child as soon as it is configured, before recovery and ``on_start``: its PID lets the
    supervisor kill it if it hangs (a busy Thespian actor never reads a stop request)."""

    child_id: str
    incarnation: int
    pid: int
    session: int


@dataclass(frozen=True, slots=True)
class ChildStarted:
    """Sent by a child when ``on_start`` returned and its state is recovered: it now accepts work."""

    child_id: str
    incarnation: int
    pid: int
    session: int


@dataclass(frozen=True, slots=True)
class ChildFailed:
    """Sent by a child exactly once when ``on_start`` or a handler raised (or a subtree escalated)."""

    child_id: str
    incarnation: int
    reason: str  # "ExcType: message" (one line)
    exc_type: str
    traceback_digest: str  # short hash of the failing frames: equal digests = the same bug
    location: str  # file:line of the innermost frame
    message_type: str  # what was handled: "on_start", "timer:<name>" or the message class
    traceback_text: str = ""  # the formatted traceback, bounded (the digest identifies the bug)
    # the input being processed when it crashed, for poison quarantine: {"kind": "stream", "stream",
    # "first", "last"} (a batch of event-log records) or {"kind": "message", "message_type", "digest"}
    input_ref: dict[str, Any] | None = None
    # the ask being handled when it crashed: the SUPERVISOR answers it (AskFailed "crashed"), because the
    # crashed process is SIGKILLed as soon as this report arrives and its own last sends could be lost
    failed_ask: AskFailed | None = None
    failed_ask_to: Any = None  # the asker's address (Thespian ActorAddress)


@dataclass(frozen=True, slots=True)
class ChildExiting:
    """Sent by a child that stops on its own accord (a normal exit: not restarted when transient)."""

    child_id: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class StopChild:
    """Supervisor -> child: stop gracefully (run ``on_stop``, stop own children, exit)."""

    reason: str = "shutdown"


@dataclass(frozen=True, slots=True)
class RootEscalated:
    """Root supervisor -> node launcher: the tree gave up; the node must exit non-zero."""

    reason: str
    child: str


@dataclass(frozen=True, slots=True)
class TreeStopped:
    """Root supervisor -> node launcher: every child stopped after a ``StopChild`` from the launcher."""


@dataclass(frozen=True, slots=True)
class TreeStatusRequest:
    """Ask a supervisor for the state of its children (recursively answered by nested supervisors)."""


@dataclass(frozen=True, slots=True)
class TreeStatus:
    supervisor: str
    children: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class WhereIs:
    """Ask a supervisor for the address of one of its running children (siblings find each other)."""

    child_id: str


@dataclass(frozen=True, slots=True)
class Location:
    child_id: str
    address: Any  # Thespian ActorAddress, or None when that child is not running


@dataclass(frozen=True, slots=True)
class Reconfigure:
    """Launcher -> root supervisor (routed down by path): new ``args`` for the worker at ``path``
    (e.g. ``pipeline/inference``), applied by restarting that worker alone with them."""

    path: str
    args: dict[str, Any]


# -- names: tell/ask by tree path (routed through the supervisors, held while the target restarts) -------


@dataclass(frozen=True, slots=True)
class Route:
    """An application message addressed by name: ``body`` for the actor at the absolute tree ``path``.

    Sent by an actor to its supervisor, which passes it down toward the path or up to its parent; the
    target's own supervisor delivers it, or holds it while that child is (re)starting. ``reply_to`` is the
    originator's Thespian address; ``request_id`` is set for an ask, whose answer goes straight to
    ``reply_to`` as a :class:`Reply`."""

    path: str
    body: Any
    reply_to: Any  # Thespian ActorAddress of the sender (None when it has none)
    sender_path: str
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to an ask: ``value`` is what the target passed to ``reply`` (or ``send(sender, ...)``)."""

    request_id: str
    value: Any


@dataclass(frozen=True, slots=True)
class AskTimeout:
    """No reply to the ask ``request_id`` (to ``path``) within its timeout."""

    request_id: str
    path: str
    timeout: float


@dataclass(frozen=True, slots=True)
class AskFailed:
    """The ask ``request_id`` could not be delivered: ``kind`` is ``no_such_actor``, ``hold_full`` or
    ``not_restarted``; the message went to dead letters (``deadletters/routing``)."""

    request_id: str
    path: str
    kind: str
    reason: str


# -- the control endpoint (node-local Unix socket; see supervisors/control.py) --------------------------


@dataclass(frozen=True, slots=True)
class ControlConfigure:
    """Launcher -> control endpoint: where to listen and whom to route to."""

    node: str
    data_dir: str
    root: Any  # the root supervisor's ActorAddress
    log_format: str


@dataclass(frozen=True, slots=True)
class ControlReady:
    """Control endpoint -> launcher: listening on ``socket_path`` (``error`` set when it could not)."""

    socket_path: str
    error: str = ""


# -- the peer gateway (a node's links to other nodes; see supervisors/peer/shell.py) ---------------------


@dataclass(frozen=True, slots=True)
class PeerSend:
    """Raft replica -> the node's peer gateway shell (``root/peer``): deliver ``body`` to the replica on
    node ``to_node``. ``kind`` is ``raft`` (raft-codec bytes of one Message) or ``propose`` (msgpack list of
    signed entries a follower forwards to the leader). Loss is allowed: Raft retries."""

    to_node: str
    body: bytes
    kind: str = "raft"


@dataclass(frozen=True, slots=True)
class PeerGatewayUp:
    """Peer gateway shell -> the local Raft replica, at each (re)start: send ``PeerSend`` to this sender
    (its address changes with every restart of the shell)."""

    pid: int
