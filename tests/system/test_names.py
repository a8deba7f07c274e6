"""Names on a real node: tell/ask between actors by absolute and relative path, a message sent while its
target restarts reaches the fresh instance, unknown paths and a full hold are dead-lettered (never silently
dropped), and an ask that gets no answer times out, delivered to a callback or as a message."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.eventlog import open_event_log
from supervisors.client import ActorCrashed, AskTimedOut, NodeClient, NoSuchActor, connect
from tests.system.nodes import LiveNode, supervisor, worker, write_topology

PROBE = "tests.fixture_names.Probe"
HOLD_LIMIT = 5  # GARRISON_HOLD_LIMIT for this node: overflow is reached with a few messages


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveNode, Path]]:
    tmp = tmp_path_factory.mktemp("names")
    runtime = tmp / "run"
    runtime.mkdir(mode=0o700)
    tree = supervisor(
        "root",
        [
            worker("a", PROBE),
            supervisor(
                "sub",
                [
                    worker("b", PROBE),
                    worker("c", PROBE, backoff={"min": 1, "max": 1}),
                    worker("d", PROBE, backoff={"min": 6, "max": 6}),
                ],
                intensity=20,
            ),
        ],
        intensity=20,
    )
    topology = write_topology(tmp, tree)
    saved = {k: os.environ.get(k) for k in ("XDG_RUNTIME_DIR", "GARRISON_HOLD_LIMIT")}
    os.environ.update(XDG_RUNTIME_DIR=str(runtime), GARRISON_HOLD_LIMIT=str(HOLD_LIMIT))
    live = LiveNode(topology, duration=300)
    try:
        live.wait_for("control_endpoint_ready", timeout=60)
        yield live, tmp / "data"
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        run = live.finish(stop=True)
        assert run.code == 0, run.stderr[-3000:]


@pytest.fixture
def client(node: tuple[LiveNode, Path]) -> Iterator[NodeClient]:
    with connect(data_dir=node[1]) as c:
        yield c


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_tell_and_ask_between_actors_by_absolute_and_relative_path(client: NodeClient) -> None:
    # a (under root) asks its cousin by a relative path: "sub/b" from root -> root/sub/b
    got = client.ask("root/a", {"op": "ask", "to": "sub/b", "msg": "hello by relative path"}, timeout=10)
    assert got == {"via": "callback", "outcome": "Reply", "value": "ok"}
    # b asks a by "../a" (from root/sub) and gets a's own account of who it is
    got = client.ask("root/sub/b", {"op": "ask", "to": "../a", "msg": {"op": "whoami"}}, timeout=10)
    assert got["outcome"] == "Reply" and got["value"]["path"] == "root/a"
    # a tells b by its absolute path; b's sibling c is reached by the bare name "c"
    assert client.ask("root/a", {"op": "tell", "to": "root/sub/b", "msg": "told absolutely"}) == "sent"
    assert client.ask("root/sub/b", {"op": "tell", "to": "c", "msg": "told a sibling"}) == "sent"
    # the payloads really reached the actors
    received_b = _wait_received(client, "root/sub/b", 2)
    assert received_b == ["hello by relative path", "told absolutely"]
    assert "told a sibling" in _wait_received(client, "root/sub/c", 1)


def _wait_received(client: NodeClient, path: str, count: int, timeout: float = 15) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        received = client.ask(path, {"op": "received"}, timeout=10)
        if len(received) >= count or time.monotonic() > deadline:
            return list(received)
        time.sleep(0.05)


def test_message_sent_during_backoff_reaches_the_fresh_instance(
    node: tuple[LiveNode, Path], client: NodeClient
) -> None:
    live, _ = node
    before = client.ask("root/sub/c", {"op": "whoami"})
    crashes = len(live.named("child_crashed", child="c"))
    with pytest.raises(ActorCrashed, match="asked to crash"):
        client.ask("root/sub/c", {"op": "crash"}, timeout=10)
    # the fault happened: the supervisor decided the crash (restart after a 1 s backoff), the old process
    # is gone, and only then are the messages sent: they cannot have reached the old instance
    live.wait_for("child_crashed", child="c", count=crashes + 1)
    live.wait_until(lambda: _pid_gone(before["pid"]), 10, "the crashed instance's process to exit")
    for i in range(3):
        client.tell("root/sub/c", f"during backoff {i}")
    live.wait_for("messages_held", child="c")
    after = client.ask("root/sub/c", {"op": "whoami"}, timeout=15)
    assert after["incarnation"] == before["incarnation"] + 1 and after["pid"] != before["pid"]
    # the fresh instance got all three, in order (its own list starts empty: nothing else was sent to it)
    assert client.ask("root/sub/c", {"op": "received"}) == [f"during backoff {i}" for i in range(3)]
    live.wait_for("held_messages_delivered", child="c", count=1)


def test_unknown_path_and_full_hold_are_dead_lettered(
    node: tuple[LiveNode, Path], client: NodeClient
) -> None:
    live, data_dir = node
    with pytest.raises(NoSuchActor, match="no child 'nope'"):
        client.ask("root/sub/nope", "hello?", timeout=10)
    # an actor's tell to a name that does not exist: its own supervisor dead-letters it
    assert client.ask("root/a", {"op": "tell", "to": "ghost", "msg": "boo"}) == "sent"
    live.wait_for("message_dead_lettered", target="root/sub/nope", sender="control", kind="no_such_actor")
    live.wait_for("message_dead_lettered", target="root/ghost", sender="root/a", message_type="str")

    # a full hold: d restarts after 6 s; HOLD_LIMIT messages are held, the rest are dead-lettered
    crashes = len(live.named("child_crashed", child="d"))
    restarts = len(live.named("child_restarted", child="d"))
    with pytest.raises(ActorCrashed):
        client.ask("root/sub/d", {"op": "crash"}, timeout=10)
    live.wait_for("child_crashed", child="d", count=crashes + 1)
    for i in range(HOLD_LIMIT + 3):
        client.tell("root/sub/d", i)
    overflow = live.wait_for("message_dead_lettered", target="root/sub/d", kind="hold_full", count=3)
    assert {e["message_type"] for e in overflow} == {"int"}
    live.wait_for(
        "child_restarted", child="d", count=restarts + 1, timeout=30
    )  # an ask now would overflow too
    assert client.ask("root/sub/d", {"op": "received"}, timeout=20) == list(range(HOLD_LIMIT))

    letters = [r.payload for r in open_event_log(data_dir / "eventlog").iter("deadletters/routing")]
    assert {(x["target"], x["kind"]) for x in letters} >= {
        ("root/sub/nope", "no_such_actor"),
        ("root/ghost", "no_such_actor"),
        ("root/sub/d", "hold_full"),
    }
    assert sorted(x["body"] for x in letters if x["kind"] == "hold_full") == [5, 6, 7]


def test_ask_timeout_to_callback_to_on_message_and_to_the_client(client: NodeClient) -> None:
    silent = {"op": "silent"}
    got = client.ask("root/a", {"op": "ask", "to": "sub/b", "msg": silent, "timeout": 0.3}, timeout=10)
    assert got == {"via": "callback", "outcome": "AskTimeout", "path": "sub/b"}
    got = client.ask("root/a", {"op": "ask_msg", "to": "sub/b", "msg": silent, "timeout": 0.3}, timeout=10)
    assert got == {"via": "on_message", "outcome": "AskTimeout", "path": "sub/b"}
    got = client.ask("root/a", {"op": "ask", "to": "sub/nope", "msg": "x"}, timeout=10)
    assert got["via"] == "callback" and got["outcome"] == "AskFailed" and got["kind"] == "no_such_actor"
    with pytest.raises(AskTimedOut, match=r"did not answer within 0\.3s"):
        client.ask("root/sub/b", silent, timeout=0.3)
    assert client.ask("root/sub/b", {"op": "whoami"})["path"] == "root/sub/b"  # still answering
