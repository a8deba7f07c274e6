"""The replica's view of its log: stable entries in storage plus an unstable tail not yet persisted.

Pure: stdlib only. Mirrors etcd's raftLog + unstable: new entries (and a received snapshot) live
here until a Ready hands them to the application and `stable_to` confirms they were persisted.
"""

from __future__ import annotations

from actors.raft.errors import Compacted, RaftInvariantError, Unavailable
from actors.raft.storage import RaftStorage
from actors.raft.types import Entry, Snapshot


class RaftLog:
    __slots__ = (
        "applied",
        "committed",
        "storage",
        "unstable_entries",
        "unstable_offset",
        "unstable_snapshot",
    )

    def __init__(self, storage: RaftStorage) -> None:
        self.storage = storage
        self.unstable_entries: list[Entry] = []
        self.unstable_offset = storage.last_index() + 1  # index of unstable_entries[0]
        self.unstable_snapshot: Snapshot | None = None
        self.committed = storage.first_index() - 1
        self.applied = storage.first_index() - 1

    # --- bounds ---------------------------------------------------------------------------
    def first_index(self) -> int:
        if self.unstable_snapshot is not None:
            return self.unstable_snapshot.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        if self.unstable_entries:
            return self.unstable_offset + len(self.unstable_entries) - 1
        if self.unstable_snapshot is not None:
            return self.unstable_snapshot.index
        return self.storage.last_index()

    def term(self, index: int) -> int:
        """Term at `index`, for first_index()-1 .. last_index(); Compacted / Unavailable otherwise."""
        if self.unstable_entries and index >= self.unstable_offset:
            pos = index - self.unstable_offset
            if pos < len(self.unstable_entries):
                return self.unstable_entries[pos].term
            raise Unavailable(f"term of {index}: last index is {self.last_index()}")
        snap = self.unstable_snapshot
        if snap is not None:
            if index == snap.index:
                return snap.term
            if index < snap.index:
                raise Compacted(f"term of {index}: compacted up to {snap.index}")
            raise Unavailable(f"term of {index}: last index is {self.last_index()}")
        if index >= self.unstable_offset:
            raise Unavailable(f"term of {index}: last index is {self.last_index()}")
        return self.storage.term(index)

    def term_or_zero(self, index: int) -> int:
        try:
            return self.term(index)
        except (Compacted, Unavailable):
            return 0

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, index: int, term: int) -> bool:
        try:
            return self.term(index) == term
        except (Compacted, Unavailable):
            return False

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: a candidate's log is at least as up-to-date as ours."""
        mine = self.last_term()
        return last_term > mine or (last_term == mine and last_index >= self.last_index())

    # --- reading entries ------------------------------------------------------------------
    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries lo <= index < hi. Raises Compacted if lo < first_index()."""
        if lo < self.first_index():
            raise Compacted(f"entries from {lo}: compacted up to {self.first_index() - 1}")
        if hi > self.last_index() + 1:
            raise Unavailable(f"entries up to {hi - 1}: last index is {self.last_index()}")
        if lo >= hi:
            return []
        off = self.unstable_offset
        if lo >= off:
            return self.unstable_entries[lo - off : hi - off]
        stored = self.storage.entries(lo, min(hi, off))
        if hi > off:
            stored = stored + self.unstable_entries[: hi - off]
        return stored

    def entries_from(self, lo: int, max_count: int) -> list[Entry]:
        return self.slice(lo, min(self.last_index() + 1, lo + max_count))

    def next_committed_entries(self) -> list[Entry]:
        lo = max(self.applied + 1, self.first_index())
        if self.committed + 1 <= lo:
            return []
        return self.slice(lo, self.committed + 1)

    def snapshot(self) -> Snapshot:
        if self.unstable_snapshot is not None:
            return self.unstable_snapshot
        return self.storage.snapshot()

    # --- changing the log -----------------------------------------------------------------
    def find_conflict(self, entries: tuple[Entry, ...] | list[Entry]) -> int:
        """Index of the first entry that is new or whose term differs from ours; 0 if none."""
        for entry in entries:
            if not self.match_term(entry.index, entry.term):
                return entry.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Largest i <= index whose term is <= term, and that term (the reject hint that lets a
        leader skip a whole term per round trip, Raft §5.3 / etcd findConflictByTerm)."""
        first = self.first_index() - 1
        while index > first:
            t = self.term_or_zero(index)
            if t <= term:
                return index, t
            index -= 1
        return index, self.term_or_zero(index)

    def maybe_append(
        self, index: int, log_term: int, committed: int, entries: tuple[Entry, ...]
    ) -> int | None:
        """AppendEntries receiver rules 2-5: the new last matching index, or None on mismatch."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            if conflict <= self.committed:
                raise RaftInvariantError(
                    f"entry {conflict} conflicts with the committed prefix (commit {self.committed})"
                )
            self.append(entries[conflict - index - 1 :])
        self.commit_to(min(committed, last_new))
        return last_new

    def append(self, entries: tuple[Entry, ...] | list[Entry]) -> int:
        if not entries:
            return self.last_index()
        after = entries[0].index
        if after <= self.committed:
            raise RaftInvariantError(
                f"append at {after} would overwrite committed entries (commit {self.committed})"
            )
        off = self.unstable_offset
        if after == off + len(self.unstable_entries):
            self.unstable_entries.extend(entries)
        elif after <= off:
            # Replacing the tail that storage already holds: storage.append truncates it later.
            self.unstable_offset = after
            self.unstable_entries = list(entries)
        else:
            del self.unstable_entries[after - off :]
            self.unstable_entries.extend(entries)
        return self.last_index()

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            if index > self.last_index():
                raise RaftInvariantError(f"commit {index} is past the last index {self.last_index()}")
            self.committed = index

    def applied_to(self, index: int) -> None:
        if index > self.applied:
            self.applied = index

    def stable_to(self, index: int, term: int) -> None:
        """Storage now durably holds entries up to `index` (with `term`)."""
        off = self.unstable_offset
        if index < off or index >= off + len(self.unstable_entries):
            return
        if self.unstable_entries[index - off].term != term:
            return  # the tail was replaced after that Ready was taken
        del self.unstable_entries[: index + 1 - off]
        self.unstable_offset = index + 1

    def stable_snapshot_to(self, index: int) -> None:
        if self.unstable_snapshot is not None and self.unstable_snapshot.index == index:
            self.unstable_snapshot = None

    def restore(self, snap: Snapshot) -> None:
        self.committed = snap.index
        self.unstable_offset = snap.index + 1
        self.unstable_entries = []
        self.unstable_snapshot = snap
