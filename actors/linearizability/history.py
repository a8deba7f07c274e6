"""Jepsen-style history events -> operations for the linearizability checker.

Pure: stdlib only; the one I/O function is `read_events`, which opens the history file.
Every error names where it happened as `FILE:LINE` (or `<history>:N` for in-memory events).
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from actors.linearizability.models import (
    ALL_FUNCTIONS,
    Model,
    Operation,
    Outcome,
    freeze,
)

EVENT_TYPES = ("invoke", "ok", "fail", "info")
# Jepsen logs fault injections as operations of this process; they are not client operations.
NEMESIS_PROCESS = "nemesis"
# Far above any real event, low enough that a hostile file cannot exhaust memory or recursion: a
# binary file without newlines would otherwise be one "line", and deep nesting overflows the recursive
# helpers (freeze, json.dumps of a witness).
MAX_LINE_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_NUMBER_CHARS = 100  # Python refuses int strings over 4300 digits with a bare ValueError


class HistoryFormatError(ValueError):
    """A history event is malformed. The message reads `FILE:LINE: what is wrong`."""


def read_events(path: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Parse a JSON-lines file; returns the events and each one's `FILE:LINE` location.

    Strict JSON: NaN and Infinity (which Python's json accepts) never equal themselves, so a history
    holding one could only ever look "not linearizable"; they are bad input here, as are numbers too
    long to convert, lines over `MAX_LINE_BYTES` and nesting deeper than `MAX_DEPTH`.
    """
    events: list[dict[str, Any]] = []
    locations: list[str] = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(iter(lambda: handle.readline(MAX_LINE_BYTES + 1), b""), start=1):
            where = f"{path}:{number}"
            if len(raw) > MAX_LINE_BYTES:
                raise HistoryFormatError(
                    f"{where}: line longer than {MAX_LINE_BYTES} bytes (one event per line)"
                )
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise HistoryFormatError(f"{where}: not UTF-8 text") from None
            if not line.strip():
                continue
            event = _parse_line(line, where)
            _require_object(event, where)
            events.append(event)
            locations.append(where)
    return events, locations


class _BadNumber(ValueError):
    pass


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _BadNumber(f"a number of {len(text)} digits (at most {MAX_NUMBER_CHARS})")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _BadNumber(f"a number of {len(text)} characters (at most {MAX_NUMBER_CHARS})")
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(f"{text} is out of range for a number")
    return value


def _parse_constant(name: str) -> Any:
    raise _BadNumber(f"{name} is not a JSON value")


def _parse_line(line: str, where: str) -> Any:
    try:
        return json.loads(
            line, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
        )
    except _BadNumber as error:
        raise HistoryFormatError(f"{where}: {error}") from None
    except json.JSONDecodeError as error:
        raise HistoryFormatError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None
    except RecursionError:
        raise HistoryFormatError(f"{where}: nested deeper than {MAX_DEPTH} levels") from None


def parse_operations(
    events: Sequence[Mapping[str, Any]], locations: Sequence[str], model: Model | None
) -> list[Operation]:
    """Pair invokes with completions and validate every event.

    With `model=None` only the model-independent rules are checked (for `load_history`).
    Operations that cannot constrain the order are dropped: failed read/write/append, and reads
    whose result is unknown. The result is sorted by invoke time.
    """
    outstanding: dict[Hashable, int] = {}  # process -> index of its invoke event
    operations: list[Operation | None] = []  # None: a completion _operation leaves out
    for index, event in enumerate(events):
        header = _header(event, model, locations[index])
        if header is None:
            continue
        process, kind, f = header
        if kind == "invoke":
            if process in outstanding:
                earlier = outstanding[process]
                raise HistoryFormatError(
                    f"{locations[index]}: process {process!r} invoked {f!r} while its "
                    f"{events[earlier]['f']!r} invoked at {locations[earlier]} is still "
                    "outstanding (a process has at most one operation in flight)"
                )
            _check_invoke_value(event, f, locations[index])
            outstanding[process] = index
            continue
        invoke_index = _matching_invoke(events, locations, outstanding.pop(process, None), index, model)
        operations.append(_operation(events, invoke_index, index, kind))
    for invoke_index in outstanding.values():
        operations.append(_operation(events, invoke_index, None, "info"))
    return sorted((op for op in operations if op is not None), key=lambda op: op.call)


def _header(event: Any, model: Model | None, where: str) -> tuple[Hashable, str, str] | None:
    """(process, type, f) of a valid client event; None for a nemesis event."""
    _require_object(event, where)
    _check_json_value(event, where)
    process = _field(event, "process", where)
    if process == NEMESIS_PROCESS:
        return None
    if isinstance(process, bool) or not isinstance(process, int | str):
        raise HistoryFormatError(f"{where}: 'process' must be an integer or a string, got {process!r}")
    kind = _field(event, "type", where)
    if kind not in EVENT_TYPES:
        raise HistoryFormatError(f"{where}: unknown type {kind!r} (expected one of {', '.join(EVENT_TYPES)})")
    f = _field(event, "f", where)
    _check_function(f, model, where)
    if model is not None:
        _check_key(event, kind, model, where)
    return process, kind, f


