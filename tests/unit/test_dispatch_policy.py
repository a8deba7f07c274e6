"""The pure delivery policy: backoff bounds and jitter, circuit breaker transitions."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.dispatch.policy import BreakerState, CircuitBreaker, RetryPolicy


def test_ceiling_grows_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(base=0.5, cap=5.0, factor=2.0)
    assert [policy.ceiling(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert policy.ceiling(10_000) == 5.0  # no float overflow for absurd retry numbers


@given(
    retry=st.integers(min_value=1, max_value=60),
    jitter=st.floats(min_value=0, max_value=1),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_jittered_delay_stays_within_its_bounds(retry: int, jitter: float, seed: int) -> None:
    policy = RetryPolicy(base=0.1, cap=30.0, jitter=jitter)
    delay = policy.delay(retry, random.Random(seed))
    ceiling = policy.ceiling(retry)
    assert ceiling * (1 - jitter) - 1e-12 <= delay <= ceiling


def test_jitter_spreads_delays_and_reproduces_from_the_seed() -> None:
    policy = RetryPolicy(base=1.0, cap=1.0, jitter=1.0)
    first = [policy.delay(1, rng) for rng in [random.Random(7)] for _ in range(50)]
    again = [policy.delay(1, rng) for rng in [random.Random(7)] for _ in range(50)]
    assert first == again
    assert len(set(first)) == 50 and min(first) < 0.2 and max(first) > 0.8


def test_no_jitter_is_exact() -> None:
    policy = RetryPolicy(base=0.2, cap=10, jitter=0.0)
    assert policy.delay(3, random.Random(1)) == pytest.approx(0.8)


def test_gives_up_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.gives_up_after(n) for n in (1, 2, 3, 4)] == [False, False, True, True]


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"base": -1}, {"base": 2, "cap": 1}, {"factor": 0.5}, {"jitter": 1.5}],
)
def test_invalid_retry_policy_is_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_breaker_opens_after_threshold_consecutive_failures() -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=10)
    assert breaker.record_failure(0) is None
    assert breaker.record_success(1) is None  # a success resets the count
    assert breaker.record_failure(2) is None
    assert breaker.record_failure(3) is None
    change = breaker.record_failure(4)
    assert change is not None and (change.before, change.after) == (BreakerState.CLOSED, BreakerState.OPEN)
    assert change.failures == 3 and breaker.reopens_at() == 14
    assert breaker.allow(13.9) == (False, None)


def test_half_open_allows_one_trial_then_closes_on_success() -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=5)
    breaker.record_failure(0)
    allowed, change = breaker.allow(5)
    assert allowed and change is not None and change.after is BreakerState.HALF_OPEN
    assert breaker.allow(5.1) == (False, None)  # only one trial in flight
    closed = breaker.record_success(5.2)
    assert closed is not None and (closed.before, closed.after) == (
        BreakerState.HALF_OPEN,
        BreakerState.CLOSED,
    )
    assert breaker.state is BreakerState.CLOSED and breaker.failures == 0
    assert breaker.allow(5.3) == (True, None)


def test_failed_trial_reopens_for_another_timeout() -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=5)
    breaker.record_failure(0)
    breaker.record_failure(1)
    assert breaker.allow(6)[0]
    change = breaker.record_failure(6.5)
    assert change is not None and (change.before, change.after) == (BreakerState.HALF_OPEN, BreakerState.OPEN)
    assert breaker.allow(11.4) == (False, None)
    assert breaker.allow(11.5)[0] and breaker.state is BreakerState.HALF_OPEN


@given(st.lists(st.tuples(st.booleans(), st.floats(min_value=0, max_value=1)), max_size=60))
def test_breaker_never_allows_while_open_before_timeout(events: list[tuple[bool, float]]) -> None:
    breaker, now = CircuitBreaker(failure_threshold=2, reset_timeout=1.0), 0.0
    for ok, dt in events:
        now += dt
        allowed, _ = breaker.allow(now)
        reopens = breaker.reopens_at()
        if breaker.state is BreakerState.OPEN:
            assert not allowed and reopens is not None and now < reopens
        if allowed:
            (breaker.record_success if ok else breaker.record_failure)(now)


def test_invalid_breaker_is_rejected() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError):
        CircuitBreaker(reset_timeout=-1)


def test_policy_module_is_pure() -> None:
    from tests.unit.test_layering import test_pure_module_imports_no_io

    test_pure_module_imports_no_io("actors/dispatch/policy.py")
