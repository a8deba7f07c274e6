"""Operations and the sequential specifications the linearizability checker tests them against.

Pure: stdlib only, no I/O. Every value an operation carries is "frozen" (hashable) so that a model
state can be memoised together with the set of operations already linearized.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Collection, Hashable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, cast


class Outcome(Enum):
    OK = "ok"
    # Only `cas` keeps a failed operation: its compare did not match, so it still read the register.
    COMPARE_FAILED = "compare-failed"
    # `info`, or no completion at all: it took effect at some point after its invoke, or never.
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Operation:
    """One invoke paired with its completion, as the checker sees it."""

    process: Hashable
    f: str
    key: Hashable
    outcome: Outcome
    argument: Hashable  # frozen invoke value: write/append value, (expected, new) for cas
    result: Hashable  # frozen value an ok read returned; None for every other operation
    call: int  # index of the invoke event, which is also its time
    ret: int | None  # index of the completion event; None means it may return at +infinity
    event_indices: tuple[int, ...]  # invoke and completion (ok/fail/info) events, for witnesses


@dataclass(frozen=True, slots=True)
class JsonBool:
    """A frozen JSON boolean: Python's `True == 1` must not make `true` and `1` the same value."""

    value: bool


@dataclass(frozen=True, slots=True)
class JsonObject:
    """A frozen JSON object, distinct from a list of pairs."""

    items: tuple[tuple[str, Hashable], ...]


def freeze(value: Any) -> Hashable:
    """A hashable value that is equal to another exactly when the two JSON values are equal."""
    if isinstance(value, bool):
        return JsonBool(value)
    if isinstance(value, list | tuple):
        return tuple(freeze(item) for item in value)
    if isinstance(value, dict):
        return JsonObject(tuple(sorted((str(k), freeze(v)) for k, v in value.items())))
    return value


StepFunction = Callable[[Hashable, Operation], tuple[bool, Hashable]]


class Footprint(Protocol):
    """Which operations can be dropped from a witness without losing the proof.

    `removable(group)` may only hold when removing the group from any linearizable history
    leaves it linearizable: then a shrunk witness that is not linearizable proves that the full
    history is not linearizable either. `discard`/`add` take operations out and put them back.
    """

    def removable(self, group: Collection[Operation]) -> bool: ...
    def discard(self, op: Operation) -> None: ...
    def add(self, op: Operation) -> None: ...


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    functions: tuple[str, ...]
    keyed: bool  # P-compositional by the `key` field: each key is checked on its own
    read_returns_list: bool
    initial: Hashable
    step: StepFunction  # (state, operation) -> (legal here?, next state)
    footprint: Callable[[Iterable[Operation]], Footprint]
    # Operations that observed a value no other operation in the collection wrote.
    unexplained: Callable[[Collection[Operation]], set[Operation]]
    # The state only grows (an append-only log): every ok read not yet linearized will see an extension
    # of the current state, so the search may prune a state that is not a prefix of all of them.
    reads_extend_state: bool = False


def _register_step(state: Hashable, op: Operation) -> tuple[bool, Hashable]:
    if op.f == "read":
        return state == op.result, state
    if op.f == "write":
        return True, op.argument
    expected, new = cast("tuple[Hashable, Hashable]", op.argument)  # a cas argument is (expected, new)
    if op.outcome is Outcome.OK:
        return (True, new) if state == expected else (False, state)
    if op.outcome is Outcome.COMPARE_FAILED:
        return state != expected, state
    # Unknown cas: whatever the state, one of "swapped" or "compare failed" is a legal outcome.
    # "Never happened" needs no branch: with its return at +infinity the search can always place
    # the operation last, where it is unobservable.
    return True, (new if state == expected else state)


