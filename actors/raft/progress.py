"""What the leader knows about each follower's log (etcd tracker/progress.go + inflights.go).

Pure: stdlib only. A follower's progress is in one of three states:
- probe: we do not know where its log matches ours; send one append per heartbeat and wait;
- replicate: it matches up to `match`; stream appends optimistically, at most `max_inflight`
  messages in flight (pipelining with a bound);
- snapshot: it needs a snapshot; send nothing else until it acknowledges one.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

ProgressState = Literal["probe", "replicate", "snapshot"]


class Progress:
    __slots__ = (
        "inflight",
        "is_learner",
        "match",
        "max_inflight",
        "next",
        "pending_snapshot",
        "probe_sent",
        "recent_active",
        "stalled_heartbeats",
        "state",
    )

    def __init__(self, next_index: int, max_inflight: int, is_learner: bool = False) -> None:
        self.match = 0
        self.next = next_index
        self.state: ProgressState = "probe"
        self.probe_sent = False  # probe state: an append is out, wait for an answer
        self.pending_snapshot = 0
        self.recent_active = False  # heard from it since the last check-quorum round
        self.is_learner = is_learner
        self.max_inflight = max_inflight
        self.inflight: deque[int] = deque()  # last index of each append in flight
        self.stalled_heartbeats = 0  # heartbeat answers seen while it made no progress

    def __repr__(self) -> str:
        return (
            f"Progress(state={self.state}, match={self.match}, next={self.next}, "
            f"inflight={len(self.inflight)}, learner={self.is_learner})"
        )

    def _reset(self, state: ProgressState) -> None:
        self.state = state
        self.probe_sent = False
        self.pending_snapshot = 0
        self.inflight.clear()
        self.stalled_heartbeats = 0

    def become_probe(self) -> None:
        if self.state == "snapshot":
            # Continue after the snapshot we sent, whether or not it was acknowledged.
            pending = self.pending_snapshot
            self._reset("probe")
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset("probe")
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset("replicate")
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset("snapshot")
        self.pending_snapshot = snapshot_index

    def maybe_update(self, index: int) -> bool:
        """The follower acknowledged entries up to `index`. True if that is news."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
            self.stalled_heartbeats = 0
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decrease_to(self, rejected: int, match_hint: int) -> bool:
        """The follower rejected an append at `rejected`; `match_hint` is where we may retry.
        False if the rejection is stale (answers an append older than what we know)."""
        if self.state == "replicate":
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False  # not the probe we are waiting for
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def sent_entries(self, last_index: int, count: int) -> None:
        """Book an append whose last entry is `last_index` and that carried `count` entries."""
        if self.state == "replicate":
            if count:
                self.next = last_index + 1
                self.inflight.append(last_index)
        elif self.state == "probe":
            self.probe_sent = True

    def free_acknowledged(self, index: int) -> None:
        while self.inflight and self.inflight[0] <= index:
            self.inflight.popleft()

    def is_paused(self) -> bool:
        if self.state == "probe":
            return self.probe_sent
        if self.state == "replicate":
            return len(self.inflight) >= self.max_inflight
        return True
