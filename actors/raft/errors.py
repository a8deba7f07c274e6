"""Named errors of the Raft core and its storage. Pure: stdlib only."""

from __future__ import annotations


class RaftError(Exception):
    """Base class of every error the Raft package raises on purpose."""


class ConfigError(RaftError, ValueError):
    """A RaftConfig field is out of range; the message names the field."""


class NotLeader(RaftError):
    """This replica is not the leader. Retry on `leader_hint` (None when no leader is known)."""

    def __init__(self, leader_hint: str | None, what: str = "request") -> None:
        self.leader_hint = leader_hint
        hint = f"retry on {leader_hint!r}" if leader_hint else "no leader known yet; retry later"
        super().__init__(f"cannot serve this {what}: not the leader ({hint})")


class ProposalDropped(RaftError):
    """The leader refused a proposal (transfer in progress, too much uncommitted, ...).

    The proposal was not appended; it is safe to retry later or elsewhere.
    """


class LearnerNotCaughtUp(ProposalDropped):
    """A learner cannot be promoted before its log is within `promote_lag_entries` of the leader."""


class InvalidConfChange(RaftError, ValueError):
    """The configuration change does not apply to the current membership (message says why)."""


class StorageError(RaftError):
    """Base class of storage errors."""


class Compacted(StorageError):
    """The requested index is at or below the snapshot index: the entry was compacted away."""


class Unavailable(StorageError):
    """The requested index is beyond the last index in storage."""


class SnapshotOutOfDate(StorageError):
    """The snapshot to install or create is older than the one storage already holds."""


class RaftInvariantError(RaftError, AssertionError):
    """The core detected a state Raft forbids (e.g. truncating a committed entry): a bug."""


class CodecError(RaftError, ValueError):
    """Bytes that do not decode into the expected Raft value (truncated, wrong schema, garbage)."""
