"""The checker the Jepsen test relies on can say "not linearizable" (issue 9, Proof).

A history in exactly the shape tests/harness/jepsen.py records (client processes, a nemesis process,
``time`` fields, ``info`` appends, failed reads without a value) is accepted as linearizable, and each
corruption a broken cluster would produce is caught by `garrison check-history --model log` with exit 1:
a lost acknowledged append, a stale read (a later read missing what an earlier one saw), a reordered
read, a duplicated entry, and an append answered 503 that shows up in a read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from supervisors.cli import main

Event = dict[str, Any]


def ev(process: int | str, kind: str, f: str, value: Any = None) -> Event:
    event: Event = {"process": process, "type": kind, "f": f, "time": 0.0}
    if value is not None:
        event["value"] = value
    return event


def base_history() -> list[Event]:
    """Two clients append a and b concurrently, c is unknown (504), d failed (503); reads on two nodes."""
    return [
        ev(0, "invoke", "append", "a"),
        ev(1, "invoke", "append", "b"),
        ev("nemesis", "info", "start", "isolate-follower gw-3"),
        ev(0, "ok", "append", "a"),
        ev(1, "ok", "append", "b"),
        ev(2, "invoke", "append", "c"),
        ev(2, "info", "append", "c"),  # 504: may land later or never
        ev(3, "invoke", "append", "d"),
        ev(3, "fail", "append", "d"),  # 503: definitely not appended
        ev(0, "invoke", "read"),
        ev(0, "ok", "read", ["a", "b"]),
        ev(1, "invoke", "read"),
        ev(1, "fail", "read"),  # a follower's 503
        ev("nemesis", "info", "stop", "isolate-follower"),
        ev(6, "invoke", "read"),
        ev(6, "ok", "read", ["a", "b", "c"]),
        ev("final", "invoke", "read"),
        ev("final", "ok", "read", ["a", "b", "c"]),
    ]


def check(tmp_path: Path, events: list[Event]) -> tuple[int, str]:
    path = tmp_path / "history.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    result = CliRunner().invoke(main, ["check-history", str(path), "--model", "log"])
    return result.exit_code, result.output


def replace_read(events: list[Event], process: int | str, value: list[str]) -> list[Event]:
    out = [dict(e) for e in events]
    for e in out:
        if e["process"] == process and e["type"] == "ok" and e["f"] == "read":
            e["value"] = value
    return out


def test_the_recorded_shape_is_linearizable_as_is(tmp_path: Path) -> None:
    code, output = check(tmp_path, base_history())
    assert code == 0, output
    assert output.startswith("linearizable")


@pytest.mark.parametrize(
    ("what", "process", "read"),
    [
        # b was acknowledged before the final read began; the final read does not hold it
        ("lost acknowledged append", "final", ["a", "c"]),
        # process 6 saw c; the final read, which began after 6's returned, does not: time went backwards
        ("stale read", "final", ["a", "b"]),
        ("reordered read", "final", ["b", "a", "c"]),  # process 0 saw a before b, final says b before a
        ("duplicated entry", "final", ["a", "b", "c", "c"]),
        ("refused append appears", 6, ["a", "b", "d"]),  # d was answered 503
    ],
)
def test_a_corrupted_history_is_not_linearizable(
    tmp_path: Path, what: str, process: Any, read: list[str]
) -> None:
    code, output = check(tmp_path, replace_read(base_history(), process, read))
    assert code == 1, f"{what}: the checker accepted it:\n{output}"
    assert output.startswith("not linearizable"), output
    assert "witness" in output, output


def test_a_stale_read_from_a_deposed_leader_is_caught(tmp_path: Path) -> None:
    """The classic split-brain symptom: after an append is acknowledged, a read that began later (served
    by an old leader on the minority side) returns the log without it."""
    events = [
        ev(0, "invoke", "append", "a"),
        ev(0, "ok", "append", "a"),
        ev(1, "invoke", "append", "b"),
        ev(1, "ok", "append", "b"),
        ev(2, "invoke", "read"),
        ev(2, "ok", "read", ["a"]),
    ]
    code, output = check(tmp_path, events)
    assert code == 1 and output.startswith("not linearizable"), output
    code, output = check(tmp_path, replace_read(events, 2, ["a", "b"]))
    assert code == 0, output


def sparse_read_history(rounds: int = 8, clients: int = 4) -> tuple[list[Event], list[str]]:
    """What a Jepsen run looks like when most reads answer 503: many rounds of fully concurrent appends
    and one read at the end. Without pruning, a log search tries every order of each round (4!^8 here)."""
    events: list[Event] = []
    order: list[str] = []
    for r in range(rounds):
        ids = [f"r{r}-c{c}" for c in range(clients)]
        events += [ev(c, "invoke", "append", iid) for c, iid in enumerate(ids)]
        events += [ev(c, "ok", "append", iid) for c, iid in enumerate(ids)]
        order += ids[::-1] if r % 2 else ids  # any order within a round is legal
    events += [ev("final", "invoke", "read"), ev("final", "ok", "read", order)]
    return events, order


def test_a_long_history_with_sparse_reads_gets_a_verdict_both_ways(tmp_path: Path) -> None:
    events, order = sparse_read_history()
    code, output = check(tmp_path, events)
    assert code == 0, output  # decided (not exit 3, "unknown") within the default search budget
    swapped = [*order[:3], order[4], order[3], *order[5:]]  # r0-c3 after r1's first: real time says no
    code, output = check(tmp_path, replace_read(events, "final", swapped))
    assert code == 1 and output.startswith("not linearizable"), output
    code, output = check(tmp_path, replace_read(events, "final", order[:-1]))  # the last ack lost
    assert code == 1 and output.startswith("not linearizable"), output
