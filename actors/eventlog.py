"""The node's event log: append-only streams, snapshots and small values in one LMDB environment.

This is the only module that imports ``lmdb``. One environment lives under a node's ``data_dir``; every
process of the node that needs it opens it itself (LMDB handles must not cross ``fork``), at most once per
process (:func:`open_event_log` caches per process), and LMDB's lock file arbitrates between processes.

Durability contract: when :meth:`EventLog.append` or a :class:`WriteBatch` returns, the records are on
stable storage (``writemap`` and ``map_async`` stay off). Speed comes from group commit: put many records
(of any streams, plus consumer offsets) in one batch, which is one durable transaction.

How: LMDB ``sync=True, metasync=False`` fdatasyncs a transaction's pages before it writes the meta page
that makes them current, so the file is never torn (LMDB's documented NOMETASYNC guarantee); a durable
batch then syncs that meta page too (``env.sync``), which is what ``metasync=True`` did inside the
commit, at the same cost. ``batch(durable=False)`` skips that last sync and nothing else: a crash of the
machine (not of the process: the page cache survives a SIGKILL) may undo it until the next durable
commit of any process, never tear it. Only for writes that are replayed anyway (the Raft replica's
apply of committed entries and commit index, etcd's MustSync: see actors/raft/replica.py).

Records are versioned envelopes: ``version (1 byte) | codec (1 byte) | crc32 (4 bytes) | msgpack body``.
A record whose checksum does not match raises :class:`CorruptRecord` naming the file, stream and sequence.

Record batches (Kafka's layout): records appended together are stored as ONE LMDB value, codec 2, whose
body is the msgpack array of their payloads, keyed by the sequence of its LAST record; a record appended
alone keeps codec 1 (one value per record, the layout of every log written before batches existed, which
is still read as it is). One put, one checksum and one encoder call per batch instead of per record made
an append of 100 readings cost less than 100 raw puts of pre-encoded bytes; readers decode a batch in one
call too. Keying by the last sequence is what keeps reads simple: ``set_range(stream, after + 1)`` lands
on the value that holds ``after + 1``, whichever layout it has.
"""

from __future__ import annotations

import errno
import os
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

import lmdb
import lmdb._envid
import msgspec

from actors.hoptrace import stamp
from actors.wakeups import Doorbells, wake_dir

__all__ = [
    "CorruptRecord",
    "DiskFull",
    "EventLog",
    "EventLogError",
    "FencedOff",
    "Record",
    "UnreadableEventLog",
    "WriteBatch",
    "open_event_log",
]

FORMAT_MARKER = b"garrison-eventlog"
FORMAT_VERSION = 1
_ENVELOPE = struct.Struct(">BBI")
_CODEC_MSGPACK = 1  # one record: the body is its msgpack
_CODEC_MSGPACK_BATCH = 2  # consecutive records: the body is the msgpack array of their payloads
# at most this many records, and about this many bytes, in one value: a reader decodes a whole value to
# take any record of it, so a consumer reading a few large records (blocks of readings) must not decode
# hundreds of them each time (measured: inference throughput fell by a quarter with 400 KB values)
MAX_BATCH_RECORDS = 256
MAX_BATCH_BYTES = 32 << 10
# the same 6 header bytes packed from 2 values instead of 3 (version and codec as one 16-bit number):
# ~10 % of the encoding of a batch, which is most of an append's CPU
_HEADER = struct.Struct(">HI")
_VERSION_CODEC = FORMAT_VERSION << 8 | _CODEC_MSGPACK
_VERSION_CODEC_BATCH = FORMAT_VERSION << 8 | _CODEC_MSGPACK_BATCH
_SEQ = struct.Struct(">Q")
_INITIAL_MAP_SIZE = 64 << 20
_MARKER_KEY = b"__format__"
_FENCE_PREFIX = "fence/"  # values key of an actor path's fence token (see EventLog.acquire_fence)
# Data files hold incidents and keys: owner only, set explicitly (a umask can be anything).
DATA_FILE_MODE = 0o600
DATA_DIR_MODE = 0o700
# LMDB reports a short write on a full disk as EIO, not ENOSPC: below this much free space an I/O error
# of a commit is taken to be the disk being full (a B-tree commit rewrites whole pages along its path).
_DISK_FULL_SLACK = 1 << 20


