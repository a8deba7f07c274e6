"""The README's Counter on Thespian's in-process base: a crash is reported once, and a fresh instance
recovers the persisted count (41 stays 41), not the corrupt in-memory value."""

from __future__ import annotations

import gc
from pathlib import Path

from thespian.actors import ActorExitRequest, ActorSystem

from actors.examples import Counter
from actors.messages import ChildFailed, Configure


def _start(asys: ActorSystem, data_dir: Path, incarnation: int) -> object:
    counter = asys.createActor(Counter)
    asys.tell(counter, Configure("n1", "root", "counter", {}, str(data_dir), "json", incarnation))
    replies = [asys.listen(5), asys.listen(5)]  # ChildSpawned (pid, before recovery), then ChildStarted
    assert [type(r).__name__ for r in replies] == ["ChildSpawned", "ChildStarted"]
    return counter


def test_counter_recovers_after_a_crash(asys: ActorSystem, tmp_path: Path) -> None:
    counter = _start(asys, tmp_path, 1)
    for expected in range(1, 42):
        assert asys.ask(counter, "incr", 5) == expected
    report = asys.ask(counter, "boom", 5)
    assert isinstance(report, ChildFailed)
    assert report.reason == "RuntimeError: asked to crash" and report.message_type == "str"
    assert asys.ask(counter, "get", 1) is None  # the crashed instance handles nothing more
    asys.tell(counter, ActorExitRequest())
    fresh = _start(asys, tmp_path, 2)
    assert asys.ask(fresh, "get", 5) == 41
    assert asys.ask(fresh, "incr", 5) == 42


def test_a_started_instance_keeps_its_startup_objects_out_of_full_collections(
    asys: ActorSystem, tmp_path: Path
) -> None:
    """After its start an actor freezes what exists (gc.freeze): a full collection then walks only what
    was made since. The in-process base runs the actor here, so this process's frozen count shows it."""
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    counter = _start(asys, tmp_path, 1)
    assert gc.get_freeze_count() > 1000  # modules, classes, the actor and its state
    assert asys.ask(counter, "incr", 5) == 1  # still working
    gc.unfreeze()  # leave the test process as it was
