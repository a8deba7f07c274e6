"""G-Counter and PN-Counter updates: inflationary, delta-correct, and equal to a sequential sum."""

from __future__ import annotations

from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.crdt.counters import (
    GCounter,
    InvalidAmountError,
    InvalidReplicaError,
    PNCounter,
)

REPLICAS = ("a", "b", "c")

# (operation, acting replica, other replica for merges, amount)
steps = st.tuples(
    st.sampled_from(("increment", "decrement", "merge")),
    st.integers(0, len(REPLICAS) - 1),
    st.integers(0, len(REPLICAS) - 1),
    st.integers(0, 1000),
)


@pytest.mark.parametrize("kind", [GCounter, PNCounter], ids=lambda k: k.__name__)
@settings(max_examples=250, deadline=None)
@given(history=st.lists(steps, max_size=25), data=st.data())
def test_updates_are_inflationary_deltas_and_sum_like_a_sequential_model(
    kind: type, history: list[tuple[str, int, int, int]], data: st.DataObject
) -> None:
    replicas = [kind() for _ in REPLICAS]
    deltas = []
    model_total = 0  # the riak_dt-style sequential model: every update applied to one integer
    for operation, at, other, amount in history:
        before = replicas[at]
        if operation == "merge":
            after = before.merge(replicas[other])
        else:
            if operation == "decrement" and kind is GCounter:
                continue
            after, delta = getattr(before, operation)(REPLICAS[at], amount)
            sign = 1 if operation == "increment" else -1
            model_total += sign * amount
            assert after.value() == before.value() + sign * amount
            assert before.merge(delta) == after, "delta merged into the state != state after the op"
            assert delta.leq(after)
            deltas.append(delta)
        assert before.leq(after), f"{operation} is not inflationary"
        replicas[at] = after
    merged = reduce(kind.merge, replicas, kind())
    assert merged.value() == model_total
    # Deltas alone, joined in any order and with duplicates, carry every update.
    shuffled = data.draw(st.permutations(deltas + deltas[: len(deltas) // 2]), label="deltas")
    assert reduce(kind.merge, shuffled, kind()) == merged


def test_gcounter_merge_takes_the_maximum_per_replica() -> None:
    left = GCounter({"a": 3, "b": 1})
    right = GCounter({"a": 2, "c": 5})
    assert left.merge(right) == GCounter({"a": 3, "b": 1, "c": 5})
    assert left.merge(right).value() == 9


def test_zero_counts_are_not_stored_so_equal_states_compare_equal() -> None:
    assert GCounter({"a": 0}) == GCounter()
    assert GCounter({"a": 0}).counts == {}
    state, delta = GCounter().increment("a", 0)
    assert state == GCounter() and delta.is_bottom()


def test_the_constructor_copies_its_mapping() -> None:
    counts = {"a": 1}
    counter = GCounter(counts)
    counts["a"] = 7
    assert counter.value() == 1


@pytest.mark.parametrize("amount", [-1, 1.5, "3", None])
def test_amounts_must_be_non_negative_integers(amount: object) -> None:
    with pytest.raises(InvalidAmountError):
        GCounter().increment("a", amount)  # type: ignore[arg-type]
    with pytest.raises(InvalidAmountError):
        PNCounter().decrement("a", amount)  # type: ignore[arg-type]
    with pytest.raises(ValueError):  # the brief's contract: a ValueError
        PNCounter().increment("a", amount)  # type: ignore[arg-type]


def test_amounts_accept_integer_like_values() -> None:
    class Micro:  # any type with __index__, such as numpy's integers
        def __index__(self) -> int:
            return 4

    assert GCounter().increment("a", Micro())[0].value() == 4  # type: ignore[arg-type]


@pytest.mark.parametrize("replica", ["", 3, None])
def test_replica_ids_must_be_non_empty_strings(replica: object) -> None:
    with pytest.raises(InvalidReplicaError):
        GCounter().increment(replica, 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidReplicaError):
        GCounter({replica: 1})  # type: ignore[dict-item]


def test_negative_counts_are_refused_at_construction() -> None:
    with pytest.raises(InvalidAmountError):
        GCounter({"a": -1})


def test_pncounter_value_is_increments_minus_decrements() -> None:
    counter, _ = PNCounter().increment("a", 10)
    counter, delta = counter.decrement("b", 4)
    assert counter.value() == 6
    assert delta == PNCounter(GCounter(), GCounter({"b": 4}))
