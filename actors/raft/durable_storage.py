"""``DurableRaftStorage``: the Raft log, hard state and snapshot of one replica in the node's event log.

Implements ``actors.raft.storage.RaftStorage``. Reads are served from an in-memory mirror (a
``MemoryStorage`` loaded at start); every write is one durable LMDB transaction before it returns, which
is what the ``Ready`` contract needs: :meth:`persist_ready` writes a Ready's snapshot, entries (dropping a
conflicting suffix) and hard state with fsync, and only then may the replica send that Ready's messages.
Keys: ``raft/<id>/hs``, ``raft/<id>/snap``, ``raft/<id>/e/<index, 20 digits>``; values are the raft codec's
msgpack bytes (never pickle).
"""

from __future__ import annotations

from actors.eventlog import EventLog, WriteBatch
from actors.raft.codec import (
    decode_entry,
    decode_hard_state,
    decode_snapshot,
    encode_entry,
    encode_hard_state,
    encode_snapshot,
)
from actors.raft.storage import MemoryStorage
from actors.raft.types import ConfState, Entry, HardState, Ready, Snapshot


def needs_persist(rd: Ready) -> bool:
    """Whether ``rd`` has anything for stable storage (a snapshot, entries or a new hard state)."""
    return rd.snapshot is not None or bool(rd.entries) or rd.hard_state is not None


class DurableRaftStorage:
    def __init__(self, log: EventLog, replica: str) -> None:
        self._log = log
        self._prefix = f"raft/{replica}/"
        self._mem = MemoryStorage()
        raw_snap = log.get_value(self._prefix + "snap")
        if raw_snap is not None:
            self._mem.apply_snapshot(decode_snapshot(raw_snap))
        entries = [decode_entry(v) for v in log.values_with_prefix(self._prefix + "e/").values()]
        entries = [e for e in entries if e.index > self._mem.snapshot().index]
        if entries:
            self._mem.append(entries)
        raw_hs = log.get_value(self._prefix + "hs")
        if raw_hs is not None:
            self._mem.set_hard_state(decode_hard_state(raw_hs))

    def _entry_key(self, index: int) -> str:
        return f"{self._prefix}e/{index:020d}"

    # -- reads (RaftStorage) --------------------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._mem.initial_state()

    def entries(self, lo: int, hi: int) -> list[Entry]:
        return self._mem.entries(lo, hi)

    def term(self, index: int) -> int:
        return self._mem.term(index)

    def first_index(self) -> int:
        return self._mem.first_index()

    def last_index(self) -> int:
        return self._mem.last_index()

    def snapshot(self) -> Snapshot:
        return self._mem.snapshot()

    @property
    def hard_state(self) -> HardState:
        return self._mem.hard_state

    # -- durable writes -------------------------------------------------------------------------------

    def _stage_snapshot(self, batch: WriteBatch, snap: Snapshot) -> None:
        batch.put_value(self._prefix + "snap", encode_snapshot(snap))
        for index in range(self._mem.first_index(), min(snap.index, self._mem.last_index()) + 1):
            batch.delete_value(self._entry_key(index))

    def _stage_entries(self, batch: WriteBatch, entries: tuple[Entry, ...] | list[Entry]) -> None:
        if not entries:
            return
        new_last = entries[-1].index
        for index in range(new_last + 1, self._mem.last_index() + 1):
            batch.delete_value(self._entry_key(index))  # the conflicting suffix goes
        for entry in entries:
            batch.put_value(self._entry_key(entry.index), encode_entry(entry))

    def persist_ready(self, rd: Ready) -> None:
        """Step 1 of the Ready contract, in one fsynced transaction; then mirror it in memory."""
        if not needs_persist(rd):
            return
        with self._log.batch() as batch:
            self.stage_ready(batch, rd)
        self.mirror_ready(rd)

    def stage_ready(self, batch: WriteBatch, rd: Ready) -> None:
        """Stage a Ready's snapshot, entries and hard state in ``batch``, which the caller commits (the
        replica commits the state machine's apply in the same transaction: one fsync per Ready, not two);
        call :meth:`mirror_ready` once the commit returned."""
        if rd.snapshot is not None:
            self._stage_snapshot(batch, rd.snapshot)
        self._stage_entries(batch, rd.entries)
        if rd.hard_state is not None:
            batch.put_value(self._prefix + "hs", encode_hard_state(rd.hard_state))

    def mirror_ready(self, rd: Ready) -> None:
        """What :meth:`stage_ready` staged is durable: serve it from memory too."""
        if rd.snapshot is not None:
            self._mem.apply_snapshot(rd.snapshot)
        if rd.entries:
            self._mem.append(rd.entries)
        if rd.hard_state is not None:
            self._mem.set_hard_state(rd.hard_state)

    def append(self, entries: tuple[Entry, ...] | list[Entry]) -> None:
        with self._log.batch() as batch:
            self._stage_entries(batch, entries)
        self._mem.append(entries)

    def set_hard_state(self, hs: HardState) -> None:
        self._log.put_value(self._prefix + "hs", encode_hard_state(hs))
        self._mem.set_hard_state(hs)

    def apply_snapshot(self, snap: Snapshot) -> None:
        with self._log.batch() as batch:
            self._stage_snapshot(batch, snap)
        self._mem.apply_snapshot(snap)

    def create_snapshot(self, snap: Snapshot) -> None:
        self._mem.create_snapshot(snap)
        self._log.put_value(self._prefix + "snap", encode_snapshot(snap))

    def compact(self, index: int) -> None:
        first = self._mem.first_index()
        self._mem.compact(index)
        with self._log.batch() as batch:
            for i in range(first, index + 1):
                batch.delete_value(self._entry_key(i))
