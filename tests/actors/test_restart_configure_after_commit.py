"""A restarted instance is created before its supervisor's restart write commits (its process boots
while the fsync runs), but it learns who it is (its Configure, with its fence token) only afterwards: when
it starts, the restart is in the committed history and its token is the one on disk (real Supervisor, real
LMDB, Thespian's in-process base, where createActor builds the instance at once)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from thespian.actors import ActorAddress, ActorSystem

from actors.base import SupervisedActor
from actors.eventlog import open_event_log
from actors.messages import ChildFailed, ChildStarted, Configure
from supervisors.spec import Strategy, SupervisorSpec, WorkerSpec
from supervisors.supervisor import Supervisor

DATA_DIR: list[Path] = []  # the test's data dir (the in-process base runs every actor in this process)
AT_CREATION: list[dict[str, int]] = []  # restart counts committed when each instance was created


class Witness(SupervisedActor):
    """Notes what its supervisor had committed when it was created, and reports it again as it starts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        history = open_event_log(DATA_DIR[0] / "eventlog").get_value("supervisor/root/history") or {}
        AT_CREATION.append(dict(history.get("restart_counts", {})))

    def on_start(self, args: dict[str, Any]) -> None:
        assert self.config is not None
        log = self.event_log
        history = log.get_value(f"supervisor/{self.config.supervisor}/history") or {}
        with log._env.begin() as txn:  # the token as committed (raw 8 bytes, not an envelope)
            raw = txn.get(f"fence/{self.path}".encode(), db=log._values)
        on_disk = int.from_bytes(raw, "big") if raw else None
        handed = self.config.extra.get("fence_token")
        counts = dict(history.get("restart_counts", {}))
        self.send(args["report_to"], ("started", self.config.incarnation, handed, on_disk, counts))

    def on_message(self, msg: object, sender: ActorAddress) -> None:
        if msg == "crash":
            raise RuntimeError("asked to crash")


def _wait(asys: ActorSystem, match: Any, what: str) -> Any:
    for _ in range(50):
        msg = asys.listen(0.2)
        if msg is not None and match(msg):
            return msg
    raise AssertionError(f"no {what}")


def test_the_new_instance_is_configured_after_the_restart_commit(asys: ActorSystem, tmp_path: Path) -> None:
    DATA_DIR[:] = [tmp_path]
    AT_CREATION.clear()
    me = asys.createActor(Echoer)
    report_to = asys.ask(me, "whoami", 5)
    spec = SupervisorSpec(
        id="root",
        strategy=Strategy.ONE_FOR_ONE,
        intensity=10,
        period=60,
        children=(WorkerSpec(id="w", actor=f"{__name__}.Witness", args={"report_to": report_to}),),
    )
    root = asys.createActor(Supervisor)
    asys.tell(root, Configure("n1", "", "root", {}, str(tmp_path), "json", 1, extra={"spec": spec}))
    first = _wait(asys, lambda m: isinstance(m, tuple) and m[:2] == ("started", 1), "first instance")
    _wait(asys, lambda m: isinstance(m, ChildStarted), "ChildStarted of the root")

    worker = _wait_location(asys, root)
    asys.tell(worker, "crash")
    second = _wait(asys, lambda m: isinstance(m, tuple) and m[:2] == ("started", 2), "restarted instance")
    _, _, handed, on_disk, counts = second
    assert isinstance(handed, int) and handed > (first[3] or 0), "the restarted instance got no new token"
    assert on_disk == handed, f"its Configure came before its token was committed ({on_disk} != {handed})"
    assert counts.get("w") == 1, f"the restart was not in the committed history when it started: {counts}"
    assert len(AT_CREATION) == 2, AT_CREATION
    assert AT_CREATION[1].get("w", 0) == 0, "the new instance was created only after the restart commit"


def _wait_location(asys: ActorSystem, root: Any) -> Any:
    from actors.messages import Location, WhereIs

    for _ in range(50):
        loc = asys.ask(root, WhereIs("w"), 1)
        if isinstance(loc, Location) and loc.address is not None:
            return loc.address
    raise AssertionError("the worker never ran")


class Echoer(SupervisedActor):
    """Answers ``whoami`` with the asker's address (how the test learns its own address)."""

    def receiveMessage(self, msg: object, sender: ActorAddress) -> None:
        if msg == "whoami":
            self.send(sender, sender)
        elif isinstance(msg, ChildFailed | tuple):
            pass
