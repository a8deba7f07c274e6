"""Acknowledged appends survive SIGKILL of the writer at random moments."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors.eventlog import EventLog
from tests.system.eventlog_writer import payload
from tests.system.nodes import REPO

pytestmark = pytest.mark.system

KILLS = 30


def test_acknowledged_records_survive_sigkill_at_random_moments(tmp_path: Path) -> None:
    rng = random.Random(20261123)
    path = tmp_path / "log"
    acked = 0
    for round_ in range(KILLS):
        batch = rng.choice([1, 7, 50])
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.system.eventlog_writer", str(path), str(batch)],
            cwd=REPO,
            stdout=subprocess.PIPE,
        )
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        deadline = time.monotonic() + rng.uniform(0.05, 0.4)
        raw = b""
        while time.monotonic() < deadline:
            raw += _drain(fd)
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        raw += _drain(fd)
        proc.stdout.close()
        buf = raw.decode()
        acks = [
            int(line.split()[1])
            for line in buf.splitlines()
            if line.startswith("ACK ") and line.count(" ") == 1
        ]
        if acks:
            acked = max(acked, acks[-1])
        log = EventLog(path)
        try:
            records = log.read("readings")
            assert len(records) >= acked, f"round {round_}: {len(records)} records < {acked} acknowledged"
            assert [r.seq for r in records] == list(range(1, len(records) + 1))
            for r in records[:acked]:
                assert r.payload == payload(r.seq)
            # offset committed with its batch (none yet when the writer died before its first commit)
            assert log.get_value("writer/offset", 0) == len(records)
        finally:
            log.close()
    assert acked > 0


def _drain(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk
