"""Links between nodes: mTLS over asyncio, length-prefixed msgspec frames on lanes, per-peer queues.

Runs in the node's peer gateway process (started by exec, never forked by Thespian: an asyncio loop and
TLS contexts must not cross a fork). Nothing here imports Thespian.
"""

from supervisors.peer.config import PeerConfig, PeerConfigError, PeerNode
from supervisors.peer.frames import (
    BadFrame,
    ForwardFrame,
    GossipFrame,
    Heartbeat,
    Lane,
    RaftFrame,
    SnapshotChunk,
)
from supervisors.peer.links import LaneNotAllowed, PeerLinks, UnknownPeer
from supervisors.peer.tls import PeerRefused

__all__ = [
    "BadFrame",
    "ForwardFrame",
    "GossipFrame",
    "Heartbeat",
    "Lane",
    "LaneNotAllowed",
    "PeerConfig",
    "PeerConfigError",
    "PeerLinks",
    "PeerNode",
    "PeerRefused",
    "RaftFrame",
    "SnapshotChunk",
    "UnknownPeer",
]