def _matching_invoke(
    events: Sequence[Mapping[str, Any]],
    locations: Sequence[str],
    invoke_index: int | None,
    index: int,
    model: Model | None,
) -> int:
    """Check the completion at `index` against its process's outstanding invoke, if any."""
    event, where = events[index], locations[index]
    kind, f, process = event["type"], event["f"], event["process"]
    if invoke_index is None:
        raise HistoryFormatError(
            f"{where}: {kind!r} completion of {f!r} for process {process!r} has no outstanding invoke"
        )
    invoke = events[invoke_index]
    if invoke["f"] != f:
        raise HistoryFormatError(
            f"{where}: {kind!r} completion has f {f!r} but process {process!r}'s "
            f"outstanding invoke at {locations[invoke_index]} has f {invoke['f']!r}"
        )
    if "key" in event and freeze(event["key"]) != freeze(invoke.get("key")):
        raise HistoryFormatError(
            f"{where}: completion key {event['key']!r} differs from the key "
            f"{invoke.get('key')!r} of its invoke at {locations[invoke_index]}"
        )
    if kind == "ok" and f == "read":
        _check_read_result(event, model, where)
    return invoke_index


def _operation(
    events: Sequence[Mapping[str, Any]], invoke_index: int, completion_index: int | None, kind: str
) -> Operation | None:
    invoke = events[invoke_index]
    f = invoke["f"]
    if kind == "ok":
        outcome = Outcome.OK
    elif kind == "fail" and f == "cas":
        outcome = Outcome.COMPARE_FAILED
    elif kind == "fail" or f == "read":
        return None  # did not happen, or a read nobody saw the result of
    else:
        outcome = Outcome.UNKNOWN
    completion = None if completion_index is None else events[completion_index]
    indices = (invoke_index,) if completion_index is None else (invoke_index, completion_index)
    return Operation(
        process=invoke["process"],
        f=f,
        key=freeze(invoke.get("key")),
        outcome=outcome,
        argument=freeze(invoke.get("value")) if f != "read" else None,
        result=freeze(completion["value"]) if f == "read" and completion is not None else None,
        call=invoke_index,
        ret=None if outcome is Outcome.UNKNOWN else completion_index,
        event_indices=indices,
    )


def _require_object(event: Any, where: str) -> None:
    if not isinstance(event, Mapping):
        raise HistoryFormatError(f"{where}: expected a JSON object per event, got {type(event).__name__}")


def _check_json_value(event: Mapping[str, Any], where: str) -> None:
    """Only finite JSON values, nested at most `MAX_DEPTH` deep (in-memory events too). Iterative,
    so that the check itself cannot overflow."""
    stack: list[tuple[Any, str, int]] = [(value, str(name), 1) for name, value in event.items()]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise HistoryFormatError(f"{where}: {path} is nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, float) and not math.isfinite(value):
            raise HistoryFormatError(
                f"{where}: {path} is {value!r}, which is not a JSON value (it never equals itself)"
            )
        if isinstance(value, list | tuple):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, Mapping):
            stack.extend((item, f"{path}.{key}", depth + 1) for key, item in value.items())
        elif not (value is None or isinstance(value, str | int | float)):
            raise HistoryFormatError(f"{where}: {path} is a {type(value).__name__}, not a JSON value")


def _field(event: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in event:
        raise HistoryFormatError(f"{where}: missing field {name!r}")
    return event[name]


def _check_function(f: Any, model: Model | None, where: str) -> None:
    known = model.functions if model is not None else tuple(sorted(ALL_FUNCTIONS))
    if not isinstance(f, str) or f not in known:
        scope = f" for model {model.name!r}" if model is not None else ""
        raise HistoryFormatError(f"{where}: unknown f {f!r}{scope} (expected one of {', '.join(known)})")


def _check_key(event: Mapping[str, Any], kind: str, model: Model, where: str) -> None:
    if model.keyed and kind == "invoke" and "key" not in event:
        raise HistoryFormatError(f"{where}: missing field 'key' (required by model {model.name!r})")
    if not model.keyed and "key" in event:
        # Checking a multi-key history as one register would report false violations.
        raise HistoryFormatError(
            f"{where}: event has a 'key' field but model {model.name!r} is a single object; "
            "use model 'kv' for per-key histories"
        )


def _check_invoke_value(event: Mapping[str, Any], f: str, where: str) -> None:
    if f == "read":
        return
    value = _field(event, "value", where)
    if f == "cas" and not (isinstance(value, list) and len(value) == 2):
        raise HistoryFormatError(f"{where}: cas value must be [expected, new], got {value!r}")


def _check_read_result(event: Mapping[str, Any], model: Model | None, where: str) -> None:
    value = _field(event, "value", where)
    if model is not None and model.read_returns_list and not isinstance(value, list):
        raise HistoryFormatError(f"{where}: a {model.name!r} read must return the whole list, got {value!r}")
