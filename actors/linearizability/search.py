"""Wing-Gong-Lowe linearizability search and witness shrinking over one partition of a history.

Pure: stdlib only, no I/O. The search follows Porcupine's checker.go (memoised configurations
of linearized set and model state over a doubly linked list of call/return entries), with
unknown-outcome operations handled as described in `search`.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from actors.linearizability.models import Model, Operation

_UNLIMITED = 1 << 62
# Shrinking a witness re-runs the search many times, and sub-histories can cost far more than
# the full history (removing reads removes the constraints that prune a log search). A candidate
# that cannot be decided within its budget is kept, so the witness stays a proof, only larger.
_CANDIDATE_EFFORT = 2  # x the full check's steps, per candidate
_SHRINK_EFFORT = 20  # x the full check's steps, for the whole shrink
_MIN_STEPS = 100_000


@dataclass(frozen=True, slots=True)
class SearchOutcome:
    linearizable: bool | None  # None: the step budget ran out first
    steps: int


def is_linearizable(operations: Sequence[Operation], model: Model) -> bool:
    return bool(search(operations, model).linearizable)


def search(operations: Sequence[Operation], model: Model, budget: int | None = None) -> SearchOutcome:
    """Wing-Gong-Lowe search with memoisation; gives up after `budget` steps, if given.

    Operations with a known return form a doubly linked list of call and return entries in
    time order. The search walks it from the head: at a call it tries to linearize that
    operation next (lifting the call and its return out of the list); at the first return of an
    operation it has not linearized, every operation invoked so far would have to come first, so
    it backtracks. A configuration (linearized set, state) already explored is never explored
    again.

    Operations of unknown outcome never return, so they are kept out of the list and tried only
    at that first return, once the known candidates are exhausted: placing them as late as
    possible finds the linearizations of legal histories without first exploring every early
    placement. Not linearizing one at all is the same as placing it last, where an unknown
    operation is always legal, so "took effect or not" needs no extra branch. Those that nothing
    could have observed are dropped first (`drop_unobservable_unknowns`).
    """
    if any(op.ret is None for op in operations):
        operations = drop_unobservable_unknowns(operations, model)
    known = [op for op in operations if op.ret is not None]
    unknown = sorted((op for op in operations if op.ret is None), key=lambda op: op.call)
    unknown_bit = [1 << (len(known) + j) for j in range(len(unknown))]
    # Unknown operations that do the same thing are interchangeable once invoked, so only the
    # earliest unused one of each kind is tried: bit of the previous twin, or 0 if none.
    twin_before = _previous_twin_bits(unknown, unknown_bit)
    nxt, prv, times = _linked_entries(known)
    step = model.step
    # Append-only models: (bit, result) of every ok read, for the prefix pruning below.
    reads = (
        [(1 << k, op.result) for k, op in enumerate(known) if op.f == "read"]
        if model.reads_extend_state
        else []
    )
    state: Hashable = model.initial
    linearized = 0  # bitset: known operation k is bit k, unknown j is bit len(known) + j
    seen: set[tuple[int, Hashable]] = set()
    # Per linearized operation: its call node (or, for an unknown one, the return node it was
    # tried at), the state before it, and -1 (or the unknown operation's index).
    stack: list[tuple[int, Hashable, int]] = []
    node, next_unknown, steps = nxt[0], 0, 0
    limit = _UNLIMITED if budget is None else budget
    while nxt[0] != -1:
        steps += 1
        if steps > limit:
            return SearchOutcome(None, steps)
        if node & 1:
            op, bit, j = known[node >> 1], 1 << (node >> 1), -1
        elif next_unknown < len(unknown) and unknown[next_unknown].call < times[node]:
            j = next_unknown
            op, bit = unknown[j], unknown_bit[j]
            next_unknown += 1
            if linearized & bit or (twin_before[j] and not linearized & twin_before[j]):
                continue
        else:
            if not stack:
                return SearchOutcome(False, steps)
            node, state, j = stack.pop()
            if j >= 0:
                linearized ^= unknown_bit[j]
                next_unknown = j + 1  # resume the unknown candidates at this return
            else:
                linearized ^= 1 << (node >> 1)
                _unlift(node, nxt, prv)
                node, next_unknown = nxt[node], 0
            continue
        legal, new_state = step(state, op)
        if legal and reads and op.f != "read":
            legal = _reads_can_follow(new_state, linearized | bit, reads)
        configuration = (linearized | bit, new_state)
        if legal and configuration not in seen:
            seen.add(configuration)
            stack.append((node, state, j))
            linearized, state = configuration
            if j < 0:
                _lift(node, nxt, prv)
            node, next_unknown = nxt[0], 0
        elif j < 0:
            node = nxt[node]
    return SearchOutcome(True, steps)


def _reads_can_follow(state: Hashable, linearized: int, reads: Sequence[tuple[int, Hashable]]) -> bool:
    """Whether every ok read not yet linearized can still be: in an append-only log it will see an
    extension of ``state``. Without this a log search tries every order of the appends between two reads
    and only finds out at the next read (exponential in the appends between reads). Only the last entry
    is checked: the earlier ones were checked when they were appended, against a superset of these reads.
    Sound: a pruned state has no linearization, since each of those reads must still come after it."""
    entries = state  # a tuple: the log so far
    position = len(entries) - 1  # type: ignore[arg-type]
    last = entries[position]  # type: ignore[index]
    for bit, result in reads:
        if not linearized & bit and (len(result) <= position or result[position] != last):  # type: ignore[arg-type, index]
            return False
    return True


def _previous_twin_bits(unknown: Sequence[Operation], bits: Sequence[int]) -> list[int]:
    last_of_kind: dict[tuple[str, Hashable], int] = {}
    previous = []
    for op, bit in zip(unknown, bits, strict=True):
        kind = (op.f, op.argument)
        previous.append(last_of_kind.get(kind, 0))
        last_of_kind[kind] = bit
    return previous


def _linked_entries(known: Sequence[Operation]) -> tuple[list[int], list[int], list[int]]:
    """Next/previous links and times of the entry list. Node 0 is the head; operation k owns
    call node 2k+1 (odd) and return node 2k+2 (even)."""
    entries = []
    for k, op in enumerate(known):
        assert op.ret is not None  # known: operations that returned
        entries.append((op.call, 2 * k + 1))
        entries.append((op.ret, 2 * k + 2))
    entries.sort()
    nxt = [-1] * (2 * len(known) + 1)
    prv = [-1] * len(nxt)
    times = [-1] * len(nxt)
    last = 0
    for time, node in entries:
        nxt[last], prv[node], times[node], last = node, last, time, node
    return nxt, prv, times


def _lift(call: int, nxt: list[int], prv: list[int]) -> None:
    """Unlink a call node and its return node (a call is never last: its return follows)."""
    ret = call + 1
    nxt[prv[call]], prv[nxt[call]] = nxt[call], prv[call]
    nxt[prv[ret]] = nxt[ret]
    if nxt[ret] != -1:
        prv[nxt[ret]] = prv[ret]


def _unlift(call: int, nxt: list[int], prv: list[int]) -> None:
    """Relink what `_lift` unlinked, in reverse order."""
    ret = call + 1
    nxt[prv[ret]] = ret
    if nxt[ret] != -1:
        prv[nxt[ret]] = ret
    nxt[prv[call]] = call
    prv[nxt[call]] = call


def drop_unobservable_unknowns(operations: Sequence[Operation], model: Model) -> list[Operation]:
    """Remove unknown-outcome operations the footprint shows nothing could have observed.

    This keeps the verdict: removing them keeps a legal history legal (footprint contract),
    and an unknown operation can be added back as "never took effect". It matters because the
    search retries every available unknown operation at every dead end.
    """
    footprint = model.footprint(operations)
    dropped: set[Operation] = set()
    progress = True
    while progress:
        progress = False
        for op in operations:
            if op.ret is None and op not in dropped and footprint.removable((op,)):
                footprint.discard(op)
                dropped.add(op)
                progress = True
    return [op for op in operations if op not in dropped]


@dataclass(frozen=True, slots=True)
class Witness:
    operations: list[Operation]
    minimal: bool  # False: the shrink budget ran out, or some candidate could not be decided
    # The single operation observed a value no operation in the history wrote (or may have).
    observes_unwritten: bool = False


def minimise(
    operations: Sequence[Operation], model: Model, effort: int, budget: int | None = None
) -> Witness:
    """Shrink a non-linearizable partition to a small sub-history that is still not linearizable.

    `effort` is the number of steps the search needed to reject `operations`; it scales the
    step budgets. Only removals the model's footprint proves harmless are tried (a removal must
    keep every linearizable history linearizable), so an illegal witness proves the full history
    illegal. A proof is not yet an explanation: those rules reason about linearizations that an
    illegal history does not have, and would let a write go once nothing could legally have
    read it. So a removal must also not leave an operation observing a value nobody in the
    witness wrote. An operation that does so in the full history is illegal whatever else
    happened, and is the witness on its own. `budget`, if given, caps the steps of the whole shrink.
    """
    unexplained = model.unexplained(operations)
    if unexplained:
        first = min(unexplained, key=lambda op: op.call)
        return Witness([first], minimal=True, observes_unwritten=True)
    shrinker = _Shrinker(operations, model, effort, budget)
    shrinker.run()
    return Witness(shrinker.current, minimal=shrinker.decided_all)


class _Shrinker:
    def __init__(
        self, operations: Sequence[Operation], model: Model, effort: int, budget: int | None = None
    ) -> None:
        self.current = list(operations)
        self.decided_all = True
        self._model = model
        self._footprint = model.footprint(self.current)
        self._candidate_budget = _CANDIDATE_EFFORT * effort + _MIN_STEPS
        self._remaining = _SHRINK_EFFORT * effort + _MIN_STEPS
        if budget is not None:
            self._remaining = min(self._remaining, budget)

    def run(self) -> None:
        """Greedy removal of chunks, halving their size, then of single operations (with the
        groups `_removable_part` finds) until a pass removes nothing. Operations that observe
        each other across chunk boundaries can only go together, so prefixes and suffixes are
        then tried as groups; any success restarts the single-operation passes."""
        chunk = max(1, len(self.current) // 2)
        while self._remaining > 0:
            removed_any = False
            start = 0
            while start < len(self.current) and self._remaining > 0:
                if not self._try_remove(self._removable_part(start, chunk)):
                    start += chunk  # on success the chunk at `start` holds other operations
                else:
                    removed_any = True
            if chunk > 1:
                chunk //= 2
            elif not removed_any and not self._remove_a_prefix_or_suffix():
                return
        self.decided_all = False

    def _removable_part(self, start: int, size: int) -> list[Operation]:
        """The operations of a chunk the footprint lets go, one at a time until none can
        (dropping a read can make a write removable), then the rest together if allowed."""
        chunk = self.current[start : start + size]
        footprint, part = self._footprint, []
        progress = True
        while progress:
            progress = False
            for op in chunk:
                if op not in part and footprint.removable((op,)):
                    footprint.discard(op)
                    part.append(op)
                    progress = True
        for op in part:
            footprint.add(op)
        rest = [op for op in chunk if op not in part]
        return part + rest if len(rest) > 1 and self._group_removable(part, rest) else part

    def _group_removable(self, gone: list[Operation], group: list[Operation]) -> bool:
        for op in gone:
            self._footprint.discard(op)
        try:
            return self._footprint.removable(group)
        finally:
            for op in gone:
                self._footprint.add(op)

    def _remove_a_prefix_or_suffix(self) -> bool:
        ops = self.current
        prefixes = (ops[:i] for i in range(len(ops) - 1, 0, -1))
        suffixes = (ops[i:] for i in range(1, len(ops)))
        return any(
            self._footprint.removable(group) and self._try_remove(group)
            for group in itertools.chain(prefixes, suffixes)
        )

    def _try_remove(self, group: list[Operation]) -> bool:
        """Remove `group` if what is left is still shown not linearizable within budget."""
        if not group or self._remaining <= 0:
            return False
        gone = set(group)
        candidate = [op for op in self.current if op not in gone]
        if not candidate or self._model.unexplained(candidate):
            return False
        outcome = search(candidate, self._model, min(self._candidate_budget, self._remaining))
        self._remaining -= outcome.steps
        if outcome.linearizable is None:
            self.decided_all = False
        if outcome.linearizable is not False:
            return False
        self.current = candidate
        for op in group:
            self._footprint.discard(op)
        return True
