"""``incident_id`` -> its index in ``incidents/committed``, kept on disk beside the stream.

The HTTP API answers a repeated ``incident_id`` with the index the first one got (200), and an edge asks a
member "already committed?". Both need this map. It used to live in the API process's memory, rebuilt at
start by reading the whole committed stream, so its memory (~150 bytes an incident) and the start time grew
with the log's history. Now the publishing Raft replica writes ``committed_index/<incident_id>`` in the same
transaction as the committed record (:func:`stage`), and a reader looks it up with one LMDB get
(:func:`lookup`): the key is there exactly when the record is.

A log written before this module existed has records without keys. The replica indexes them once, a step
at a time between its other work (:func:`backfill_step`, resumable after a restart), and then writes
:data:`COMPLETE_KEY`; a reader that finds no mark (an older log whose replica has not finished, or a node
without a publishing replica) keeps a map in memory as before (:func:`complete` says which).
"""

from __future__ import annotations

from typing import Any, Final

from actors.eventlog import EventLog, WriteBatch
from actors.streams import COMMITTED_INCIDENTS

PREFIX: Final = "committed_index/"
COMPLETE_KEY: Final = "committed_index_complete"  # value: the last committed seq indexed by the backfill
PROGRESS_KEY: Final = "committed_index_through"  # the committed seq the backfill has indexed up to
BACKFILL_BATCH: Final = 1000  # records per transaction while indexing an older log


def stage(batch: WriteBatch, incident_id: str, index: int) -> None:
    """Record ``incident_id``'s committed ``index`` in ``batch`` (the one that appends its record)."""
    batch.put_value(PREFIX + incident_id, index)


def lookup(log: EventLog, incident_id: str) -> int | None:
    """The committed index of ``incident_id``, or None if no record of it is indexed."""
    value = log.get_value(PREFIX + incident_id)
    return value if type(value) is int else None


def complete(log: EventLog) -> bool:
    """Whether every committed record of this log is indexed (so :func:`lookup` alone answers)."""
    return log.get_value(COMPLETE_KEY) is not None


def record_key(payload: Any) -> tuple[str, int] | None:
    """(incident_id, index) of a committed record's payload, None for one that names no incident."""
    if not isinstance(payload, dict):
        return None
    incident = payload.get("incident")
    index = payload.get("index")
    if not isinstance(incident, dict) or not isinstance(incident.get("incident_id"), str):
        return None
    if type(index) is not int:
        return None
    return incident["incident_id"], index


def backfill_step(log: EventLog, limit: int = BACKFILL_BATCH) -> tuple[int, bool]:
    """Index up to ``limit`` more committed records of a log from before this module, in one transaction
    that also saves how far it got (:data:`PROGRESS_KEY`), so a restart resumes instead of starting over;
    (records indexed, whether the log is now complete). The step that reaches the stream's end writes
    :data:`COMPLETE_KEY`: every record after it was appended with its key. The first record of an id wins,
    as the API's map kept it."""
    if complete(log):
        return 0, True
    after = log.get_value(PROGRESS_KEY, 0)
    records = log.read(COMMITTED_INCIDENTS, after=after, limit=limit)
    staged: set[str] = set()  # an id twice in one step: its first record wins here too
    done = len(records) < limit
    with log.batch(ring=False) as batch:
        for rec in records:
            key = record_key(rec.payload)
            if key is None or key[0] in staged or lookup(log, key[0]) is not None:
                continue
            stage(batch, *key)
            staged.add(key[0])
        through = records[-1].seq if records else after
        batch.put_value(PROGRESS_KEY, through)
        if done:
            batch.put_value(COMPLETE_KEY, through)
    return len(staged), done


def backfill(log: EventLog) -> int | None:
    """:func:`backfill_step` until the log is complete; the number of records indexed, or None when it was
    complete already."""
    if complete(log):
        return None
    indexed = 0
    while True:
        count, done = backfill_step(log)
        indexed += count
        if done:
            return indexed
