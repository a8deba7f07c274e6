from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import lmdb
import pytest

from actors.eventlog import CorruptRecord, DiskFull, EventLog, UnreadableEventLog, open_event_log
from tests.small_fs import fill, free_bytes, mounted_tmpfs


def test_append_read_snapshot_compact_and_values(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    assert log.append("s", [{"n": i} for i in range(5)]) == [1, 2, 3, 4, 5]
    assert [r.payload["n"] for r in log.read("s", after=2)] == [2, 3, 4]
    assert [r.seq for r in log.read("s", after=1, limit=2)] == [2, 3]
    with log.batch() as b:
        b.append("s", {"n": 5})
        b.append("t", "other stream")
        b.put_value("consumer/x", 6)
        b.save_snapshot("s", 6, {"sum": 15})
        b.compact("s", 4)
    assert b.assigned == {"s": [6], "t": [1]}
    assert log.first_seq("s") == 5 and log.last_seq("s") == 6
    assert log.load_snapshot("s") == (6, {"sum": 15})
    assert log.get_value("consumer/x") == 6 and log.get_value("missing", "dflt") == "dflt"
    assert sorted(log.streams()) == ["s", "t"]
    log.close()


def test_nothing_is_written_when_the_batch_block_raises(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    with pytest.raises(RuntimeError), log.batch() as b:
        b.append("s", 1)
        raise RuntimeError("consumer failed mid-batch")
    assert log.last_seq("s") == 0
    log.close()


def test_map_full_grows_the_map(tmp_path: Path) -> None:
    log = EventLog(tmp_path, map_size=256 << 10)
    before = log.map_size()
    for _ in range(50):
        log.append("big", ["x" * 10_000] * 5)
    assert log.map_size() > before
    assert len(log.read("big")) == 250
    log.close()


def test_corrupt_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "data.mdb").write_bytes(b"this is not lmdb" * 1000)
    with pytest.raises(UnreadableEventLog, match=r"data\.mdb: not an LMDB environment"):
        EventLog(tmp_path)


def test_foreign_lmdb_environment_is_refused(tmp_path: Path) -> None:
    env = lmdb.open(str(tmp_path))
    with env.begin(write=True) as txn:
        txn.put(b"someone-elses", b"data")
    env.close()
    with pytest.raises(UnreadableEventLog, match="without garrison's format marker"):
        EventLog(tmp_path)


def test_checksum_mismatch_names_stream_and_seq(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    log.append("s", [{"v": 1}])
    log.close()
    env = lmdb.open(str(tmp_path), max_dbs=8)
    db = env.open_db(b"events")
    with env.begin(write=True) as txn:
        key, raw = next(iter(txn.cursor(db=db)))
        txn.put(key, raw[:-1] + bytes([raw[-1] ^ 0xFF]), db=db)
    env.close()
    log = EventLog(tmp_path)
    with pytest.raises(CorruptRecord, match=r"stream 's' seq 1: checksum mismatch"):
        log.read("s")
    log.close()


def test_open_event_log_is_one_handle_per_process(tmp_path: Path) -> None:
    a = open_event_log(tmp_path)
    assert open_event_log(tmp_path) is a
    a.close()


def test_disk_full_is_a_named_disk_full_error_and_the_log_recovers(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "small") as fs:
        log = EventLog(fs / "eventlog")
        log.append("s", [{"n": 0}])
        filler = fill(fs)
        assert free_bytes(fs) < 64 << 10, "the file system did not really fill up"
        with pytest.raises(DiskFull, match=rf"{fs / 'eventlog'}: disk full.*free space") as caught:
            for n in range(1, 200):  # the free pages LMDB keeps can absorb a few commits first
                log.append("s", [{"n": n, "pad": "x" * 8000}])
        assert isinstance(caught.value.__cause__, lmdb.Error)  # LMDB really failed to write
        failed_at = log.last_seq("s")
        filler.unlink()
        assert log.read("s")[0].payload == {"n": 0}  # what was committed before is intact
        assert log.append("s", [{"n": "after"}]) == [failed_at + 1]
        log.close()
        reopened = EventLog(fs / "eventlog")
        assert reopened.read("s", after=failed_at)[0].payload == {"n": "after"}
        reopened.close()


def test_data_files_are_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)  # the most permissive umask: modes must not depend on it
    try:
        (tmp_path / "old").mkdir(mode=0o755)
        log = EventLog(tmp_path / "new")
        log.close()
        (tmp_path / "old" / "data.mdb").write_bytes((tmp_path / "new" / "data.mdb").read_bytes())
        os.chmod(tmp_path / "old" / "data.mdb", 0o644)  # left world-readable by an older version
        EventLog(tmp_path / "old").close()
    finally:
        os.umask(old)
    modes = {
        str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode)
        for p in [tmp_path / "new", tmp_path / "old", *tmp_path.glob("*/*.mdb")]
    }
    wanted = {name: (0o700 if "." not in name else 0o600) for name in modes}
    assert len(modes) == 6 and modes == wanted


def test_a_reader_follows_a_map_another_process_grew(tmp_path: Path) -> None:
    """A producer's big append grows the map in ITS process: a reader holding the old size must adopt the
    new one instead of failing every transaction with MDB_MAP_RESIZED (a crash of every consumer)."""
    reader = EventLog(tmp_path / "log")
    reader.append("s", [{"n": 0}])
    before = reader.map_size()
    grow = (
        "import sys; from actors.eventlog import EventLog; log = EventLog(sys.argv[1]); "
        "log.append('s', [b'x' * (1 << 20)] * 80); print(log.map_size())"
    )
    done = subprocess.run(
        [sys.executable, "-c", grow, str(tmp_path / "log")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > before  # the other process really grew the map
    assert reader.last_seq("s") == 81 and len(reader.read("s", after=80)) == 1
    reader.append("s", [{"n": 82}])  # and writes after it
    assert reader.read("s", after=81)[0].payload == {"n": 82}
    reader.close()


def test_a_log_opened_while_another_process_grows_its_map_opens(tmp_path: Path, monkeypatch: Any) -> None:
    """The same race at open: the map grows between LMDB's open and the first transaction (a consumer
    starting while the producer appends a backlog). The benchmark's reader crashed on it, as would a
    gateway starting then."""
    EventLog(tmp_path / "log").close()
    grow = (
        "import sys; from actors.eventlog import EventLog; log = EventLog(sys.argv[1]); "
        "log.append('s', [b'x' * (1 << 20)] * 80); print(log.map_size())"
    )
    original = EventLog._open_dbs
    grown: list[int] = []

    def open_after_growth(self: EventLog) -> None:
        if not grown:
            done = subprocess.run(
                [sys.executable, "-c", grow, str(tmp_path / "log")],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            grown.append(int(done.stdout))
            with pytest.raises(lmdb.MapResizedError):  # the race really happened
                original(self)
            raise lmdb.MapResizedError("from the test")
        original(self)

    monkeypatch.setattr(EventLog, "_open_dbs", open_after_growth)
    log = EventLog(tmp_path / "log")
    assert grown and log.map_size() >= grown[0] and log.last_seq("s") == 80
    log.close()
