"""Stream doorbells: a durable append wakes the stream's consumers at once; rings coalesce; a consumer that
is away loses nothing it cannot recover (real FIFOs, real LMDB)."""

from __future__ import annotations

import os
import select
import stat
from pathlib import Path

from actors.eventlog import EventLog
from actors.wakeups import Doorbells, Inbox, wake_dir


def readable(fd: int, timeout: float = 0.0) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def test_a_commit_rings_every_consumer_of_the_appended_stream_only(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "eventlog")
    root = wake_dir(tmp_path)
    a = Inbox(root, "incidents/committed", "root/dispatcher")
    b = Inbox(root, "incidents/committed", "root/other")
    c = Inbox(root, "readings", "root/inference")
    assert not any(readable(i.fd) for i in (a, b, c))
    log.append("incidents/committed", [{"index": 1}])
    assert readable(a.fd) and readable(b.fd)
    assert not readable(c.fd), "a consumer of another stream was woken"
    assert a.drain() and not readable(a.fd)
    assert not a.drain()


def test_rings_coalesce_and_a_full_pipe_drops_without_blocking(tmp_path: Path) -> None:
    root = wake_dir(tmp_path)
    inbox = Inbox(root, "readings", "root/inference")
    bells = Doorbells(root)
    for _ in range(70_000):  # more than a pipe holds (64 KiB): the producer must never block
        bells.ring(["readings"])
    assert readable(inbox.fd)
    assert inbox.drain()
    assert not readable(inbox.fd)


def test_a_consumer_that_is_away_does_not_break_the_producer_and_is_rung_again_when_back(
    tmp_path: Path,
) -> None:
    root = wake_dir(tmp_path)
    log = EventLog(tmp_path / "eventlog")
    first = Inbox(root, "readings", "root/inference")
    log.append("readings", [{"v": 1}])
    assert readable(first.fd)
    first.close()  # the consumer died: no reader on its FIFO
    log.append("readings", [{"v": 2}])  # EPIPE inside: ignored, the fd is dropped
    log.append("readings", [{"v": 3}])  # ENXIO on reopen: ignored
    again = Inbox(root, "readings", "root/inference")  # the restarted instance, same stable path
    assert again.path == first.path
    again.drain()  # whatever an earlier reader left behind
    log.append("readings", [{"v": 4}])
    assert readable(again.fd, 1.0), "the restarted consumer was not rung"


def test_a_consumer_whose_fifo_was_replaced_under_the_same_name_is_rung(tmp_path: Path) -> None:
    """A consumer that removes its FIFO when it stops (the API gateway, a benchmark's watcher) and a new
    one under the same name: the producer must ring the new FIFO, not the old one it still has open."""
    root = wake_dir(tmp_path)
    log = EventLog(tmp_path / "eventlog")
    first = Inbox(root, "incidents/committed", "bench-watcher")
    log.append("incidents/committed", [{"index": 1}])
    assert readable(first.fd)  # the producer now holds the first FIFO open
    first.close()
    os.unlink(first.path)
    again = Inbox(root, "incidents/committed", "bench-watcher")
    assert again.path == first.path
    log.append("incidents/committed", [{"index": 2}])
    assert readable(again.fd, 1.0), "the ring went to the removed FIFO"


def test_doorbells_are_owner_only_and_never_replace_a_non_fifo(tmp_path: Path) -> None:
    root = wake_dir(tmp_path)
    directory = root / "readings"
    directory.mkdir(parents=True)
    (directory / "root%2Finference").write_text("not a fifo")
    inbox = Inbox(root, "readings", "root/inference")
    st = os.stat(inbox.path)
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700


def test_a_log_with_no_consumers_rings_nothing_and_creates_nothing(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "eventlog")
    log.append("readings", [{"v": 1}])
    assert not wake_dir(tmp_path).exists()
