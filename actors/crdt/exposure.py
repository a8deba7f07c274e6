"""Exposure per pollutant: a map pollutant -> PN-Counter, itself a delta-state CRDT (pure).

The map is the product lattice of its counters (a missing pollutant is the bottom counter), so
merge is pointwise, and the delta of an update is an `Exposure` holding the one changed counter.
Pollutants are never removed: exposure is a running total, so no OR-Map machinery is needed.

Why PN- and not G-Counters: exposure itself only grows, but readings can be judged wrong after they
were counted (a stuck or drifting sensor found later). A retraction must converge like any other
update, which a G-Counter cannot express. The N side costs nothing until a replica retracts.
The price: a replica that has received a retraction but not yet the increments it corrects can
show a transiently low (even negative) value; retracting from the same replica that counted the
increments avoids that, because gossip delivers one replica's deltas in order.

Amounts are integers in micro-units (e.g. micro-ppm*s), so sums are exact and order-independent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from actors.crdt.counters import PNCounter, require_amount, require_replica_id


class InvalidPollutantError(ValueError):
    """A pollutant name that is not a non-empty `str` was given."""


def _require_pollutant(pollutant: object) -> str:
    if not isinstance(pollutant, str) or not pollutant:
        raise InvalidPollutantError(f"pollutant must be a non-empty str such as 'NO2', got {pollutant!r}")
    return pollutant


@dataclass(frozen=True, slots=True)
class Exposure:
    """Cumulative exposure per pollutant, in integer micro-units. Immutable.

    `counters` must not be mutated; bottom (empty) counters are not stored, so equal states
    compare equal.
    """

    counters: Mapping[str, PNCounter] = field(default_factory=dict)

    def __post_init__(self) -> None:
        canonical: dict[str, PNCounter] = {}
        for pollutant, counter in self.counters.items():
            _require_pollutant(pollutant)
            if not isinstance(counter, PNCounter):
                raise TypeError(f"exposure of {pollutant!r} must be a PNCounter, got {counter!r}")
            if not counter.is_bottom():
                canonical[pollutant] = counter
        object.__setattr__(self, "counters", canonical)

    @classmethod
    def _trusted(cls, counters: dict[str, PNCounter]) -> Exposure:
        exposure = object.__new__(cls)
        object.__setattr__(exposure, "counters", counters)
        return exposure

    def __hash__(self) -> int:
        return hash(frozenset(self.counters.items()))

    def value(self) -> dict[str, int]:
        """Current total per pollutant (micro-units)."""
        return {pollutant: counter.value() for pollutant, counter in self.counters.items()}

    def is_bottom(self) -> bool:
        return not self.counters

    def add(self, replica: str, pollutant: str, amount: int) -> tuple[Exposure, Exposure]:
        """Count `amount >= 0` micro-units of `pollutant` at `replica`. Returns (state, delta)."""
        require_replica_id(replica)
        amount = require_amount(amount, subtract_with="retract")
        counter = self.counters.get(_require_pollutant(pollutant), PNCounter())
        return self._updated(pollutant, *counter.increment(replica, amount))

    def retract(self, replica: str, pollutant: str, amount: int) -> tuple[Exposure, Exposure]:
        """Take back `amount >= 0` micro-units counted in error. Returns (state, delta)."""
        require_replica_id(replica)
        counter = self.counters.get(_require_pollutant(pollutant), PNCounter())
        return self._updated(pollutant, *counter.decrement(replica, amount))

    def _updated(self, pollutant: str, counter: PNCounter, delta: PNCounter) -> tuple[Exposure, Exposure]:
        if delta.is_bottom():  # a zero amount changes nothing
            return self, Exposure._trusted({})
        return (
            Exposure._trusted({**self.counters, pollutant: counter}),
            Exposure._trusted({pollutant: delta}),
        )

    def merge(self, other: Exposure) -> Exposure:
        merged = dict(self.counters)
        for pollutant, counter in other.counters.items():
            mine = merged.get(pollutant)
            merged[pollutant] = counter if mine is None else mine.merge(counter)
        return Exposure._trusted(merged)

    def leq(self, other: Exposure) -> bool:
        return all(
            pollutant in other.counters and counter.leq(other.counters[pollutant])
            for pollutant, counter in self.counters.items()
        )

    def difference(self, base: Exposure) -> Exposure:
        """The smallest delta `d` with `base.merge(d) == base.merge(self)`.

        Bottom exactly when `self.leq(base)`: gossip uses it to buffer only what a message adds.
        """
        novel: dict[str, PNCounter] = {}
        for pollutant, counter in self.counters.items():
            known = base.counters.get(pollutant)
            part = counter if known is None else counter.difference(known)
            if not part.is_bottom():
                novel[pollutant] = part
        return Exposure._trusted(novel)
