"""The storage contract the Raft core reads from, and an in-memory implementation.

Pure: stdlib only. Like etcd's `Storage`: the core only reads; the application (or the test
harness) writes what a `Ready` asks it to persist through the write-side methods, and must make
those writes durable before sending that Ready's messages.
"""

from __future__ import annotations

from typing import Protocol

from actors.raft.errors import Compacted, SnapshotOutOfDate, Unavailable
from actors.raft.types import ConfState, Entry, HardState, Snapshot


class RaftStorage(Protocol):
    # --- read side, used by the core -------------------------------------------------------
    def initial_state(self) -> tuple[HardState, ConfState]:
        """The persisted hard state and the membership of the latest snapshot."""
        ...

    def entries(self, lo: int, hi: int) -> list[Entry]:
        """Entries with lo <= index < hi. Raises Compacted if lo <= snapshot index,
        Unavailable if hi > last_index() + 1."""
        ...

    def term(self, index: int) -> int:
        """Term of the entry at `index`; valid for snapshot index .. last_index().
        Raises Compacted below the snapshot index, Unavailable above the last index."""
        ...

    def first_index(self) -> int:
        """Index of the first entry still held (snapshot index + 1)."""
        ...

    def last_index(self) -> int:
        """Index of the last entry held (the snapshot index when the log is empty)."""
        ...

    def snapshot(self) -> Snapshot:
        """The latest snapshot (index 0 when none was ever taken)."""
        ...

    # --- write side, used by the application / harness -------------------------------------
    def append(self, entries: tuple[Entry, ...] | list[Entry]) -> None:
        """Append, first truncating every held entry at or after entries[0].index."""
        ...

    def set_hard_state(self, hs: HardState) -> None: ...

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Install a snapshot received from the leader: it replaces the whole log."""
        ...

    def create_snapshot(self, snap: Snapshot) -> None:
        """Record a snapshot the application took locally (the log is kept; see compact)."""
        ...

    def compact(self, index: int) -> None:
        """Drop entries up to and including `index` (which must be <= the snapshot index)."""
        ...


class MemoryStorage:
    """RaftStorage in memory. `_ents[0]` is a dummy entry carrying the snapshot's index and term,
    so `term(snapshot index)` needs no special case (the same trick as etcd)."""

    __slots__ = ("_ents", "_hard_state", "_snapshot")

    def __init__(self, conf_state: ConfState | None = None) -> None:
        self._hard_state = HardState()
        self._snapshot = Snapshot(conf_state=conf_state or ConfState())
        self._ents: list[Entry] = [Entry(term=0, index=0)]

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard_state, self._snapshot.conf_state

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    def _offset(self) -> int:
        return self._ents[0].index

    def entries(self, lo: int, hi: int) -> list[Entry]:
        offset = self._offset()
        if lo <= offset:
            raise Compacted(f"entries from {lo}: compacted up to {offset}")
        if hi > self.last_index() + 1:
            raise Unavailable(f"entries up to {hi - 1}: last index is {self.last_index()}")
        return self._ents[lo - offset : hi - offset]

    def term(self, index: int) -> int:
        offset = self._offset()
        if index < offset:
            raise Compacted(f"term of {index}: compacted up to {offset}")
        if index - offset >= len(self._ents):
            raise Unavailable(f"term of {index}: last index is {self.last_index()}")
        return self._ents[index - offset].term

    def first_index(self) -> int:
        return self._offset() + 1

    def last_index(self) -> int:
        return self._ents[0].index + len(self._ents) - 1

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def all_entries(self) -> list[Entry]:
        """Every held entry (after the snapshot), for tests and invariant checks."""
        return self._ents[1:]

    def append(self, entries: tuple[Entry, ...] | list[Entry]) -> None:
        if not entries:
            return
        first = self.first_index()
        last_new = entries[0].index + len(entries) - 1
        if last_new < first:
            return  # everything is already covered by the snapshot
        if entries[0].index < first:
            entries = entries[first - entries[0].index :]
        start = entries[0].index - self._offset()
        if start > len(self._ents):
            raise Unavailable(f"append at {entries[0].index} would leave a gap after {self.last_index()}")
        del self._ents[start:]
        self._ents.extend(entries)

    def set_hard_state(self, hs: HardState) -> None:
        self._hard_state = hs

    def apply_snapshot(self, snap: Snapshot) -> None:
        if snap.index < self._snapshot.index:
            raise SnapshotOutOfDate(
                f"snapshot at {snap.index} is older than the held one at {self._snapshot.index}"
            )
        self._snapshot = snap
        self._ents = [Entry(term=snap.term, index=snap.index)]

    def create_snapshot(self, snap: Snapshot) -> None:
        if snap.index <= self._snapshot.index:
            raise SnapshotOutOfDate(
                f"snapshot at {snap.index} is not newer than the held one at {self._snapshot.index}"
            )
        if snap.index > self.last_index():
            raise Unavailable(f"snapshot at {snap.index} is past last index {self.last_index()}")
        self._snapshot = snap

    def compact(self, index: int) -> None:
        offset = self._offset()
        if index <= offset:
            raise Compacted(f"compact to {index}: already compacted up to {offset}")
        if index > self._snapshot.index:
            raise Unavailable(
                f"compact to {index}: take a snapshot at or after it first "
                f"(snapshot index {self._snapshot.index})"
            )
        term = self._ents[index - offset].term
        self._ents = [Entry(term=term, index=index), *self._ents[index - offset + 1 :]]
