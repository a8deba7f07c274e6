"""What a node's peer links need to know: who it is, who its peers are, their roles, and the limits.

A plain frozen dataclass so that the topology's cluster section (or a test) can build it without this
package knowing the topology file format. :meth:`PeerConfig.validate` says exactly what is wrong.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from supervisors.peer.frames import DEFAULT_MAX_FRAME, Lane

ROLES: Final = ("gateway", "edge")
SAN_SUFFIX: Final = ".garrison"

# Which lanes a node of each role may send. Only Raft members (gateways) speak Raft or ship snapshots;
# edge nodes forward proposals and gossip. Heartbeats are link-level and allowed for everyone.
ALLOWED_LANES: Final[dict[str, frozenset[Lane]]] = {
    "gateway": frozenset(Lane),
    "edge": frozenset({Lane.GOSSIP, Lane.FORWARD, Lane.HEARTBEAT}),
}

# Per-lane send queue bounds (frames). Raft's own inflight limits are the real flow control; the queue
# only has to absorb a burst. Snapshots are few, big chunks.
DEFAULT_QUEUE_SIZES: Final[dict[Lane, int]] = {
    Lane.RAFT: 1024,
    Lane.GOSSIP: 256,
    Lane.FORWARD: 1024,
    Lane.SNAPSHOT: 16,
}


class PeerConfigError(ValueError):
    """The peer-link configuration is inconsistent; the message names the field and what to change."""


@dataclasses.dataclass(frozen=True)
class PeerNode:
    name: str
    role: str
    host: str
    port: int

    @property
    def san(self) -> str:
        return node_san(self.name)


@dataclasses.dataclass(frozen=True)
class PeerConfig:
    node: str  # this node's name
    nodes: tuple[PeerNode, ...]  # every node of the topology, this one included
    ca: Path
    cert: Path
    key: Path
    listen_host: str = "127.0.0.1"
    listen_port: int | None = None  # None: this node's own entry in ``nodes``
    heartbeat_ms: int = 200
    suspect_after_missed: int = 2  # no echo for this many heartbeat periods: suspect
    down_after_missed: int = 5  # ... for this many: down, the connection is closed and re-dialled
    connect_timeout_ms: int = 2000  # TCP connect + TLS handshake, either side
    backoff_min_ms: int = 50
    backoff_max_ms: int = 2000
    max_frame: int = DEFAULT_MAX_FRAME
    queue_sizes: Mapping[Lane, int] = dataclasses.field(default_factory=lambda: dict(DEFAULT_QUEUE_SIZES))
    peers: tuple[str, ...] | None = None  # whom to link with; None: every other node

    def validate(self) -> PeerConfig:
        names = [n.name for n in self.nodes]
        lowered = [n.lower() for n in names]
        dupes = sorted({n for n in names if lowered.count(n.lower()) > 1})
        if dupes:
            raise PeerConfigError(
                f"peer config: nodes {dupes} appear more than once (names compare case-insensitively, "
                "as certificate names do); give each node one distinct name"
            )
        if self.node not in names:
            raise PeerConfigError(f"peer config: node {self.node!r} is not among the nodes {names}")
        for n in self.nodes:
            if n.role not in ROLES:
                raise PeerConfigError(f"peer config: nodes.{n.name}.role {n.role!r} must be one of {ROLES}")
            if not 0 < n.port < 65536:
                raise PeerConfigError(f"peer config: nodes.{n.name}.port {n.port} is not a TCP port")
        addresses = [(n.host, n.port) for n in self.nodes]
        clash = sorted({f"{h}:{p}" for h, p in addresses if addresses.count((h, p)) > 1})
        if clash:
            raise PeerConfigError(f"peer config: peer addresses {clash} are used by more than one node")
        for peer in self.peers or ():
            if peer not in names or peer == self.node:
                raise PeerConfigError(f"peer config: peers entry {peer!r} is not another node of {names}")
        for field in ("heartbeat_ms", "connect_timeout_ms", "backoff_min_ms", "max_frame"):
            if getattr(self, field) <= 0:
                raise PeerConfigError(f"peer config: {field} must be > 0, not {getattr(self, field)}")
        if not 0 < self.suspect_after_missed < self.down_after_missed:
            raise PeerConfigError("peer config: need 0 < suspect_after_missed < down_after_missed")
        if self.backoff_max_ms < self.backoff_min_ms:
            raise PeerConfigError("peer config: backoff_max_ms must be >= backoff_min_ms")
        for lane in DEFAULT_QUEUE_SIZES:
            if self.queue_sizes.get(lane, 0) <= 0:
                raise PeerConfigError(f"peer config: queue_sizes[{lane.name}] must be a positive frame count")
        return self

    def me(self) -> PeerNode:
        return next(n for n in self.nodes if n.name == self.node)

    def by_name(self) -> dict[str, PeerNode]:
        return {n.name: n for n in self.nodes}

    def peer_names(self) -> tuple[str, ...]:
        if self.peers is not None:
            return tuple(self.peers)
        return tuple(n.name for n in self.nodes if n.name != self.node)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form (for handing the config to a gateway process started by exec)."""
        data = dataclasses.asdict(self)
        data["ca"], data["cert"], data["key"] = str(self.ca), str(self.cert), str(self.key)
        data["queue_sizes"] = {lane.name: size for lane, size in self.queue_sizes.items()}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PeerConfig:
        fields = dict(data)
        unknown = set(fields) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise PeerConfigError(f"peer config: unknown keys {sorted(unknown)}")
        try:
            fields["nodes"] = tuple(PeerNode(**n) for n in fields["nodes"])
            for key in ("ca", "cert", "key"):
                fields[key] = Path(fields[key])
            if "queue_sizes" in fields:
                fields["queue_sizes"] = {Lane[k]: int(v) for k, v in fields["queue_sizes"].items()}
            if fields.get("peers") is not None:
                fields["peers"] = tuple(fields["peers"])
            return cls(**fields).validate()
        except (KeyError, TypeError) as error:
            raise PeerConfigError(f"peer config: missing or malformed field: {error}") from None


def node_san(name: str) -> str:
    """The DNS SAN a node's certificate carries and its peers expect: ``<node>.garrison``."""
    return f"{name.lower()}{SAN_SUFFIX}"  # as supervisors/certs.py writes it
