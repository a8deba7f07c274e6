"""Raft consensus as a pure state machine (etcd-raft shape) plus its storage contract.

The core does no I/O and reads no clock: feed it `tick()`, `step(msg)` and local requests; take
`ready()` (what to persist, send, apply), do it in order, then `advance()`. The shells around it
(`replica.py`, `durable_storage.py`) live beside it but are not part of the pure core.
"""

from actors.raft.core import RaftCore
from actors.raft.errors import (
    CodecError,
    Compacted,
    ConfigError,
    InvalidConfChange,
    LearnerNotCaughtUp,
    NotLeader,
    ProposalDropped,
    RaftError,
    RaftInvariantError,
    SnapshotOutOfDate,
    StorageError,
    Unavailable,
)
from actors.raft.storage import MemoryStorage, RaftStorage
from actors.raft.types import (
    ConfChange,
    ConfState,
    Entry,
    HardState,
    Message,
    RaftConfig,
    ReadState,
    Ready,
    Snapshot,
)

__all__ = [
    "CodecError",
    "Compacted",
    "ConfChange",
    "ConfState",
    "ConfigError",
    "Entry",
    "HardState",
    "InvalidConfChange",
    "LearnerNotCaughtUp",
    "MemoryStorage",
    "Message",
    "NotLeader",
    "ProposalDropped",
    "RaftConfig",
    "RaftCore",
    "RaftError",
    "RaftInvariantError",
    "RaftStorage",
    "ReadState",
    "Ready",
    "Snapshot",
    "SnapshotOutOfDate",
    "StorageError",
    "Unavailable",
]
