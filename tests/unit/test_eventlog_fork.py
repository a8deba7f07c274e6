"""A process forked from one that has the event log open (every actor instance, forked from its
supervisor) opens it without repeating its parent's checks and reads and writes normally; once the log is
closed, whoever opens that path next checks it again (real LMDB, a real fork)."""

from __future__ import annotations

import os
from pathlib import Path

import lmdb
import pytest

from actors import eventlog
from actors.eventlog import EventLog, UnreadableEventLog, open_event_log


def test_a_forked_child_opens_the_parents_log_and_uses_it(tmp_path: Path) -> None:
    path = tmp_path / "eventlog"
    log = open_event_log(path)
    log.append("s", [{"a": 1}])
    log.put_value("k", 2)
    assert str(path) in eventlog._PREPARED, "the parent's checks were not remembered: nothing to skip"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        code = 1
        try:
            child = open_event_log(path)
            ok = [r.payload for r in child.read("s")] == [{"a": 1}] and child.get_value("k") == 2
            child.append("s", [{"a": 2}])
            child.put_value("k", 3)
            code = 0 if ok and child is not log else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the forked child could not read or write the log"
    assert [r.payload for r in log.read("s")] == [{"a": 1}, {"a": 2}]
    assert log.get_value("k") == 3
    log.close()


def test_after_close_the_next_open_checks_the_format_again(tmp_path: Path) -> None:
    path = tmp_path / "eventlog"
    EventLog(path).close()
    assert str(path) not in eventlog._PREPARED
    with lmdb.open(str(path), max_dbs=8) as env, env.begin(write=True) as txn:  # make it foreign
        txn.put(b"__format__", b"someone-else/9")
    with pytest.raises(UnreadableEventLog, match="is not the supported"):
        EventLog(path)
