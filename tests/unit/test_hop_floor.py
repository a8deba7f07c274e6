"""``bench.hop_floor`` measures what it says: frames really cross the three relay processes (two over mTLS)
and, in the durable case, every entry really is in the follower's LMDB file."""

from __future__ import annotations

from pathlib import Path

import lmdb

from bench.hop_floor import chain

WARMUP = 20  # round trips chain() makes before it times any


def test_the_durable_chain_stores_every_entry_it_timed_on_the_follower(tmp_path: Path) -> None:
    times = chain(tmp_path / "disk", 5, disk=True)
    assert len(times) == 5 and all(t > 0 for t in times)
    env = lmdb.open(str(tmp_path / "disk" / "follower.lmdb"), readonly=True, lock=False)
    try:
        assert env.stat()["entries"] == WARMUP + 5
    finally:
        env.close()
    assert not (tmp_path / "disk" / "leader.lmdb").exists(), "the leader wrote without being asked"


def test_the_leader_writes_every_entry_durably_too_when_asked(tmp_path: Path) -> None:
    times = chain(tmp_path / "both", 4, disk=True, loop="asyncio", leader_disk=True)
    assert len(times) == 4
    for replica in ("leader", "follower"):
        env = lmdb.open(str(tmp_path / "both" / f"{replica}.lmdb"), readonly=True, lock=False)
        try:
            assert env.stat()["entries"] == WARMUP + 4, replica
        finally:
            env.close()


def test_the_asyncio_chain_relays_and_writes_nothing_without_disk(tmp_path: Path) -> None:
    times = chain(tmp_path / "async", 3, disk=False, loop="asyncio")
    assert len(times) == 3
    assert not (tmp_path / "async" / "follower.lmdb").exists()
    assert not (tmp_path / "async" / "leader.lmdb").exists()
