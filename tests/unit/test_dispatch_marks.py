"""The replicated dispatch marks: per sink, monotone, and harmless when malformed."""

from __future__ import annotations

from typing import Any

import pytest

from actors.dispatch.marks import merge_mark, resume_after, stored_marks


def test_each_sink_moves_on_its_own_and_never_back() -> None:
    marks = merge_mark(None, {"through": 0, "sinks": {"file": 40, "stuck": 0}})
    assert marks == {"through": 0, "sinks": {"file": 40}}  # a sink at 0 has nothing to mark
    assert resume_after(marks, "file") == 40 and resume_after(marks, "stuck") == 0
    # an older mark applied late (a deposed leader's, committed after a newer one) moves nothing back
    assert merge_mark(marks, {"through": 0, "sinks": {"file": 30}}) is None
    later = merge_mark(marks, {"through": 5, "sinks": {"file": 60, "stuck": 5}})
    assert later == {"through": 5, "sinks": {"file": 60, "stuck": 5}}


def test_a_mark_of_the_older_version_carries_only_through() -> None:
    marks = merge_mark(None, {"through": 17})
    assert marks == {"through": 17, "sinks": {}}
    assert resume_after(marks, "anything") == 17
    # a sink's own mark below what every sink had never takes a lane back
    marks = merge_mark(marks, {"through": 17, "sinks": {"webhook": 3, "file": 90}})
    assert resume_after(marks, "webhook") == 17 and resume_after(marks, "file") == 90
    assert resume_after(None, "file") == 0


@pytest.mark.parametrize(
    "payload",
    [
        None,
        "through",
        [1, 2],
        {"through": "9"},
        {"through": 1.5},
        {"through": True},
        {"sinks": {"file": "9"}},
        {"sinks": {7: 9}},
        {"sinks": [("file", 9)]},
        {"sinks": {f"s{i}": 1 for i in range(51)}},
    ],
)
def test_a_malformed_mark_moves_nothing(payload: Any) -> None:
    assert merge_mark({"through": 0, "sinks": {}}, payload) is None


def test_the_stored_marks_of_a_log_from_before_per_sink_marks_are_its_single_offset() -> None:
    per_sink = {"through": 3, "sinks": {"file": 9}}
    assert stored_marks(per_sink, 3) is per_sink
    assert stored_marks(None, 6) == {"through": 6, "sinks": {}}
    assert stored_marks(None, None) is None and stored_marks(None, 0) is None
