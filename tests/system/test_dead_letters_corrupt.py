"""`garrison dead-letters list|replay` on a damaged data.mdb: one line naming the file, exit 2; never a
traceback, never a bus error. Real LMDB files, damaged the way disks and copies damage them; each case
first shows that the damage really crashes or breaks a plain reader."""

from __future__ import annotations

import os
import random
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from actors.eventlog import EventLog
from actors.streams import dead_letter_stream

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
COMPONENT = "dispatch/webhook"
TIMEOUT_S = 60


def make_node_dir(tmp_path: Path, letters: int = 40) -> Path:
    """A data_dir whose event log holds ``letters`` dispatcher dead letters (each > half a page, so
    LMDB stores them on overflow pages)."""
    data_dir = tmp_path / "data"
    log = EventLog(data_dir / "eventlog")
    payloads = [
        {"reason": "HTTP 500", "ts": 1.0, "payload": {"index": i, "incident": {"id": i, "note": "x" * 3000}}}
        for i in range(letters)
    ]
    log.append(dead_letter_stream(COMPONENT), payloads)
    log.close()
    return data_dir


def garrison(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisors.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def plain_read(data_dir: Path) -> subprocess.CompletedProcess[str]:
    """Read every dead letter with the event log itself, no header check, in a child process."""
    code = (
        "import sys\nfrom actors.eventlog import EventLog\nfrom actors.streams import dead_letter_stream\n"
        f"log = EventLog(sys.argv[1])\nprint(len(list(log.iter(dead_letter_stream({COMPONENT!r})))))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(data_dir / "eventlog")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def assert_reported(data_dir: Path, *words: str) -> None:
    data_file = data_dir / "eventlog" / "data.mdb"
    for args in (["list"], ["replay", COMPONENT]):
        proc = garrison("dead-letters", *args, "--data-dir", str(data_dir))
        assert "Traceback" not in proc.stderr and proc.returncode == 2, (args, proc.returncode, proc.stderr)
        (line,) = proc.stderr.splitlines()
        assert line.startswith(f"Error: {data_file}: "), line
        for word in words:
            assert word in line, line


def overflow_nodes(data: bytes, page_size: int = 4096) -> list[int]:
    """File offsets of leaf nodes whose value lives on overflow pages (F_BIGDATA)."""
    found = []
    for page in range(2, len(data) // page_size):
        base = page * page_size
        pgno, _pad, flags, lower, _upper = struct.unpack_from("=QHHHH", data, base)
        if pgno != page or not flags & 0x02:  # P_LEAF
            continue
        for i in range((lower - 16) // 2):
            node = base + struct.unpack_from("=H", data, base + 16 + 2 * i)[0]
            if struct.unpack_from("=H", data, node + 4)[0] & 0x01:  # F_BIGDATA
                found.append(node)
    return found


def test_a_healthy_log_lists_and_replays(tmp_path: Path) -> None:
    data_dir = make_node_dir(tmp_path, letters=3)
    listed = garrison("dead-letters", "list", "--data-dir", str(data_dir))
    assert listed.returncode == 0 and listed.stdout.count("pending") == 3, listed.stderr
    replayed = garrison("dead-letters", "replay", COMPONENT, "--data-dir", str(data_dir))
    assert replayed.returncode == 0 and f"of {COMPONENT}: [1, 2, 3]" in replayed.stdout, replayed.stderr
    refused = garrison("dead-letters", "replay", "mqtt-bridge", "--data-dir", str(data_dir))
    assert refused.returncode == 1 and "only dispatcher dead letters" in refused.stderr


def test_a_truncated_file_would_be_a_bus_error_and_is_reported(tmp_path: Path) -> None:
    data_dir = make_node_dir(tmp_path)
    data_file = data_dir / "eventlog" / "data.mdb"
    size = data_file.stat().st_size
    os.truncate(data_file, size // 4)
    assert plain_read(data_dir).returncode == -signal.SIGBUS  # the fault: LMDB reads past the end
    assert_reported(data_dir, "truncated", f"its header says {size}")


def test_an_empty_file_is_reported_and_left_alone(tmp_path: Path) -> None:
    data_dir = make_node_dir(tmp_path)
    data_file = data_dir / "eventlog" / "data.mdb"
    data_file.write_bytes(b"")
    assert_reported(data_dir, "truncated or empty (0 bytes)")
    assert data_file.stat().st_size == 0  # LMDB would have made it a new, empty environment


def test_a_garbage_file_is_reported(tmp_path: Path) -> None:
    data_dir = make_node_dir(tmp_path)
    data_file = data_dir / "eventlog" / "data.mdb"
    data_file.write_bytes(random.Random(1).randbytes(200_000))
    assert "not an LMDB environment" in plain_read(data_dir).stderr  # a traceback for a plain reader
    assert_reported(data_dir, "not an LMDB file")


def test_garbage_pages_inside_are_reported(tmp_path: Path) -> None:
    data_dir = make_node_dir(tmp_path)
    data_file = data_dir / "eventlog" / "data.mdb"
    data = bytearray(data_file.read_bytes())
    rng = random.Random(4)
    for page in rng.sample(range(2, len(data) // 4096), 5):
        data[page * 4096 : page * 4096 + 4096] = rng.randbytes(4096)
    data_file.write_bytes(bytes(data))
    plain = plain_read(data_dir)
    assert plain.returncode == 1 and "Traceback" in plain.stderr  # the fault: the reader breaks
    assert_reported(data_dir, "corrupt (")


def test_a_record_pointing_past_the_end_crashes_only_the_child(tmp_path: Path) -> None:
    data_dir = make_node_dir(tmp_path)
    data_file = data_dir / "eventlog" / "data.mdb"
    data = bytearray(data_file.read_bytes())
    nodes = overflow_nodes(bytes(data))
    assert nodes
    for node in nodes:  # each record's size += 16 MiB: past the end of the file, inside LMDB's map
        struct.pack_into("=H", data, node + 2, 0x0100)
    data_file.write_bytes(bytes(data))
    crash = subprocess.run(
        [sys.executable, "-c", "import sys; from supervisors.deadletters import list_dead_letters as l; "
         "l(sys.argv[1])", str(data_dir)],
        cwd=REPO, capture_output=True, timeout=TIMEOUT_S, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert crash.returncode == -signal.SIGBUS  # the header is fine: the library itself is killed
    assert_reported(data_dir, "corrupt (reading it crashed the reader with SIGBUS)")


def test_no_event_log_is_bad_input(tmp_path: Path) -> None:
    proc = garrison("dead-letters", "list", "--data-dir", str(tmp_path))
    assert proc.returncode == 2 and "no event log here" in proc.stderr and "Traceback" not in proc.stderr
