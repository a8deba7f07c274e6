"""Where a dispatcher that becomes the leader's starts each sink: after that sink's replicated mark, and on
a log whose marks were applied before they were per sink, after the single mark every sink had (real LMDB,
the real file sink, Thespian's in-process base; the test plays the replica by writing its role and marks)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from thespian.actors import ActorSystem

from actors.dispatch.actor import DispatcherActor
from actors.eventlog import open_event_log
from actors.messages import Configure
from actors.streams import COMMITTED_INCIDENTS, PROPOSED_INCIDENTS

NODE = "gw-1"
RAFT = f"raft/{NODE}/"


def committed(n: int) -> list[dict[str, Any]]:
    return [
        {
            "index": i,
            "incident": {
                "incident_id": f"inc-{i}",
                "timestamp": 1.0,
                "type": "gas_leak",
                "source_node": "edge-1",
                "sensor": "S1",
                "confidence": 0.9,
                "payload": {},
            },
        }
        for i in range(1, n + 1)
    ]


def delivered(path: Path) -> list[int]:
    return [json.loads(line)["index"] for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize(
    ("marks", "expected"),
    [
        ({"dispatched": 6}, [7, 8, 9, 10]),  # written before marks were per sink
        ({"dispatched": 2, "dispatch_marks": {"through": 2, "sinks": {"a": 8, "b": 2}}}, [9, 10]),
    ],
)
def test_a_new_leaders_sink_resumes_after_its_replicated_mark(
    asys: ActorSystem, tmp_path: Path, marks: dict[str, Any], expected: list[int]
) -> None:
    log = open_event_log(tmp_path / "eventlog")
    log.append(COMMITTED_INCIDENTS, committed(10))
    log.put_value(RAFT + "role", {"role": "leader", "term": 2, "leader": NODE})
    for key, value in marks.items():
        log.put_value(RAFT + key, value)
    sinks = [
        {"kind": "file", "name": "a", "path": "a.jsonl"},
        {"kind": "file", "name": "b", "path": "b.jsonl"},
    ]
    actor = asys.createActor(DispatcherActor)
    asys.tell(
        actor,
        Configure(NODE, "root", "dispatch", {"cluster": True, "sinks": sinks}, str(tmp_path), "json", 1),
    )
    deadline = time.monotonic() + 20
    while delivered(tmp_path / "a.jsonl")[-1:] != [10] and time.monotonic() < deadline:
        asys.listen(0.05)
    assert delivered(tmp_path / "a.jsonl") == expected, "sink a resumed elsewhere than after its own mark"
    # and after a batch, the leader marked each sink's progress for the next leader
    mark = [r.payload for r in log.read(PROPOSED_INCIDENTS)][-1]
    assert mark["type"] == "dispatch_mark" and mark["payload"]["sinks"]["a"] == 10, mark