def _pid_scoped_env_keys(path: Any, subdir: bool, _original: Any = lmdb._envid.env_keys) -> tuple[Any, ...]:
    """py-lmdb refuses to open an environment "already open in this process", keeping the set of open
    files in a process-global that ``fork`` copies. Thespian forks every actor from its parent actor, so
    a child would inherit its parent's entry and could never open the node's log. fcntl locks, which are
    what the guard protects, are not inherited across fork, so the child's own open is sound: scope the
    keys by pid (a second open within one process is still refused)."""
    return tuple((os.getpid(), *key) for key in _original(path, subdir))


lmdb._envid.env_keys = _pid_scoped_env_keys

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


class EventLogError(Exception):
    """Base class of event-log errors."""


class UnreadableEventLog(EventLogError):
    """The environment on disk is corrupt, foreign (not garrison's) or of an unknown format version."""


class CorruptRecord(EventLogError):
    """A record's checksum or envelope does not match its contents."""


class FencedOff(EventLogError):
    """This process's writes were refused: a newer instance of the same actor took the fence token.

    An orphan (an instance whose supervisor died) or a superseded instance must never append, commit or
    vote: the instance that sees this must stop at once; the newer instance carries on."""


class DiskFull(EventLogError):
    """A commit failed because the file system holding the event log has no space left. Nothing of the
    failed batch was written; the log stays readable and takes writes again once space is freed."""


@dataclass(slots=True)
class _DecodedBatch:
    """The record batch a handle decoded last, and through which sequence its records were handed out."""

    ident: tuple[str, int, int, int]  # stream, seq of its last record, crc32, length of the value
    payloads: list[Any]
    handed: int


@dataclass(frozen=True, slots=True)
class Record:
    stream: str
    seq: int
    payload: Any


def _event_key(stream: str, seq: int) -> bytes:
    return stream.encode() + b"\x00" + _SEQ.pack(seq)


def _stream_prefix(stream: str) -> bytes:
    if "\x00" in stream or not stream:
        raise ValueError(f"invalid stream name {stream!r}: must be non-empty and contain no NUL")
    return stream.encode() + b"\x00"


def encode_envelope(payload: Any) -> bytes:
    body = _encoder.encode(payload)
    return _HEADER.pack(_VERSION_CODEC, zlib.crc32(body)) + body


def encode_record_batch(payloads: Sequence[Any]) -> bytes:
    """The value that stores ``payloads`` as consecutive records: codec 2 (one msgpack array, one
    checksum), or codec 1 for a single record so that its layout is the one every reader knows."""
    if len(payloads) == 1:
        return encode_envelope(payloads[0])
    body = _encoder.encode(payloads)
    return _HEADER.pack(_VERSION_CODEC_BATCH, zlib.crc32(body)) + body


def _checked_body(raw: bytes, where: str, codec: int) -> bytes:
    """The body of an envelope of ``codec`` whose header and checksum hold, or :class:`CorruptRecord`."""
    if len(raw) < _ENVELOPE.size:
        raise CorruptRecord(f"{where}: record is {len(raw)} bytes, shorter than its header")
    version, found, crc = _ENVELOPE.unpack_from(raw)
    body = raw[_ENVELOPE.size :]
    if version != FORMAT_VERSION or found != codec:
        raise CorruptRecord(f"{where}: unknown record version {version} / codec {found}")
    if zlib.crc32(body) != crc:
        raise CorruptRecord(f"{where}: checksum mismatch (stored {crc:#010x})")
    return body


def decode_envelope(raw: bytes, where: str) -> Any:
    return _decoder.decode(_checked_body(raw, where, _CODEC_MSGPACK))


def _decode_batch(raw: bytes, where: str) -> list[Any]:
    """A codec-2 value's payloads, or :class:`CorruptRecord` saying what is wrong with it."""
    body = _checked_body(raw, where, _CODEC_MSGPACK_BATCH)
    try:
        payloads = _decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise CorruptRecord(f"{where}: undecodable body ({exc})") from exc
    if not isinstance(payloads, list) or len(payloads) < 2:
        raise CorruptRecord(f"{where}: a record batch must hold an array of at least 2 records")
    return payloads


class WriteBatch:
    """Operations collected in memory and committed as ONE durable LMDB transaction.

    Use as a context manager: the commit happens at ``__exit__`` (nothing is written if the block raises).
    Appends to several streams, consumer offsets and snapshots can share one batch, which is how a consumer
    records its input offset atomically with its output (exactly-once processing).
    """

    def __init__(self, log: EventLog, *, durable: bool = True, ring: bool = True) -> None:
        self._log = log
        self.durable = durable  # False: LMDB may undo it on a machine crash (see the module docstring)
        self._ring = ring  # False: the caller rings ``assigned`` itself (e.g. after sending its acks)
        # per stream, the values to put in order: (how many records, encoded value)
        self._appends: dict[str, list[tuple[int, bytes]]] = {}
        self._values: dict[str, bytes | None] = {}
        self._snapshots: dict[str, bytes] = {}
        self._compactions: dict[str, int] = {}
        self._fence_bumps: list[str] = []
        #: after the commit: the new fence token of every owner named with :meth:`bump_fence`
        self.fences: dict[str, int] = {}
        self.assigned: dict[str, list[int]] = {}

    def append(self, stream: str, payload: Any) -> None:
        self._envelopes(stream).append((1, encode_envelope(payload)))

    def extend(self, stream: str, payloads: Iterable[Any]) -> None:
        """``append`` of each payload in order, stored as record batches of at most
        :data:`MAX_BATCH_RECORDS` (the fast path for many records: see the module docstring)."""
        items = payloads if isinstance(payloads, list) else list(payloads)
        envelopes = self._envelopes(stream)
        per_value, start = MAX_BATCH_RECORDS, 0
        while start < len(items):
            chunk = items[start : start + per_value]
            value = encode_record_batch(chunk)
            if len(value) > MAX_BATCH_BYTES and len(chunk) > 1:
                # large records: as many per value as fit the byte budget, learnt from this chunk
                per_value = max(1, len(chunk) * MAX_BATCH_BYTES // len(value))
                continue
            envelopes.append((len(chunk), value))
            start += len(chunk)

    def _envelopes(self, stream: str) -> list[tuple[int, bytes]]:
        envelopes = self._appends.get(stream)
        if envelopes is None:  # a stream name is checked once per batch, not once per record
            _stream_prefix(stream)
            envelopes = self._appends[stream] = []
        return envelopes

    def put_value(self, key: str, value: Any) -> None:
        self._values[key] = encode_envelope(value)

    def delete_value(self, key: str) -> None:
        self._values[key] = None

    def bump_fence(self, owner: str) -> None:
        """Take a new fence token for ``owner`` in this transaction (read in ``fences`` after the commit):
        a supervisor does this for the instance it is about to create, in the write it makes anyway (its
        restart history), so the new instance need not spend an fsync of its own (``adopt_fence``)."""
        self._fence_bumps.append(owner)

    def save_snapshot(self, stream: str, seq: int, state: Any) -> None:
        self._snapshots[stream] = encode_envelope({"seq": seq, "state": state})

    def compact(self, stream: str, through_seq: int) -> None:
        """Delete the events of ``stream`` with sequence <= ``through_seq`` (retention)."""
        self._compactions[stream] = max(through_seq, self._compactions.get(stream, 0))

    def __enter__(self) -> WriteBatch:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.assigned = self._log._commit(self)
            if self.assigned and self._ring:  # committed now: wake the consumers of what was appended
                self._log.ring(self.assigned)


class EventLog:
    """Append-only streams over one LMDB environment. See the module docstring for the contract."""

    def __init__(self, path: str | os.PathLike[str], *, map_size: int = _INITIAL_MAP_SIZE) -> None:
        self.path = Path(path)
        # checked by this process or the one it was forked from, which still has it open: a fresh actor
        # instance skips the directory, mode and format checks (~0.3 ms of a restart)
        prepared = str(self.path) in _PREPARED
        if not prepared:
            self.path.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
            os.chmod(self.path, DATA_DIR_MODE)  # mkdir's mode is masked by the umask, skips existing dirs
        data_file = self.path / "data.mdb"
        try:
            self._env = lmdb.open(
                str(self.path),
                mode=DATA_FILE_MODE,
                map_size=map_size,
                max_dbs=8,
                sync=True,
                metasync=False,  # synced explicitly after each durable commit (module docstring)
                writemap=False,
                map_async=False,
                subdir=True,
            )
        except lmdb.InvalidError as exc:
            raise UnreadableEventLog(f"{data_file}: not an LMDB environment ({exc})") from exc
        except lmdb.Error as exc:
            raise UnreadableEventLog(f"{data_file}: cannot open ({exc})") from exc
        if not prepared:
            for name in ("data.mdb", "lock.mdb"):  # lmdb's mode applies only to files it creates
                os.chmod(self.path / name, DATA_FILE_MODE)
            self._check_format(data_file)
            _PREPARED.add(str(self.path))
        try:
            self._open_dbs()
        except lmdb.MapResizedError:  # a writer in another process grew the map between open and here
            self._env.set_mapsize(0)  # adopt its size (as _read_txn does), then open them again
            self._open_dbs()
        # fence tokens this handle writes under (one per actor path; one entry per process in production,
        # several when in-process test bases run many actors in one process)
        self._fences: dict[bytes, int] = {}
        self._doorbells: Doorbells | None = None
        self._last_batch: _DecodedBatch | None = None  # see _decode_values

    def _open_dbs(self) -> None:
        self._events = self._env.open_db(b"events")
        self._heads = self._env.open_db(b"heads")
        self._values = self._env.open_db(b"values")
        self._snapshots = self._env.open_db(b"snapshots")

    def _check_format(self, data_file: Path) -> None:
        expected = FORMAT_MARKER + b"/" + str(FORMAT_VERSION).encode()
        with self._read_txn() as txn:
            marker = txn.get(_MARKER_KEY)
            has_other_keys = any(True for _ in txn.cursor().iternext(keys=True, values=False))
        if marker == expected:
            return
        if marker is not None:
            raise UnreadableEventLog(
                f"{data_file}: format {marker.decode(errors='replace')!r} is not the "
                f"supported {expected.decode()!r}"
            )
        if has_other_keys:
            raise UnreadableEventLog(
                f"{data_file}: an LMDB environment without garrison's format marker "
                "(created by another program?); point data_dir at an empty directory"
            )
        with self._env.begin(write=True) as txn:
            txn.put(_MARKER_KEY, expected)
        self._env.sync(True)

    # -- writes -------------------------------------------------------------------------------------

    def batch(self, *, durable: bool = True, ring: bool = True) -> WriteBatch:
        """A :class:`WriteBatch`. ``durable=False``: one fsync fewer, may be undone by a machine crash
        (never torn); only for what is rebuilt at boot anyway. ``ring=False``: the caller calls
        :meth:`ring` with ``batch.assigned`` when it wants the consumers woken."""
        return WriteBatch(self, durable=durable, ring=ring)

    def append(self, stream: str, payloads: Sequence[Any]) -> list[int]:
        """Append ``payloads`` to ``stream`` in one durable transaction; returns their sequence numbers."""
        with self.batch() as batch:
            batch.extend(stream, payloads)
        return batch.assigned.get(stream, [])

    def put_value(self, key: str, value: Any) -> None:
        with self.batch() as batch:
            batch.put_value(key, value)

    def _commit(self, batch: WriteBatch) -> dict[str, list[int]]:
        stamp("L commit")
        assigned = self._commit_retrying(batch)
        stamp("L committed")
        if batch.durable:  # the meta page (metasync=False); its pages were synced in the commit
            try:
                self._env.sync(True)
                stamp("L synced")
            except lmdb.Error as exc:  # committed and visible already: never retried, never DiskFull
                raise EventLogError(
                    f"{self.path}: a commit was written but the disk failed to sync it ({exc}); stop this "
                    "process (it may not survive a machine crash) and check the disk: a restart re-reads "
                    "the log"
                ) from exc
        return assigned

    def _commit_retrying(self, batch: WriteBatch) -> dict[str, list[int]]:
        while True:
            try:
                return self._commit_once(batch)
            except lmdb.MapFullError:
                self._env.set_mapsize(self._env.info()["map_size"] * 2)
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)  # another process grew the map: adopt its size
            except lmdb.Error as exc:
                if self._disk_is_full(exc):
                    raise DiskFull(
                        f"{self.path}: disk full, the commit was not written ({exc}); free space on "
                        "the file system of data_dir (or move data_dir to a larger one), the node "
                        "resumes where it stopped"
                    ) from exc
                raise

    def _disk_is_full(self, exc: lmdb.Error) -> bool:
        if os.strerror(errno.ENOSPC) in str(exc):
            return True
        if os.strerror(errno.EIO) not in str(exc):
            return False
        try:
            st = os.statvfs(self.path)
        except OSError:
            return False
        return st.f_bavail * st.f_frsize < _DISK_FULL_SLACK

    def ring(self, streams: Iterable[str]) -> None:
        """Wake every consumer subscribed to ``streams`` (see ``actors.wakeups``); called after each
        durable commit that appended, so a consumer never wakes to records that are not yet durable."""
        if self._doorbells is None:
            self._doorbells = Doorbells(wake_dir(self.path.parent))
        self._doorbells.ring(streams)

    def acquire_fence(self, owner: str) -> int:
        """Become the only instance allowed to write for ``owner`` (an actor path): bump its fence token
        durably and check it inside every later commit of this handle. A previous holder's next commit
        raises :class:`FencedOff`, even if it is still running (an orphan, a paused process)."""
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    token = self._bump_fence(txn, owner)
                self._env.sync(True)  # durable before it is used (metasync=False)
                break
            except lmdb.MapFullError:
                self._env.set_mapsize(self._env.info()["map_size"] * 2)
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)
        self._fences[f"{_FENCE_PREFIX}{owner}".encode()] = token
        return token

    def adopt_fence(self, owner: str, token: int) -> None:
        """Write under a token a supervisor took for this instance (``WriteBatch.bump_fence``): a read, no
        fsync. Raises :class:`FencedOff` if an even newer instance has taken the path since."""
        key = f"{_FENCE_PREFIX}{owner}".encode()
        self._fences[key] = token
        with self._read_txn() as txn:
            self._check_fence(txn)

    def _read_txn(self) -> Any:  # lmdb.Transaction (its stubs type cursor values as bytes | memoryview)
        """A read transaction. Another process may have grown the map since this handle last looked
        (a producer appending a large backlog): LMDB then refuses every new transaction of this handle
        with MDB_MAP_RESIZED until it adopts the new size, which would crash every reader of the node
        once for nothing."""
        try:
            return self._env.begin()
        except lmdb.MapResizedError:
            self._env.set_mapsize(0)  # adopt the size the other process set
            return self._env.begin()

    def _check_fence(self, txn: lmdb.Transaction) -> None:
        for key, token in self._fences.items():
            raw = txn.get(key, db=self._values)
            current = _SEQ.unpack(raw)[0] if raw else 0
            if current != token:
                owner = key.decode()[len(_FENCE_PREFIX) :]
                raise FencedOff(
                    f"{self.path}: {owner!r} instance with fence token {token} was superseded by token "
                    f"{current}; this instance must stop (a newer instance of the same actor is running)"
                )

    def _commit_once(self, batch: WriteBatch) -> dict[str, list[int]]:
        assigned: dict[str, list[int]] = {}
        with self._env.begin(write=True) as txn:
            if self._fences:
                self._check_fence(txn)
            events = txn.cursor(db=self._events)
            for stream, envelopes in batch._appends.items():
                if not envelopes:
                    continue
                name = stream.encode()
                prefix = name + b"\x00"
                head = last = self._head(txn, stream)
                keyed = []
                for count, envelope in envelopes:  # a value is keyed by the seq of its last record
                    last += count
                    keyed.append((prefix + _SEQ.pack(last), envelope))
                events.putmulti(keyed)
                txn.put(name, _SEQ.pack(last), db=self._heads)
                assigned[stream] = list(range(head + 1, last + 1))
            for key, value in batch._values.items():
                if value is None:
                    txn.delete(key.encode(), db=self._values)
                else:
                    txn.put(key.encode(), value, db=self._values)
            for stream, snap in batch._snapshots.items():
                txn.put(stream.encode(), snap, db=self._snapshots)
            for stream, through in batch._compactions.items():
                self._delete_through(txn, stream, through)
            fences = {owner: self._bump_fence(txn, owner) for owner in batch._fence_bumps}
        batch.fences = fences
        return assigned

    def _bump_fence(self, txn: lmdb.Transaction, owner: str) -> int:
        key = f"{_FENCE_PREFIX}{owner}".encode()
        raw = txn.get(key, db=self._values)
        token = (_SEQ.unpack(raw)[0] if raw else 0) + 1
        txn.put(key, _SEQ.pack(token), db=self._values)
        return token

    def _delete_through(self, txn: lmdb.Transaction, stream: str, through: int) -> None:
        prefix = _stream_prefix(stream)
        cursor = txn.cursor(db=self._events)
        if not cursor.set_range(prefix):
            return
        while (key := bytes(cursor.key())).startswith(prefix):  # bytes(): no copy of a bytes key
            last = _SEQ.unpack(key[len(prefix) :])[0]
            if last > through:
                # a batch holding both sides of ``through`` keeps only its records after it, under the
                # same key (it still ends at ``last``): retention is exact, whatever the batching
                payloads = self._decode_values(bytes(cursor.value()), stream, last)
                first = last - len(payloads) + 1
                if first <= through:
                    cursor.put(key, encode_record_batch(payloads[through - first + 1 :]))
                break
            if not cursor.delete():
                break

    # -- reads --------------------------------------------------------------------------------------

    def _head(self, txn: lmdb.Transaction, stream: str) -> int:
        raw = txn.get(stream.encode(), db=self._heads)
        return _SEQ.unpack(raw)[0] if raw else 0

    def last_seq(self, stream: str) -> int:
        """Sequence of the newest record ever appended to ``stream`` (0 if none), compaction or not."""
        with self._read_txn() as txn:
            return self._head(txn, stream)

    def read(self, stream: str, after: int = 0, limit: int | None = None) -> list[Record]:
        """Records of ``stream`` with sequence > ``after``, oldest first, at most ``limit``."""
        return list(self.iter(stream, after, limit))

    def iter(self, stream: str, after: int = 0, limit: int | None = None) -> Iterator[Record]:
        prefix = _stream_prefix(stream)
        out: list[Record] = []
        with self._read_txn() as txn:
            cursor = txn.cursor(db=self._events)
            if not cursor.set_range(_event_key(stream, after + 1)):  # the value holding after + 1
                return iter(out)
            for key, raw in cursor:
                if not key.startswith(prefix) or (limit is not None and len(out) >= limit):
                    break
                last = _SEQ.unpack(key[len(prefix) :])[0]
                payloads = self._decode_values(raw, stream, last, after)
                first = last - len(payloads) + 1
                skip = max(0, after + 1 - first)  # this value's records at or before ``after``
                take = payloads[skip:] if skip else payloads
                if limit is not None:
                    take = take[: limit - len(out)]
                out.extend(map(Record, repeat(stream), range(first + skip, first + skip + len(take)), take))
                if (cached := self._last_batch) is not None and cached.payloads is payloads:
                    cached.handed = first + skip + len(take) - 1
        return iter(out)

    def _decode_values(self, raw: bytes, stream: str, last: int, after: int = 0) -> list[Any]:
        """The payloads a value holds, in order, the last one being record ``last``."""
        # the hot path of every consumer: check and decode without building the error text, which only a
        # damaged record needs (formatting it for every record cost more than the decoding itself)
        if len(raw) >= _ENVELOPE.size:
            version, codec, crc = _ENVELOPE.unpack_from(raw)
            cached = self._last_batch
            if (
                cached is not None
                and cached.ident == (stream, last, crc, len(raw))
                and after >= cached.handed
            ):
                # a consumer reading fewer records than a batch holds takes the rest of it next time: the
                # same value (same key, checksum and length) is not decoded twice for it. Only records
                # never handed out come from here, so no two reads share a payload object
                return cached.payloads
            body = raw[_ENVELOPE.size :]
            if version == FORMAT_VERSION and zlib.crc32(body) == crc:
                try:
                    if codec == _CODEC_MSGPACK:
                        return [_decoder.decode(body)]
                    if codec == _CODEC_MSGPACK_BATCH:
                        payloads = _decoder.decode(body)
                        if isinstance(payloads, list) and 1 < len(payloads) <= last:
                            self._last_batch = _DecodedBatch((stream, last, crc, len(raw)), payloads, 0)
                            return payloads
                except (msgspec.DecodeError, UnicodeDecodeError):
                    pass
        where = f"{self.path / 'data.mdb'}: stream {stream!r}"
        if len(raw) >= _ENVELOPE.size and _ENVELOPE.unpack_from(raw)[1] == _CODEC_MSGPACK_BATCH:
            return _decode_batch(bytes(raw), f"{where} record batch ending at seq {last}")
        return [decode_envelope(bytes(raw), f"{where} seq {last}")]

    def first_seq(self, stream: str) -> int:
        """Sequence of the oldest retained record (0 if the stream holds none)."""
        first = self.read(stream, 0, 1)
        return first[0].seq if first else 0

    def get_value(self, key: str, default: Any = None) -> Any:
        with self._read_txn() as txn:
            raw = txn.get(key.encode(), db=self._values)
        if raw is None:
            return default
        return decode_envelope(bytes(raw), f"{self.path / 'data.mdb'}: value {key!r}")

    def values_with_prefix(self, prefix: str) -> dict[str, Any]:
        return dict(self.iter_values(prefix))

    def iter_values(self, prefix: str) -> Iterator[tuple[str, Any]]:
        """(key, value) of every value whose key starts with ``prefix``, in key order, decoded one at a time
        from ONE read transaction (a consistent view, however many there are; nothing is held but the one
        being decoded). Exhaust or close the iterator soon: a read transaction pins the pages it sees."""
        raw_prefix = prefix.encode()
        with self._read_txn() as txn:
            cursor = txn.cursor(db=self._values)
            if cursor.set_range(raw_prefix):
                for key, raw in cursor:
                    if not key.startswith(raw_prefix):
                        break
                    where = f"{self.path / 'data.mdb'}: value {key.decode()!r}"
                    yield key.decode(), decode_envelope(bytes(raw), where)

    def load_snapshot(self, stream: str) -> tuple[int, Any] | None:
        with self._read_txn() as txn:
            raw = txn.get(stream.encode(), db=self._snapshots)
        if raw is None:
            return None
        snap = decode_envelope(bytes(raw), f"{self.path / 'data.mdb'}: snapshot of {stream!r}")
        return int(snap["seq"]), snap["state"]

    def streams(self) -> list[str]:
        with self._read_txn() as txn:
            return [k.decode() for k in txn.cursor(db=self._heads).iternext(values=False)]

    def map_size(self) -> int:
        return int(self._env.info()["map_size"])

    def close(self) -> None:
        _OPEN.pop((os.getpid(), str(self.path.resolve())), None)
        _PREPARED.discard(str(self.path))  # whoever opens it next checks it again
        self._env.close()


_OPEN: dict[tuple[int, str], EventLog] = {}
# environments (by path as opened) whose directory, file modes and format were checked by a handle that is
# still open in this process or in the one this process was forked from
_PREPARED: set[str] = set()
# absolute path as given -> its real path. Inherited through fork: every actor process is forked from its
# supervisor, which opened the same log, so a fresh instance skips the symlink walk (~0.3 ms of a
# restart in a new process). A data_dir is not re-pointed by a symlink while its node runs.
_REAL_PATHS: dict[str, str] = {}


def open_event_log(path: str | os.PathLike[str]) -> EventLog:
    """The process-wide :class:`EventLog` for ``path``: LMDB forbids opening one environment twice in a
    process, and a handle inherited through ``fork`` must not be used, hence the key on the pid."""
    given = os.fspath(path)
    real = _REAL_PATHS.get(given)
    if real is None:
        real = str(Path(given).resolve())
        if os.path.isabs(given):  # a relative path means something else after a chdir
            _REAL_PATHS[given] = real
    key = (os.getpid(), real)
    log = _OPEN.get(key)
    if log is None:
        log = _OPEN[key] = EventLog(path)
    return log
