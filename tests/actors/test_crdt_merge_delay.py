"""The CRDT exposure replica merges what arrives within ``merge_delay`` in one go (one durable commit)
instead of merging at every doorbell; a backlog goes on at once. The shell's decisions, driven directly
(``schedule`` and ``_work`` recorded); ``tests/system/test_crdt_replicas.py`` shows the counts stay exact
on a real node through SIGKILLs with the default delay."""

from __future__ import annotations

from typing import Any

from actors.crdt.replica import CrdtReplicaActor


def _replica(merge_delay: float) -> tuple[CrdtReplicaActor, list[Any]]:
    replica = CrdtReplicaActor.__new__(CrdtReplicaActor)  # no actor system: only the shell's choices
    calls: list[Any] = []
    replica.merge_delay, replica._merge_due, replica._backlog = merge_delay, False, False
    replica.schedule = lambda name, seconds: calls.append((name, seconds))  # type: ignore[method-assign]
    replica._work = lambda gossip: calls.append(("work", gossip))  # type: ignore[method-assign]
    return replica, calls


def test_doorbells_within_the_delay_make_one_merge() -> None:
    replica, calls = _replica(0.25)
    for _ in range(20):  # one ring per MQTT reading
        replica.on_appended("readings")
    assert calls == [("merge", 0.25)]
    replica.on_timer("merge")
    assert calls == [("merge", 0.25), ("work", False)]
    replica.on_appended("readings")  # the next reading sets the timer again
    assert calls[-1] == ("merge", 0.25)


def test_without_a_delay_every_doorbell_merges_at_once() -> None:
    replica, calls = _replica(0.0)
    for _ in range(3):
        replica.on_appended("readings")
    assert calls == [("work", False)] * 3


def test_a_backlog_goes_on_at_once_without_waiting_for_the_delay() -> None:
    replica, calls = _replica(0.25)
    replica._backlog = True  # the last merge stopped at its batch limit and asked to be woken again
    replica.on_appended("readings")
    assert calls == [("work", False)]
