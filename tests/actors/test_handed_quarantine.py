"""A restarted instance that persists nothing starts without opening the event log when its supervisor
handed over its fence token and its quarantine list (the supervisor read and fenced for it); it still
skips its quarantined inputs, and its first write opens the log under the handed token. Without the
handover it opens the log at start, as before (real LMDB, Thespian's in-process base)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from thespian.actors import ActorAddress, ActorSystem

from actors import eventlog
from actors.base import SupervisedActor, input_of_message, quarantine_key
from actors.eventlog import EventLog
from actors.messages import Configure

PATH = "root/stateless"


class Stateless(SupervisedActor):
    def on_message(self, msg: object, sender: ActorAddress) -> None:
        if msg == "write":
            self.event_log.put_value("written-by", PATH)
            self.send(sender, ("written", self.fence_token))
        elif isinstance(msg, str):
            self.send(sender, f"got {msg}")


def _log_open_here(data_dir: Path) -> bool:
    return (os.getpid(), str((data_dir / "eventlog").resolve())) in eventlog._OPEN


def _start(asys: ActorSystem, data_dir: Path, extra: dict[str, Any]) -> Any:
    actor = asys.createActor(Stateless)
    asys.tell(actor, Configure("n1", "root", "stateless", {}, str(data_dir), "json", 2, extra=extra))
    replies = [asys.listen(5), asys.listen(5)]
    assert [type(r).__name__ for r in replies] == ["ChildSpawned", "ChildStarted"]
    return actor


def _poison_key() -> str:
    ref = input_of_message("poison")
    assert ref is not None
    return f"message:{ref['message_type']}:{ref['digest']}"


def test_handed_token_and_quarantine_start_without_the_log(asys: ActorSystem, tmp_path: Path) -> None:
    supervisor_log = EventLog(tmp_path / "eventlog")  # what the supervisor does in its restart write
    with supervisor_log.batch() as batch:
        batch.put_value(quarantine_key(PATH), [_poison_key()])
        batch.bump_fence(PATH)
    token = batch.fences[PATH]
    supervisor_log.close()

    actor = _start(asys, tmp_path, {"fence_token": token, "quarantine": [_poison_key()]})
    assert not _log_open_here(tmp_path), "the instance opened the event log at start"
    assert asys.ask(actor, "poison", 0.5) is None, "a quarantined input was handled"
    assert asys.ask(actor, "hello", 5) == "got hello"
    assert asys.ask(actor, "write", 5) == ("written", token)  # first write: opened under the handed token
    assert _log_open_here(tmp_path)


def test_without_the_handover_the_log_is_read_at_start(asys: ActorSystem, tmp_path: Path) -> None:
    supervisor_log = EventLog(tmp_path / "eventlog")
    supervisor_log.put_value(quarantine_key(PATH), [_poison_key()])
    supervisor_log.close()

    actor = _start(asys, tmp_path, {})
    assert _log_open_here(tmp_path), "the quarantine list was not read from the log"
    assert asys.ask(actor, "poison", 0.5) is None, "a quarantined input was handled"
    assert asys.ask(actor, "hello", 5) == "got hello"
