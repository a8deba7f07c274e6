"""`garrison check-history` on hostile files: exit 2 with one line naming FILE:LINE, never a traceback and
never the "not linearizable" exit 1; a pathological history ends as "unknown" (exit 3).

The command runs as a real process with an address-space limit and a timeout, so a regression (reading a
whole binary file as one line, a runaway search) fails the test instead of eating the shared machine.
Each case first checks that its input really is hostile to the plain parts (Python's json, the search).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from actors.linearizability import (
    DEFAULT_MAX_STEPS,
    EXIT_BAD_INPUT,
    EXIT_NOT_LINEARIZABLE,
    EXIT_UNKNOWN,
    SearchBudgetExceeded,
    check_history,
)
from actors.linearizability.history import MAX_LINE_BYTES, parse_operations
from actors.linearizability.models import MODELS
from actors.linearizability.search import search
from supervisors.cli import check_history_cmd

REPO = Path(__file__).resolve().parents[2]
CHILD_MEMORY_BYTES = 768 * 1024 * 1024
CHILD_TIMEOUT_S = 60


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))


def garrison(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisors.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        preexec_fn=_limit_memory,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def check(path: Path, model: str = "cas-register", *extra: str) -> subprocess.CompletedProcess[str]:
    return garrison("check-history", str(path), "--model", model, *extra)


def assert_bad_input(proc: subprocess.CompletedProcess[str], where: str, *words: str) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.returncode == EXIT_BAD_INPUT, (proc.returncode, proc.stdout, proc.stderr)
    (line,) = proc.stdout.splitlines()
    assert line.startswith(f"error: {where}: "), line
    for word in words:
        assert word in line, line


def write(tmp_path: Path, lines: list[str], name: str = "h.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


WRITE_1 = '{"process": 1, "type": "invoke", "f": "write", "value": 1}'
WRITE_1_OK = '{"process": 1, "type": "ok", "f": "write", "value": 1}'


def test_not_json(tmp_path: Path) -> None:
    path = write(tmp_path, [WRITE_1, "{process: 1"])
    assert_bad_input(check(path), f"{path}:2", "not valid JSON")


@pytest.mark.parametrize(
    ("event", "words"),
    [
        ('["invoke", "write", 1]', ["expected a JSON object per event, got list"]),
        ('{"process": [1], "type": "invoke", "f": "write", "value": 1}', ["'process' must be"]),
        ('{"process": 1, "type": 7, "f": "write", "value": 1}', ["unknown type 7"]),
        ('{"process": 1, "type": "invoke", "f": null, "value": 1}', ["unknown f None"]),
        ('{"process": 1, "type": "invoke", "f": "cas", "value": "x"}', ["cas value must be [expected, new]"]),
        ('{"process": 1, "type": "invoke", "f": "write"}', ["missing field 'value'"]),
        ('{"process": true, "type": "invoke", "f": "write", "value": 1}', ["'process' must be"]),
    ],
)
def test_wrong_types(tmp_path: Path, event: str, words: list[str]) -> None:
    path = write(tmp_path, [WRITE_1, WRITE_1_OK, event])
    assert_bad_input(check(path), f"{path}:3", *words)


def test_a_log_read_that_is_not_a_list(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            '{"process": 1, "type": "invoke", "f": "read"}',
            '{"process": 1, "type": "ok", "f": "read", "value": 3}',
        ],
    )
    assert_bad_input(check(path, "log"), f"{path}:2", "must return the whole list")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999", "-1.5e400"])
def test_nan_and_infinities_are_bad_input_not_a_violation(tmp_path: Path, constant: str) -> None:
    events = [
        f'{{"process": 1, "type": "invoke", "f": "write", "value": {constant}}}',
        f'{{"process": 1, "type": "ok", "f": "write", "value": {constant}}}',
        '{"process": 2, "type": "invoke", "f": "read"}',
        f'{{"process": 2, "type": "ok", "f": "read", "value": {constant}}}',
    ]
    parsed = [json.loads(e) for e in events]  # Python's json accepts them ...
    if constant == "NaN":  # ... and NaN never equals itself: a write-then-read of it would be "illegal"
        assert parsed[1]["value"] != parsed[3]["value"]
    path = write(tmp_path, events)
    assert_bad_input(check(path), f"{path}:1")


def test_nan_in_memory_is_bad_input_too() -> None:
    from actors.linearizability import HistoryFormatError

    events = [{"process": 1, "type": "invoke", "f": "write", "value": [1, float("nan")]}]
    with pytest.raises(HistoryFormatError, match=r"<history>:1: value\[1\] is nan"):
        check_history(events, "cas-register")


def test_a_5000_digit_number(tmp_path: Path) -> None:
    event = '{"process": 1, "type": "invoke", "f": "write", "value": ' + "9" * 5000 + "}"
    with pytest.raises(ValueError, match="integer string conversion"):
        json.loads(event)  # not a JSONDecodeError: it used to escape as a traceback
    path = write(tmp_path, [event])
    assert_bad_input(check(path), f"{path}:1", "a number of 5000 digits")


def test_deep_nesting(tmp_path: Path) -> None:
    deep = '{"process": 1, "type": "invoke", "f": "write", "value": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(RecursionError):
        json.loads(deep)
    medium = '{"process": 1, "type": "invoke", "f": "write", "value": ' + "[" * 500 + "]" * 500 + "}"
    path = write(tmp_path, [WRITE_1, WRITE_1_OK, deep, medium])
    assert_bad_input(check(path), f"{path}:3", "nested deeper than")
    path = write(tmp_path, [WRITE_1, WRITE_1_OK, medium])
    assert_bad_input(check(path), f"{path}:3", "value", "nested deeper than 32 levels")


def test_a_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_bytes(bytes(range(255, -1, -1)) * 64)  # starts with 0xff: never UTF-8
    assert_bad_input(check(path), f"{path}:1", "not UTF-8 text")


def test_a_binary_file_without_newlines_is_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with open(path, "wb") as handle:  # sparse: 4 GiB of NUL bytes on paper, no newline
        handle.truncate(4 * 1024**3)
    assert path.stat().st_size > CHILD_MEMORY_BYTES  # reading it as one line would fail the child
    assert_bad_input(check(path), f"{path}:1", f"line longer than {MAX_LINE_BYTES} bytes")


def test_a_directory_or_missing_file(tmp_path: Path) -> None:
    proc = check(tmp_path / "missing.jsonl")
    assert proc.returncode == EXIT_BAD_INPUT and "Traceback" not in proc.stderr


def pathological(processes: int) -> list[dict[str, Any]]:
    """Concurrent writes of distinct values, then two reads that no order can explain: the search must
    try every subset of writes before it can say no (exponential in `processes`)."""
    events = [{"process": p, "type": "invoke", "f": "write", "value": p} for p in range(processes)]
    events += [{"process": p, "type": "ok", "f": "write", "value": p} for p in range(processes)]
    for value in (1, 2):
        events += [
            {"process": 0, "type": "invoke", "f": "read"},
            {"process": 0, "type": "ok", "f": "read", "value": value},
        ]
    return events


def test_a_pathological_history_ends_as_unknown_with_exit_3(tmp_path: Path) -> None:
    # the same shape, small: decided "not linearizable"; large: more steps than the budget allows
    assert check_history(pathological(8), "cas-register").ok is False
    with pytest.raises(SearchBudgetExceeded):
        check_history(pathological(40), "cas-register", max_steps=200_000)
    path = write(tmp_path, [json.dumps(e) for e in pathological(40)])
    proc = check(path, "cas-register", "--max-steps", "200000")
    assert "Traceback" not in proc.stderr
    assert proc.returncode == EXIT_UNKNOWN, (proc.stdout, proc.stderr)
    first, second = proc.stdout.splitlines()
    assert first == "unknown"
    assert second.startswith("unknown: no verdict within 200000 search steps") and "--max-steps" in second
    small = write(tmp_path, [json.dumps(e) for e in pathological(8)], name="small.jsonl")
    assert check(small).returncode == EXIT_NOT_LINEARIZABLE


def test_the_step_budget_has_a_default_and_the_exit_codes_are_documented() -> None:
    (option,) = [p for p in check_history_cmd.params if p.name == "max_steps"]
    assert option.default == DEFAULT_MAX_STEPS
    assert 0 < DEFAULT_MAX_STEPS < 10**8
    help_text = garrison("check-history", "--help").stdout
    for line in ("0  linearizable", "1  not linearizable", "2  bad input", "3  unknown"):
        assert line in help_text


def test_the_budget_covers_the_witness_shrinking_too() -> None:
    # shrinking re-runs the search many times: within the total budget it stops with a larger witness
    events = pathological(10)
    model = MODELS["cas-register"]
    operations = parse_operations(events, [f"<history>:{i}" for i in range(len(events))], model)
    needed = search(operations, model).steps
    full = check_history(events, "cas-register")
    assert full.ok is False and full.witness is not None and len(full.witness) == 8
    limited = check_history(events, "cas-register", max_steps=needed + 10)
    assert limited.ok is False and "(shrinking stopped at its step budget)" in limited.explanation
    assert limited.witness is not None and len(limited.witness) > len(full.witness)
