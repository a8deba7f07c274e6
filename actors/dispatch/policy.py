"""PURE delivery policy: the retry schedule and the per-sink circuit breaker.

No clock and no global randomness: time arrives as ``now`` arguments (seconds on any monotonic scale) and
jitter comes from an injected ``random.Random``, so every schedule reproduces from its seed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["BreakerState", "CircuitBreaker", "RetryPolicy", "Transition"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: retry ``n`` (1-based) waits ``min(cap, base * factor**(n-1))``
    scaled down by up to ``jitter`` (0 = none, 1 = "full jitter": anywhere in [0, delay]). Jitter spreads
    the retries of many incidents (and many nodes) so a recovering endpoint is not hit in lockstep."""

    max_attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base < 0 or self.cap < self.base:
            raise ValueError(f"need 0 <= base <= cap, got base={self.base} cap={self.cap}")
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter}")

    def ceiling(self, retry: int) -> float:
        """The delay before retry number ``retry`` (1-based) without jitter."""
        if retry < 1:
            raise ValueError(f"retry numbers start at 1, got {retry}")
        if self.base == 0:
            return 0.0
        # compare in log space first: factor**retry overflows a float for large retry numbers
        if self.factor > 1 and (retry - 1) * math.log(self.factor) >= math.log(self.cap / self.base):
            return self.cap
        return min(self.cap, self.base * self.factor ** (retry - 1))

    def delay(self, retry: int, rng: random.Random) -> float:
        """The jittered delay before retry number ``retry``: within [ceiling*(1-jitter), ceiling]."""
        ceiling = self.ceiling(retry)
        return ceiling * (1.0 - self.jitter * rng.random())

    def gives_up_after(self, attempts: int) -> bool:
        """True when ``attempts`` failed attempts exhaust the policy (the item becomes a dead letter)."""
        return attempts >= self.max_attempts


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change the shell should log (``circuit_opened`` / ``circuit_half_open`` / ``circuit_closed``)."""

    before: BreakerState
    after: BreakerState
    failures: int


class CircuitBreaker:
    """Closed -> open after ``failure_threshold`` consecutive failures; open -> half-open once
    ``reset_timeout`` has passed (one trial call is allowed); half-open -> closed on the trial's success,
    back to open (for another ``reset_timeout``) on its failure.

    While open, :meth:`allow` says no and the caller does not even try: a dead endpoint costs no timeouts
    and no attempts of the incidents waiting behind it.
    """

    def __init__(self, failure_threshold: int = 5, reset_timeout: float = 10.0) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if reset_timeout < 0:
            raise ValueError(f"reset_timeout must be >= 0, got {reset_timeout}")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def failures(self) -> int:
        """Consecutive failures so far (reset by a success)."""
        return self._failures

    def reopens_at(self) -> float | None:
        """When an open breaker lets a trial through (None unless open)."""
        return self._opened_at + self.reset_timeout if self._state is BreakerState.OPEN else None

    def allow(self, now: float) -> tuple[bool, Transition | None]:
        """May a call be made at ``now``? Also returns the open -> half-open transition when it happens."""
        if self._state is BreakerState.CLOSED:
            return True, None
        if self._state is BreakerState.OPEN:
            if now < self._opened_at + self.reset_timeout:
                return False, None
            self._state = BreakerState.HALF_OPEN
            self._trial_in_flight = True
            return True, Transition(BreakerState.OPEN, BreakerState.HALF_OPEN, self._failures)
        # half-open: exactly one trial at a time
        if self._trial_in_flight:
            return False, None
        self._trial_in_flight = True
        return True, None

    def record_success(self, now: float) -> Transition | None:
        before = self._state
        self._state, self._failures, self._trial_in_flight = BreakerState.CLOSED, 0, False
        if before is BreakerState.CLOSED:
            return None
        return Transition(before, BreakerState.CLOSED, 0)

    def record_failure(self, now: float) -> Transition | None:
        self._failures += 1
        self._trial_in_flight = False
        before = self._state
        if before is BreakerState.HALF_OPEN or (
            before is BreakerState.CLOSED and self._failures >= self.failure_threshold
        ):
            self._state, self._opened_at = BreakerState.OPEN, now
            return Transition(before, BreakerState.OPEN, self._failures)
        return None
