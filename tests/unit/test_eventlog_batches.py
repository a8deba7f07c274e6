"""Record batches: records appended together are one LMDB value (codec 2), read back as records with
their own sequence numbers, compacted exactly, and checked for damage as a whole."""

from __future__ import annotations

import random
from pathlib import Path

import lmdb
import pytest

from actors.eventlog import MAX_BATCH_BYTES, MAX_BATCH_RECORDS, CorruptRecord, EventLog


def stored_values(path: Path) -> list[tuple[bytes, int]]:
    """(key, codec byte) of every value in the events database, straight from LMDB."""
    env = lmdb.open(str(path), max_dbs=8, readonly=True, lock=False)
    try:
        db = env.open_db(b"events", create=False)
        with env.begin(db=db) as txn:
            return [(bytes(k), bytes(v)[1]) for k, v in txn.cursor()]
    finally:
        env.close()


def test_an_append_of_many_records_is_one_value_per_batch_keyed_by_its_last_seq(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    count = MAX_BATCH_RECORDS + 44
    assert log.append("s", [{"n": i} for i in range(count)]) == list(range(1, count + 1))
    log.append("s", [{"n": count}])  # alone: one value, the single-record layout
    log.close()
    values = stored_values(tmp_path)
    assert [(int.from_bytes(k[2:], "big"), codec) for k, codec in values] == [
        (MAX_BATCH_RECORDS, 2),
        (count, 2),
        (count + 1, 1),
    ]
    log = EventLog(tmp_path)
    assert [(r.seq, r.payload["n"]) for r in log.read("s")] == [(i + 1, i) for i in range(count + 1)]
    log.close()


def test_reads_from_any_offset_with_any_limit_match_one_record_per_value(tmp_path: Path) -> None:
    """A random mix of single appends, batches and multi-stream write batches, read back from every offset
    with random limits, gives what a list of the payloads gives."""
    rng = random.Random(20261130)
    log = EventLog(tmp_path)
    expected: list[int] = []
    for _ in range(60):
        size = rng.choice([1, 1, 2, 7, 100, MAX_BATCH_RECORDS + 1])
        payloads = list(range(len(expected), len(expected) + size))
        with log.batch() as batch:
            if rng.random() < 0.3:
                for p in payloads:
                    batch.append("s", p)
            else:
                batch.extend("s", payloads)
            batch.append("other", "x")
        expected += payloads
    assert log.last_seq("s") == len(expected)
    for after in sorted(
        {0, 1, len(expected) - 1, len(expected)} | {rng.randrange(len(expected)) for _ in range(80)}
    ):
        limit = rng.choice([None, 1, 2, 5, 300])
        want = expected[after : None if limit is None else after + limit]
        got = log.read("s", after=after, limit=limit)
        assert [r.payload for r in got] == want, (after, limit)
        assert [r.seq for r in got] == list(range(after + 1, after + 1 + len(want)))
    log.close()


@pytest.mark.parametrize("through", [1, 49, 50, 51, 99, 100, 150])
def test_compaction_inside_a_batch_keeps_exactly_the_records_after_it(tmp_path: Path, through: int) -> None:
    log = EventLog(tmp_path)
    log.append("s", list(range(1, 101)))
    log.append("s", [101])
    with log.batch() as batch:
        batch.compact("s", through)
    kept = [r.seq for r in log.read("s")]
    assert kept == list(range(through + 1, 102))
    assert [r.payload for r in log.read("s")] == kept  # each payload still sits at its own seq
    assert log.first_seq("s") == (through + 1 if through < 101 else 0) and log.last_seq("s") == 101
    log.append("s", [102, 103])
    assert [r.seq for r in log.read("s")] == list(range(min(through + 1, 102), 104))
    log.close()


def test_a_damaged_batch_names_the_stream_and_the_seq_its_batch_ends_at(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    log.append("s", [{"v": i} for i in range(10)])
    log.close()
    env = lmdb.open(str(tmp_path), max_dbs=8)
    db = env.open_db(b"events")
    with env.begin(write=True) as txn:
        key, raw = next(iter(txn.cursor(db=db)))
        assert raw[1] == 2  # really a batch
        txn.put(key, raw[:-1] + bytes([raw[-1] ^ 0xFF]), db=db)
    env.close()
    log = EventLog(tmp_path)
    with pytest.raises(CorruptRecord, match=r"stream 's' record batch ending at seq 10: checksum mismatch"):
        log.read("s", after=3)
    log.close()


def test_large_records_go_in_values_of_about_max_batch_bytes(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    big = [{"n": i, "block": "x" * 1500} for i in range(200)]  # ~300 KB together
    log.append("s", big)
    log.close()
    values = stored_values(tmp_path)
    assert len(values) > 5, "the records went into too few values"
    sizes = []
    env = lmdb.open(str(tmp_path), max_dbs=8, readonly=True, lock=False)
    with env.begin(db=env.open_db(b"events", create=False)) as txn:
        sizes = [len(v) for _, v in txn.cursor()]
    env.close()
    assert max(sizes) <= MAX_BATCH_BYTES + 1600, sizes
    log = EventLog(tmp_path)
    assert [r.payload["n"] for r in log.read("s", after=17, limit=40)] == list(range(17, 57))
    log.close()


def test_reads_never_share_a_payload_object_even_from_a_batch_decoded_once(tmp_path: Path) -> None:
    """A consumer taking a batch in parts is served the rest from the batch decoded first; a read of
    records already handed out decodes afresh, so a payload one caller changes is nobody else's."""
    log = EventLog(tmp_path)
    log.append("s", [{"n": i} for i in range(20)])
    head = log.read("s", after=0, limit=5)
    tail = log.read("s", after=5, limit=5)
    assert [r.seq for r in head + tail] == list(range(1, 11))
    head[0].payload["n"] = "changed by the first reader"
    again = log.read("s", after=0, limit=10)
    assert [r.payload["n"] for r in again] == list(range(10))
    handed = {id(r.payload) for r in head + tail}
    assert not handed & {id(r.payload) for r in again}
    log.close()
