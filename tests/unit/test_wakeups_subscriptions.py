"""Doorbells find new subscribers through the subscriptions file, not a stat per commit: a consumer that
subscribes after a producer cached "nobody" (or "these FIFOs") is still rung by the producer's next commit
(real FIFOs, real LMDB, real directory mtimes)."""

from __future__ import annotations

import os
import select
import stat
import time
from pathlib import Path

import pytest

from actors import wakeups
from actors.eventlog import EventLog
from actors.wakeups import Doorbells, Inbox, wake_dir


def readable(fd: int, timeout: float = 0.0) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def test_first_subscriber_after_the_producer_cached_nobody_is_rung(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "eventlog")
    old = time.time() - 3600
    os.utime(tmp_path, (old, old))  # the data dir's mtime is settled: "no wake dir" may be cached
    log.append("readings", [{"v": 1}])
    assert log._doorbells is not None and log._doorbells._parent_mtime == os.stat(tmp_path).st_mtime_ns, (
        "the producer did not cache the absence of the wake directory: this test would prove nothing"
    )
    inbox = Inbox(wake_dir(tmp_path), "readings", "root/inference")
    log.append("readings", [{"v": 2}])
    assert readable(inbox.fd, 1.0), "the first subscriber was not rung"


def test_a_recently_changed_parent_is_not_trusted_to_mean_nobody(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # coarse file clocks: a directory changed twice within one tick can keep its mtime
    monkeypatch.setattr(wakeups, "_SETTLED_NS", 3600 * 10**9)  # "recent", however slow this machine is
    log = EventLog(tmp_path / "eventlog")
    settled = os.stat(tmp_path).st_mtime_ns  # just now: the log's directory was created in it
    log.append("readings", [{"v": 1}])
    assert log._doorbells is not None and log._doorbells._parent_mtime == -1, "a fresh mtime was trusted"
    inbox = Inbox(wake_dir(tmp_path), "readings", "root/inference")
    os.utime(tmp_path, ns=(settled, settled))  # the mkdir of the wake dir landed in the same clock tick
    log.append("readings", [{"v": 2}])
    assert readable(inbox.fd, 1.0)


def test_later_subscribers_of_the_same_and_of_another_stream_are_rung(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "eventlog")
    root = wake_dir(tmp_path)
    first = Inbox(root, "readings", "root/inference")
    log.append("readings", [{"v": 1}])
    assert readable(first.fd) and first.drain()
    second = Inbox(root, "readings", "root/archiver")  # the producer has a listing of "readings" cached
    other = Inbox(root, "incidents", "root/dispatcher")
    log.append("readings", [{"v": 2}])
    log.append("incidents", [{"v": 3}])
    assert readable(first.fd) and readable(second.fd) and readable(other.fd)


def test_an_unchanged_subscription_set_costs_no_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = wake_dir(tmp_path)
    inbox = Inbox(root, "readings", "root/inference")
    bells = Doorbells(root)
    bells.ring(["readings"])
    listings: list[str] = []
    real_listdir = os.listdir

    def counting_listdir(path: str) -> list[str]:
        listings.append(path)
        return real_listdir(path)

    monkeypatch.setattr(wakeups.os, "listdir", counting_listdir)
    for _ in range(100):
        bells.ring(["readings"])
    assert inbox.drain(), "the rings did not arrive"
    assert listings == [], f"listed {len(listings)} times with no new subscriber"
    Inbox(root, "readings", "root/other")
    bells.ring(["readings"])
    assert len(listings) == 1, "a new subscriber did not make the producer list the stream again"


def test_the_subscriptions_file_is_owner_only_and_never_a_stream(tmp_path: Path) -> None:
    root = wake_dir(tmp_path)
    Inbox(root, "#subscriptions", "root/odd")  # a stream named like the file gets its own directory
    path = root / wakeups._SUBSCRIPTIONS
    st = os.stat(path)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_size == wakeups._GENERATION_BYTES
    assert (root / "%23subscriptions").is_dir()
