"""Add-wins observed-remove set with dots and a causal context (pure).

This is the AWORSet of Almeida, Shoker and Baquero ("Delta state replicated data types", 2016):
a *dot store* maps each element to the dots (replica, counter) of the adds that are still live,
and a *causal context* holds every dot this state has seen. A dot that is in the context but in no
store entry was removed. That is what lets a delta carry a removal: the delta of `remove(e)` is just
the context {dots of e} with an empty store, and joining it drops those dots anywhere they appear.

Concurrent add and remove of the same element: the add wins, because its fresh dot was not observed
by the remove.

Elements are `str` (they must cross nodes through the msgpack codec).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from actors.crdt.counters import require_replica_id


class InvalidOrSetError(ValueError):
    """An OR-Set or causal context was built from inconsistent parts (e.g. a decoded payload)."""


class Dot(NamedTuple):
    """One event: the `counter`-th add issued by `replica` (counters start at 1)."""

    replica: str
    counter: int


_NO_DOTS: frozenset[Dot] = frozenset()


def _require_dot(dot: object) -> Dot:
    if not (isinstance(dot, tuple) and len(dot) == 2):
        raise InvalidOrSetError(f"a dot is a (replica, counter) pair, got {dot!r}")
    replica, counter = dot
    require_replica_id(replica)
    if not isinstance(counter, int) or isinstance(counter, bool) or counter < 1:
        raise InvalidOrSetError(f"a dot counter is an int >= 1, got {counter!r} in {dot!r}")
    return Dot(replica, counter)


def _compacted(compact: Mapping[str, int], cloud: Iterable[Dot]) -> tuple[dict[str, int], frozenset[Dot]]:
    """Fold cloud dots that extend a contiguous prefix into `compact`.

    The result is canonical: a dot set has exactly one compacted form, so equal sets compare equal.
    """
    folded = {r: k for r, k in compact.items() if k > 0}
    rest = []
    # Sorting by (replica, counter) visits each replica's dots in order, so one pass folds a run.
    for dot in sorted(cloud):
        top = folded.get(dot.replica, 0)
        if dot.counter == top + 1:
            folded[dot.replica] = dot.counter
        elif dot.counter > top + 1:
            rest.append(dot)
    return folded, frozenset(rest)


@dataclass(frozen=True, slots=True)
class CausalContext:
    """A set of dots: (r, 1..compact[r]) for every r, plus the `cloud` of dots beyond a gap.

    Kept in canonical (fully compacted) form; `compact` must not be mutated.
    """

    compact: Mapping[str, int] = field(default_factory=dict)
    cloud: frozenset[Dot] = _NO_DOTS

    def __post_init__(self) -> None:
        for replica, top in self.compact.items():
            require_replica_id(replica)
            if not isinstance(top, int) or isinstance(top, bool) or top < 0:
                raise InvalidOrSetError(f"compact[{replica!r}] must be an int >= 0, got {top!r}")
        compact, cloud = _compacted(self.compact, (_require_dot(d) for d in self.cloud))
        object.__setattr__(self, "compact", compact)
        object.__setattr__(self, "cloud", cloud)

    @classmethod
    def _trusted(cls, compact: Mapping[str, int], cloud: Iterable[Dot]) -> CausalContext:
        context = object.__new__(cls)
        folded, rest = _compacted(compact, cloud)
        object.__setattr__(context, "compact", folded)
        object.__setattr__(context, "cloud", rest)
        return context

    @classmethod
    def from_dots(cls, dots: Iterable[Dot]) -> CausalContext:
        return cls._trusted({}, dots)

    def __hash__(self) -> int:
        return hash((frozenset(self.compact.items()), self.cloud))

    def __contains__(self, dot: Dot) -> bool:
        return dot.counter <= self.compact.get(dot.replica, 0) or dot in self.cloud

    def dots(self) -> Iterator[Dot]:
        """Every dot in the set (expanded; for tests and inspection)."""
        for replica, top in self.compact.items():
            for counter in range(1, top + 1):
                yield Dot(replica, counter)
        yield from self.cloud

    def next_dot(self, replica: str) -> Dot:
        """The next fresh dot for `replica`: one past the highest it has issued in this context."""
        top = self.compact.get(replica, 0)
        top = max([top, *(d.counter for d in self.cloud if d.replica == replica)])
        return Dot(replica, top + 1)

    def merge(self, other: CausalContext) -> CausalContext:
        compact = dict(self.compact)
        for replica, top in other.compact.items():
            if top > compact.get(replica, 0):
                compact[replica] = top
        return CausalContext._trusted(compact, self.cloud | other.cloud)

    def leq(self, other: CausalContext) -> bool:
        """Subset order. Relies on both being canonical: a prefix 1..k of self must be one of other."""
        return all(top <= other.compact.get(r, 0) for r, top in self.compact.items()) and all(
            dot in other for dot in self.cloud
        )


@dataclass(frozen=True, slots=True)
class ORSet:
    """Add-wins OR-Set of `str` elements. Immutable; `entries` must not be mutated."""

    entries: Mapping[str, frozenset[Dot]] = field(default_factory=dict)
    context: CausalContext = field(default_factory=CausalContext)

    def __post_init__(self) -> None:
        # Validates the dot-kernel invariants a decoded payload might break: every live dot is in
        # the context, and a dot tags one element only (it stands for a single add).
        if not isinstance(self.context, CausalContext):
            raise InvalidOrSetError(f"context must be a CausalContext, got {self.context!r}")
        entries: dict[str, frozenset[Dot]] = {}
        owner: dict[Dot, str] = {}
        for element, dots in self.entries.items():
            if not isinstance(element, str):
                raise InvalidOrSetError(f"OR-Set elements are str, got {element!r}")
            checked = frozenset(_require_dot(d) for d in dots)
            for dot in checked:
                if dot not in self.context:
                    raise InvalidOrSetError(
                        f"dot {dot} of element {element!r} is missing from the causal context"
                    )
                if dot in owner:
                    raise InvalidOrSetError(
                        f"dot {dot} tags both {owner[dot]!r} and {element!r}; a dot is one add"
                    )
                owner[dot] = element
            if checked:
                entries[element] = checked
        object.__setattr__(self, "entries", entries)

    @classmethod
    def _trusted(cls, entries: dict[str, frozenset[Dot]], context: CausalContext) -> ORSet:
        orset = object.__new__(cls)
        object.__setattr__(orset, "entries", entries)
        object.__setattr__(orset, "context", context)
        return orset

    def __hash__(self) -> int:
        return hash((frozenset(self.entries.items()), self.context))

    def __contains__(self, element: str) -> bool:
        return element in self.entries

    def elements(self) -> frozenset[str]:
        return frozenset(self.entries)

    def is_bottom(self) -> bool:
        return not self.entries and not self.context.compact and not self.context.cloud

    def add(self, replica: str, element: str) -> tuple[ORSet, ORSet]:
        """Add `element` with a fresh dot of `replica`. Returns (new state, delta).

        The delta's context also covers the element's older dots, so the add replaces them
        everywhere it is joined instead of accumulating one dot per add.
        """
        require_replica_id(replica)
        if not isinstance(element, str):
            raise InvalidOrSetError(f"OR-Set elements are str, got {element!r}")
        dot = self.context.next_dot(replica)
        superseded = self.entries.get(element, _NO_DOTS)
        fresh = frozenset((dot,))
        delta = ORSet._trusted({element: fresh}, CausalContext.from_dots(superseded | fresh))
        entries = {**self.entries, element: fresh}
        return ORSet._trusted(entries, self.context.merge(delta.context)), delta

    def remove(self, element: str) -> tuple[ORSet, ORSet]:
        """Remove the adds of `element` observed here. Returns (new state, delta).

        Removing an absent element is a no-op with a bottom delta.
        """
        observed = self.entries.get(element, _NO_DOTS)
        if not observed:
            return self, ORSet()
        entries = {e: dots for e, dots in self.entries.items() if e != element}
        delta = ORSet._trusted({}, CausalContext.from_dots(observed))
        # The observed dots are already in our context, so it is unchanged.
        return ORSet._trusted(entries, self.context), delta

    def merge(self, other: ORSet) -> ORSet:
        """Join: keep a dot that both stores hold, or that one holds and the other has not seen."""
        merged: dict[str, frozenset[Dot]] = {}
        for element in self.entries.keys() | other.entries.keys():
            mine = self.entries.get(element, _NO_DOTS)
            theirs = other.entries.get(element, _NO_DOTS)
            if mine == theirs:
                kept = mine
            else:
                kept = (
                    (mine & theirs)
                    | {d for d in mine - theirs if d not in other.context}
                    | {d for d in theirs - mine if d not in self.context}
                )
            if kept:
                merged[element] = frozenset(kept)
        return ORSet._trusted(merged, self.context.merge(other.context))

    def leq(self, other: ORSet) -> bool:
        """Lattice order, i.e. `self.merge(other) == other`, computed without building the join.

        Given self's context is within other's, the join can differ from `other` only by dropping
        a dot of `other` that self has seen and removed.
        """
        if not self.context.leq(other.context):
            return False
        for element, theirs in other.entries.items():
            mine = self.entries.get(element, _NO_DOTS)
            if any(d not in mine and d in self.context for d in theirs):
                return False
        return True
