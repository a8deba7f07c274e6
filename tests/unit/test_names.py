"""Name resolution (pure), the status view of consumers' offsets, and the status text on-call reads."""

from __future__ import annotations

import pytest

from actors.names import BadPath, resolve
from supervisors.control_cli import render_status
from supervisors.stream_status import consumer_offsets


@pytest.mark.parametrize(
    ("target", "supervisor", "expected"),
    [
        ("counter", "root", "root/counter"),  # a sibling
        ("sub/worker", "root", "root/sub/worker"),  # a child of the sibling supervisor sub
        ("../x", "root/sub", "root/x"),
        ("root/counter", "root/sub", "root/counter"),  # absolute: starts with the root's id
        ("/root/counter", "root/sub", "root/counter"),
        ("./root", "root", "root/root"),  # a sibling that shares the root's id
        ("root/a", "", "root/a"),  # the root itself names absolutely
    ],
)
def test_resolve(target: str, supervisor: str, expected: str) -> None:
    assert resolve(target, supervisor) == expected


@pytest.mark.parametrize(
    ("target", "supervisor"), [("", "root"), ("../../x", "root/sub"), ("a//b", "root"), ("..", "root")]
)
def test_resolve_rejects_what_names_no_actor(target: str, supervisor: str) -> None:
    with pytest.raises(BadPath):
        resolve(target, supervisor)


def test_consumer_offsets_know_the_built_in_consumers() -> None:
    found = consumer_offsets(
        {
            "offset/dispatch/file": 7,
            "offset/dispatch/file/replay": 1,
            "offset/raft/r1": 3,
            "offset/mystery": 2,
            "inference/root/pipeline/inference": {"offset": 40, "windows": {}},
            "crdt/c1": {"readings_offset": 9, "inbox_offset": 4},
        }
    )
    by = {f["consumer"]: f["stream"] for f in found}
    assert by == {
        "dispatch/file": "incidents/committed",
        "dispatch/file/replay": "dispatch/replay/file",
        "raft/r1": "incidents/proposed",
        "mystery": None,
        "inference/root/pipeline/inference": "readings",
        "crdt/c1": "readings",
        "crdt/c1/inbox": "gossip/c1",
    }


def test_status_text_is_an_indented_tree_with_the_last_exit() -> None:
    child = {"status": "running", "incarnation": 2, "pid": 11, "restarts_in_period": 1, "period_s": 5}
    status = {
        "node": "n",
        "data_dir": "/d",
        "at": 100.0,
        "tree": {
            "path": "root",
            "children": [
                {
                    **child,
                    "id": "a",
                    "last_exit": {"kind": "crash", "reason": "E: x", "directive": "restart", "at": 97.0},
                },
                {
                    **child,
                    "id": "sub",
                    "supervisor": True,
                    "children": [{**child, "id": "b", "backoff_pending_s": 0.5}],
                },
            ],
        },
        "streams": {
            "heads": {"readings": 5},
            "consumers": [{"consumer": "x", "stream": "readings", "offset": 3, "lag": 2}],
        },
    }
    text = render_status(status)
    assert "root\n├─ a " in text and "│     last exit 3.0s ago: crash: E: x -> restart" in text
    assert "└─ sub " in text and "\n   └─ b " in text and "backoff 0.5s" in text
    assert "restarts 1 in 5s / 0 total" in text
    assert "  x " in text and "readings" in text
