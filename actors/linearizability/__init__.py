"""Linearizability checker for Jepsen-style histories (`garrison check-history`).

Wing-Gong-Lowe search with memoisation of (linearized set, model state), as in Porcupine's
checker.go, made P-compositional by checking each key of a `kv` history on its own. A violation
is shrunk to a small sub-history that is still not linearizable.

Pure: stdlib only. The only I/O is reading the history file (`load_history`, `run_check_history`)
and writing the verdict to the stream `run_check_history` is given.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from actors.linearizability.history import HistoryFormatError, parse_operations, read_events
from actors.linearizability.models import MODELS, Model, Operation, Outcome
from actors.linearizability.search import (
    Witness,
    is_linearizable,
    minimise,
    search,
)

__all__ = [
    "HistoryFormatError",
    "LinearizabilityResult",
    "SearchBudgetExceeded",
    "UnknownModelError",
    "check_history",
    "is_linearizable",
    "load_history",
    "run_check_history",
]

_MAX_DESCRIBED_OPERATIONS = 8
# The command's default search budget: a few seconds and ~100 MB on a small machine; histories
# Jepsen-style tests produce need orders of magnitude fewer steps.
DEFAULT_MAX_STEPS = 5_000_000

EXIT_LINEARIZABLE = 0
EXIT_NOT_LINEARIZABLE = 1
EXIT_BAD_INPUT = 2
EXIT_UNKNOWN = 3  # the search budget ran out before a verdict


class UnknownModelError(ValueError):
    """The model name is not one of `MODELS`."""


class SearchBudgetExceeded(RuntimeError):
    """The search gave up after `max_steps` steps without a verdict."""


@dataclass(frozen=True, slots=True)
class LinearizabilityResult:
    ok: bool
    explanation: str  # one line for humans
    witness: list[dict[str, Any]] | None  # a shrunk non-linearizable sub-history; None when ok


def check_history(
    events: Sequence[Mapping[str, Any]], model: str, *, max_steps: int | None = None
) -> LinearizabilityResult:
    """Check in-memory events; errors are located as `<history>:N` (N = 1-based event number).

    The search is exponential in the worst case (many concurrent or unknown-outcome operations
    on one key); `max_steps` bounds the search steps of the whole check (every key, and shrinking
    the witness) and raises `SearchBudgetExceeded` when no verdict was reached within it.
    """
    locations = [f"<history>:{number}" for number in range(1, len(events) + 1)]
    return _check(events, locations, _model(model), max_steps)


def load_history(path: str) -> list[dict[str, Any]]:
    """Read and validate a JSON-lines history (model-independent rules only)."""
    events, locations = read_events(path)
    parse_operations(events, locations, None)
    return events


def run_check_history(path: str, model: str, out: TextIO, max_steps: int | None = DEFAULT_MAX_STEPS) -> int:
    """The `check-history` command: 0 linearizable, 1 not linearizable, 2 bad input (one line naming
    the file and line), 3 unknown (no verdict within `max_steps` search steps)."""
    try:
        spec = _model(model)
        events, locations = read_events(path)
        result = _check(events, locations, spec, max_steps)
    except (HistoryFormatError, UnknownModelError) as error:
        print(f"error: {error}", file=out)
        return EXIT_BAD_INPUT
    except OSError as error:
        print(f"error: cannot read {path}: {error.strerror or error}", file=out)
        return EXIT_BAD_INPUT
    except SearchBudgetExceeded as error:
        print("unknown", file=out)
        print(f"unknown: {error}", file=out)
        return EXIT_UNKNOWN
    except (RecursionError, MemoryError) as error:  # the limits above should make these unreachable
        print(f"error: {path}: too large or too deeply nested to check ({type(error).__name__})", file=out)
        return EXIT_BAD_INPUT
    print("linearizable" if result.ok else "not linearizable", file=out)
    print(result.explanation, file=out)
    if result.witness is not None:
        print(f"witness ({len(result.witness)} events):", file=out)
        for event in result.witness:
            print(json.dumps(event, sort_keys=True), file=out)
    return EXIT_LINEARIZABLE if result.ok else EXIT_NOT_LINEARIZABLE


def _model(name: str) -> Model:
    if name not in MODELS:
        raise UnknownModelError(f"unknown model {name!r} (expected one of {', '.join(sorted(MODELS))})")
    return MODELS[name]


def _check(
    events: Sequence[Mapping[str, Any]],
    locations: Sequence[str],
    model: Model,
    max_steps: int | None = None,
) -> LinearizabilityResult:
    operations = parse_operations(events, locations, model)
    partitions: dict[Hashable, list[Operation]] = {}
    for op in operations:
        partitions.setdefault(op.key if model.keyed else None, []).append(op)
    outcomes = {}
    used = 0  # steps of the whole check, against `max_steps`
    for key, ops in partitions.items():
        outcomes[key] = search(ops, model, None if max_steps is None else max_steps - used)
        used += outcomes[key].steps
        if outcomes[key].linearizable is None:
            where = f" (stopped at key {events[ops[0].call]['key']!r})" if model.keyed else ""
            raise SearchBudgetExceeded(
                f"no verdict within {max_steps} search steps{where}, {len(operations)} operations; "
                "raise --max-steps, or split the history into more keys or shorter runs"
            )
    failing = [key for key, outcome in outcomes.items() if not outcome.linearizable]
    if failing:
        key = failing[0]
        budget = None if max_steps is None else max(max_steps - used, 0)
        witness = minimise(partitions[key], model, effort=outcomes[key].steps, budget=budget)
        return _violation(events, model, witness, failing_keys=len(failing))
    unknown = sum(op.outcome is Outcome.UNKNOWN for op in operations)
    scope = f" on {len(partitions)} keys checked independently" if model.keyed else ""
    return LinearizabilityResult(
        ok=True,
        explanation=(
            f"linearizable: {len(operations)} operations ({unknown} with unknown outcome)"
            f"{scope} against model {model.name!r}"
        ),
        witness=None,
    )


def _violation(
    events: Sequence[Mapping[str, Any]], model: Model, witness: Witness, failing_keys: int
) -> LinearizabilityResult:
    ops = witness.operations
    where = ""
    if model.keyed:
        where = f"key {events[ops[0].call]['key']!r} "
        if failing_keys > 1:
            where += f"(1 of {failing_keys} failing keys) "
    if witness.observes_unwritten:
        explanation = (
            f"not linearizable: {where}{_describe(ops[0], events)} observed a value that no "
            "operation wrote or may have written (failed operations did not happen)"
        )
    else:
        count = f"{len(ops)} operation{'s' if len(ops) != 1 else ''}"
        if not witness.minimal:
            count += " (shrinking stopped at its step budget)"
        described = "; ".join(_describe(op, events) for op in ops[:_MAX_DESCRIBED_OPERATIONS])
        if len(ops) > _MAX_DESCRIBED_OPERATIONS:
            described += "; ..."
        explanation = (
            f"not linearizable: {where}no legal order for model {model.name!r} exists for "
            f"{count}: {described}"
        )
    indices = sorted(index for op in ops for index in op.event_indices)
    return LinearizabilityResult(
        ok=False, explanation=explanation, witness=[dict(events[index]) for index in indices]
    )


def _describe(op: Operation, events: Sequence[Mapping[str, Any]]) -> str:
    invoke = events[op.call]
    text = f"process {op.process!r} {op.f}"
    if op.f == "read":
        assert op.ret is not None  # only ok reads are kept, and they returned
        text += f" -> {json.dumps(events[op.ret]['value'])}"
    else:
        text += f" {json.dumps(invoke['value'])}"
    if op.outcome is Outcome.COMPARE_FAILED:
        text += " (compare failed)"
    elif op.outcome is Outcome.UNKNOWN:
        text += " (outcome unknown)"
    return text
