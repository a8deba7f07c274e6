"""Exposure per pollutant: a delta CRDT whose merged totals equal a per-pollutant sequential sum."""

from __future__ import annotations

from collections import Counter
from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.crdt.counters import InvalidAmountError, PNCounter
from actors.crdt.exposure import Exposure, InvalidPollutantError

REPLICAS = ("a", "b", "c")
POLLUTANTS = ("NO2", "O3", "PM2.5")

steps = st.tuples(
    st.sampled_from(("add", "add", "retract", "merge")),
    st.integers(0, len(REPLICAS) - 1),
    st.integers(0, len(REPLICAS) - 1),
    st.sampled_from(POLLUTANTS),
    st.integers(0, 10**9),
)


@settings(max_examples=250, deadline=None)
@given(history=st.lists(steps, max_size=25), data=st.data())
def test_updates_are_inflationary_deltas_and_total_like_a_sequential_model(
    history: list[tuple[str, int, int, str, int]], data: st.DataObject
) -> None:
    replicas = [Exposure() for _ in REPLICAS]
    deltas = []
    model: Counter[str] = Counter()
    for operation, at, other, pollutant, amount in history:
        before = replicas[at]
        if operation == "merge":
            after = before.merge(replicas[other])
        else:
            after, delta = getattr(before, operation)(REPLICAS[at], pollutant, amount)
            sign = 1 if operation == "add" else -1
            model[pollutant] += sign * amount
            expected = before.value().get(pollutant, 0) + sign * amount
            assert after.value().get(pollutant, 0) == expected
            assert before.merge(delta) == after, "delta merged into the state != state after the op"
            assert set(delta.counters) <= {pollutant}, "a delta carries more than the changed key"
            deltas.append(delta)
        assert before.leq(after), f"{operation} is not inflationary"
        replicas[at] = after
    merged = reduce(Exposure.merge, replicas, Exposure())
    assert merged.value() == {p: total for p, total in model.items() if p in merged.counters}
    assert all(model[p] == 0 for p in POLLUTANTS if p not in merged.counters)
    shuffled = data.draw(st.permutations(deltas + deltas[::2]), label="deltas")
    assert reduce(Exposure.merge, shuffled, Exposure()) == merged


def test_value_reports_each_pollutant_in_micro_units() -> None:
    state, _ = Exposure().add("a", "NO2", 1_500_000)
    state, _ = state.add("b", "NO2", 500_000)
    state, _ = state.retract("b", "NO2", 250_000)
    state, _ = state.add("a", "O3", 7)
    assert state.value() == {"NO2": 1_750_000, "O3": 7}


def test_a_zero_amount_changes_nothing() -> None:
    state, _ = Exposure().add("a", "NO2", 5)
    after, delta = state.add("a", "NO2", 0)
    assert after is state and delta.is_bottom()


def test_difference_keeps_only_what_the_base_lacks() -> None:
    base, _ = Exposure().add("a", "NO2", 5)
    newer, _ = base.add("b", "O3", 2)
    assert newer.difference(base) == Exposure({"O3": PNCounter().increment("b", 2)[0]})
    assert base.difference(newer).is_bottom()


@pytest.mark.parametrize("pollutant", ["", None, 3])
def test_pollutants_must_be_named(pollutant: object) -> None:
    with pytest.raises(InvalidPollutantError):
        Exposure().add("a", pollutant, 1)  # type: ignore[arg-type]


def test_negative_and_fractional_amounts_are_refused() -> None:
    with pytest.raises(InvalidAmountError, match="retract"):
        Exposure().add("a", "NO2", -1)
    with pytest.raises(InvalidAmountError, match="integer"):
        Exposure().add("a", "NO2", 0.5)  # type: ignore[arg-type]


def test_counters_must_be_pncounters() -> None:
    with pytest.raises(TypeError):
        Exposure({"NO2": 5})  # type: ignore[dict-item]