class _RegisterFootprint:
    """Removal rules for read/write/cas registers, argued in `removable`.

    Removing a state-changing operation x only changes the state inside the interval I that
    runs, in a linearization, from x to the next state change. So only operations that can fall
    into I matter: those not returned before x was invoked, and not invoked after some ok write
    or ok cas that itself was invoked after x returned (that operation ends I).
    """

    def __init__(self, operations: Iterable[Operation]) -> None:
        self._ops = sorted(operations, key=lambda op: op.call)
        self._position = {op: i for i, op in enumerate(self._ops)}
        self._alive = [True] * len(self._ops)
        self._unknown = [op for op in self._ops if op.ret is None]
        calls = [op.call for op in self._ops]
        # An operation invoked while a completed one was running is at most this many
        # positions after it in invoke order.
        self._reach = max(
            (bisect.bisect_left(calls, op.ret) - i for i, op in enumerate(self._ops) if op.ret is not None),
            default=0,
        )
        self._written = Counter[Hashable]()
        for op in self._ops:
            self._count_written(op, 1)

    def add(self, op: Operation) -> None:
        self._alive[self._position[op]] = True
        self._count_written(op, 1)

    def discard(self, op: Operation) -> None:
        self._alive[self._position[op]] = False
        self._count_written(op, -1)

    def _count_written(self, op: Operation, delta: int) -> None:
        if _changes_register(op):
            self._written[_register_written(op)] += delta

    def removable(self, group: Collection[Operation]) -> bool:
        changers = [op for op in group if _changes_register(op)]
        for op in group:
            self.discard(op)
        try:
            if len(changers) == 1 and changers[0].f == "cas":
                # It swapped (if it took effect at all), so the state before it was `expected`.
                previous = {changers[0].argument[0]}  # type: ignore[index]
            else:
                # The initial value, or one that an operation outside the group wrote.
                previous = {value for value, n in self._written.items() if n > 0} | {None}
            return all(self._unobserved(op, previous) for op in changers)
        finally:
            for op in group:
                self.add(op)

    def _unobserved(self, op: Operation, previous: set[Hashable]) -> bool:
        """Removing `op` (writing v) turns v into a previous value p in the interval I up to
        the next state change; nothing left in I may notice."""
        written = _register_written(op)
        for y in self._may_follow_within_interval(op):
            if y.f == "read" and y.result == written:
                return False  # it read v, so it was inside I
            if y.f == "cas":
                expected = y.argument[0]  # type: ignore[index]
                # A compare-failed cas inside I saw v != expected, but could match p. An ok or
                # applied cas expecting v would end I having seen v. An unknown cas that did
                # not swap on v can be moved to the end of the linearization instead.
                if y.outcome is Outcome.COMPARE_FAILED:
                    if expected in previous:
                        return False
                elif expected == written:
                    return False
        return True

    def _may_follow_within_interval(self, op: Operation) -> list[Operation]:
        here = self._position[op]
        ops, alive = self._ops, self._alive
        found = [
            y
            for j in range(max(0, here - self._reach), here)
            if alive[j] and (y := ops[j]).ret is not None and y.ret > op.call
        ]
        found += [y for y in self._unknown if y.call < op.call and alive[self._position[y]]]
        end_of_interval = float("inf")
        for j in range(here + 1, len(ops)):
            y = ops[j]
            if y.call >= end_of_interval:
                break
            if not alive[j]:
                continue
            found.append(y)
            # Invoked after op returned, a definite state change comes after op in every
            # linearization: whatever is invoked after it returns lies beyond I.
            definite = y.outcome is Outcome.OK and y.f in ("write", "cas")
            if definite and op.ret is not None and y.ret is not None and y.call > op.ret:
                end_of_interval = min(end_of_interval, y.ret)
        return found


def _register_unexplained(operations: Collection[Operation]) -> set[Operation]:
    written = Counter(_register_written(op) for op in operations if _changes_register(op))
    unexplained = set()
    for op in operations:
        if op.f == "read":
            seen, own = op.result, 0
        elif op.f == "cas" and op.outcome is Outcome.OK:
            seen = op.argument[0]  # type: ignore[index]
            own = int(_register_written(op) == seen)  # `cas [0, 0]` does not explain itself
        else:
            continue
        if seen is not None and written[seen] <= own:  # None is the initial value
            unexplained.add(op)
    return unexplained


def _register_written(op: Operation) -> Hashable:
    return op.argument[1] if op.f == "cas" else op.argument  # type: ignore[index]


def _changes_register(op: Operation) -> bool:
    """Writes and ok or unknown cas; reads and compare-failed cas never change the state."""
    return op.f == "write" or (op.f == "cas" and op.outcome is not Outcome.COMPARE_FAILED)


class _LogFootprint:
    """Removal rules for an append-only log."""

    def __init__(self, operations: Iterable[Operation]) -> None:
        self._seen = Counter[Hashable]()  # per value: how many ok reads contain it
        for op in operations:
            self.add(op)

    def add(self, op: Operation) -> None:
        if op.f == "read":
            self._seen.update(set(cast("Iterable[Hashable]", op.result)))  # an ok read returns a collection

    def discard(self, op: Operation) -> None:
        if op.f == "read":
            self._seen.subtract(set(cast("Iterable[Hashable]", op.result)))

    def removable(self, group: Collection[Operation]) -> bool:
        # Reads change nothing. An append no remaining read contains was linearized after every
        # such read in any linearization, so none of them depends on it.
        for op in group:
            self.discard(op)
        try:
            return all(op.f == "read" or self._seen[op.argument] <= 0 for op in group)
        finally:
            for op in group:
                self.add(op)


def _log_unexplained(operations: Collection[Operation]) -> set[Operation]:
    appended = {op.argument for op in operations if op.f == "append"}
    return {
        op
        for op in operations
        if op.f == "read" and not appended.issuperset(op.result)  # type: ignore[arg-type]
    }


def _log_step(state: Hashable, op: Operation) -> tuple[bool, Hashable]:
    if op.f == "append":
        return True, (*state, op.argument)  # type: ignore[misc]
    return state == op.result, state


def _register_model(name: str, *, keyed: bool) -> Model:
    """A read/write/cas register; ``kv`` is one such register per key (checked key by key)."""
    return Model(
        name=name,
        functions=("read", "write", "cas"),
        keyed=keyed,
        read_returns_list=False,
        initial=None,
        step=_register_step,
        footprint=_RegisterFootprint,
        unexplained=_register_unexplained,
    )


MODELS: dict[str, Model] = {
    model.name: model
    for model in (
        _register_model("cas-register", keyed=False),
        _register_model("kv", keyed=True),
        Model(
            name="log",
            functions=("append", "read"),
            keyed=False,
            read_returns_list=True,
            initial=(),
            step=_log_step,
            footprint=_LogFootprint,
            unexplained=_log_unexplained,
            reads_extend_state=True,
        ),
    )
}
ALL_FUNCTIONS: frozenset[str] = frozenset(f for model in MODELS.values() for f in model.functions)
