"""Delta-state G-Counter and PN-Counter (pure).

Both are immutable join-semilattices (Shapiro et al. 2011; Almeida, Shoker, Baquero 2016):
`merge` is the least upper bound, `leq` the lattice order, and every mutator returns
`(new_state, delta)` where the delta is itself a (small) state with `state.merge(delta) == new_state`.
Deltas can therefore be shipped over channels that drop, duplicate and reorder messages.

Amounts are integers (for exposure: micro-units of ppm*s) so that equal states read the same total
on every replica: a float sum depends on the order of its terms, which differs between replicas.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field


class InvalidAmountError(ValueError):
    """An amount that is negative or not an integer was given to a counter mutator."""


class InvalidReplicaError(ValueError):
    """A replica id that is not a non-empty `str` was given."""


def require_replica_id(replica: object) -> str:
    """Return `replica` if it is a usable replica id, else raise `InvalidReplicaError`."""
    if not isinstance(replica, str) or not replica:
        raise InvalidReplicaError(
            f"replica id must be a non-empty str, got {replica!r}; use the node's configured name"
        )
    return replica


def require_amount(n: object, *, subtract_with: str = "decrement") -> int:
    """Return `n` as an `int` if it is a non-negative integer, else raise `InvalidAmountError`.

    `subtract_with` names the mutator that the error message points a caller to instead.
    """
    try:
        # operator.index accepts ints and numpy integers but refuses floats, which would make
        # merged sums order-dependent.
        amount = operator.index(n)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidAmountError(
            f"amount must be an integer (use micro-units), got {type(n).__name__} {n!r}"
        ) from None
    if amount < 0:
        raise InvalidAmountError(
            f"amount must be >= 0, got {amount}; subtract with {subtract_with}() instead"
        )
    return amount


@dataclass(frozen=True, slots=True)
class GCounter:
    """Grow-only counter: one non-decreasing count per replica; value is their sum.

    `counts` must not be mutated. Zero counts are not stored, so equal states compare equal.
    """

    counts: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        canonical: dict[str, int] = {}
        for replica, count in self.counts.items():
            require_replica_id(replica)
            amount = require_amount(count)
            if amount:
                canonical[replica] = amount
        # A private copy: the caller's dict stays theirs to mutate.
        object.__setattr__(self, "counts", canonical)

    @classmethod
    def _trusted(cls, counts: dict[str, int]) -> GCounter:
        # Internal constructor for already-canonical dicts: merges happen on every gossip message.
        counter = object.__new__(cls)
        object.__setattr__(counter, "counts", counts)
        return counter

    def __hash__(self) -> int:
        return hash(frozenset(self.counts.items()))

    def value(self) -> int:
        return sum(self.counts.values())

    def is_bottom(self) -> bool:
        """True for the empty counter (the lattice's least element)."""
        return not self.counts

    def increment(self, replica: str, n: int = 1) -> tuple[GCounter, GCounter]:
        """Add `n >= 0` on behalf of `replica`. Returns (new state, delta)."""
        require_replica_id(replica)
        amount = require_amount(n)
        if amount == 0:
            return self, GCounter._trusted({})
        new_count = self.counts.get(replica, 0) + amount
        delta = GCounter._trusted({replica: new_count})
        return GCounter._trusted({**self.counts, replica: new_count}), delta

    def merge(self, other: GCounter) -> GCounter:
        merged = dict(self.counts)
        for replica, count in other.counts.items():
            if count > merged.get(replica, 0):
                merged[replica] = count
        return GCounter._trusted(merged)

    def leq(self, other: GCounter) -> bool:
        return all(count <= other.counts.get(r, 0) for r, count in self.counts.items())

    def difference(self, base: GCounter) -> GCounter:
        """The smallest delta `d` with `base.merge(d) == base.merge(self)`: the entries above `base`.

        Bottom exactly when `self.leq(base)`. Used to buffer only what a received delta adds.
        """
        return GCounter._trusted({r: c for r, c in self.counts.items() if c > base.counts.get(r, 0)})


@dataclass(frozen=True, slots=True)
class PNCounter:
    """Positive-negative counter: two G-Counters; value is `p.value() - n.value()`."""

    p: GCounter = field(default_factory=GCounter)
    n: GCounter = field(default_factory=GCounter)

    def __post_init__(self) -> None:
        if not (isinstance(self.p, GCounter) and isinstance(self.n, GCounter)):
            raise TypeError(f"PNCounter is built from two GCounters, got {self.p!r}, {self.n!r}")

    def value(self) -> int:
        return self.p.value() - self.n.value()

    def is_bottom(self) -> bool:
        return self.p.is_bottom() and self.n.is_bottom()

    def increment(self, replica: str, n: int = 1) -> tuple[PNCounter, PNCounter]:
        """Add `n >= 0` on behalf of `replica`. Returns (new state, delta)."""
        p, delta = self.p.increment(replica, n)
        return PNCounter(p, self.n), PNCounter(delta, GCounter._trusted({}))

    def decrement(self, replica: str, n: int = 1) -> tuple[PNCounter, PNCounter]:
        """Subtract `n >= 0` on behalf of `replica`. Returns (new state, delta)."""
        neg, delta = self.n.increment(replica, n)
        return PNCounter(self.p, neg), PNCounter(GCounter._trusted({}), delta)

    def merge(self, other: PNCounter) -> PNCounter:
        return PNCounter(self.p.merge(other.p), self.n.merge(other.n))

    def leq(self, other: PNCounter) -> bool:
        return self.p.leq(other.p) and self.n.leq(other.n)

    def difference(self, base: PNCounter) -> PNCounter:
        """The smallest delta `d` with `base.merge(d) == base.merge(self)` (see `GCounter`)."""
        return PNCounter(self.p.difference(base.p), self.n.difference(base.n))
