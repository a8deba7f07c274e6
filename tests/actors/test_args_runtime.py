"""At runtime an actor validates its own args before ``on_start``: a misconfigured actor crashes there,
naming the key, instead of running with a silently ignored one (on Thespian's in-process base)."""

from __future__ import annotations

from pathlib import Path

import pytest
from thespian.actors import ActorSystem

from actors.args import ActorArgs, InvalidArgs, validate_args
from actors.messages import ChildFailed, Configure


class _Strictly(ActorArgs):
    limit: int = 3


def test_a_misconfigured_actor_crashes_in_on_start_naming_the_key(tmp_path: Path) -> None:
    """Args reach an actor outside the topology check too (a Reconfigure, a test): the actor validates
    them itself before on_start, so a typo is a crash naming it, never an ignored key."""
    from actors.examples import Heartbeat

    system = ActorSystem("simpleSystemBase", logDefs=None)
    try:
        actor = system.createActor(Heartbeat)
        cfg = Configure("n1", "root", "hb", {"intervall": 0.2}, str(tmp_path), "json", 1)
        system.tell(actor, cfg)
        replies = [system.listen(5), system.listen(5)]
        failed = [r for r in replies if isinstance(r, ChildFailed)]
        assert failed, replies  # ChildSpawned, then the crash report instead of ChildStarted
        assert failed[0].exc_type == "InvalidArgs" and failed[0].message_type == "on_start"
        assert "args.intervall: unknown key (did you mean interval?)" in failed[0].reason
    finally:
        system.shutdown()
    with pytest.raises(InvalidArgs, match=r"args\.limit: Input should be a valid integer"):
        validate_args(_Strictly, {"limit": "3"}, "Strictly")
