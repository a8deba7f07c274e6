"""OR-Set (add-wins, dots + causal context) against a deliberately naive model of tagged operations."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.crdt.orset import CausalContext, Dot, InvalidOrSetError, ORSet

REPLICAS = ("a", "b", "c")
ELEMENTS = ("x", "y", "z")


@dataclass
class NaiveSet:
    """Every add is a unique tag; a remove tombstones the tags it observed; merge is union.

    No dots, no compaction, no superseding: obviously right and obviously slow (the etcd
    `quorum/quick_test.go` pattern of checking an optimized structure against a naive one).
    """

    adds: set[tuple[str, int]] = field(default_factory=set)
    removed: set[int] = field(default_factory=set)

    def elements(self) -> frozenset[str]:
        return frozenset(e for e, tag in self.adds if tag not in self.removed)

    def add(self, element: str, tag: int) -> None:
        self.adds.add((element, tag))

    def remove(self, element: str) -> None:
        self.removed |= {tag for e, tag in self.adds if e == element}

    def merge(self, other: NaiveSet) -> NaiveSet:
        return NaiveSet(self.adds | other.adds, self.removed | other.removed)


steps = st.tuples(
    st.sampled_from(("add", "add", "remove", "merge")),
    st.integers(0, len(REPLICAS) - 1),
    st.integers(0, len(REPLICAS) - 1),
    st.sampled_from(ELEMENTS),
)


@settings(max_examples=250, deadline=None)
@given(history=st.lists(steps, max_size=30), data=st.data())
def test_orset_matches_the_naive_model_and_its_deltas_carry_every_update(
    history: list[tuple[str, int, int, str]], data: st.DataObject
) -> None:
    replicas = [ORSet() for _ in REPLICAS]
    models = [NaiveSet() for _ in REPLICAS]
    deltas = []
    for tag, (operation, at, other, element) in enumerate(history):
        before = replicas[at]
        if operation == "merge":
            after = before.merge(replicas[other])
            models[at] = models[at].merge(models[other])
        else:
            if operation == "add":
                after, delta = before.add(REPLICAS[at], element)
                models[at].add(element, tag)
                assert element in after
            else:
                after, delta = before.remove(element)
                models[at].remove(element)
                assert element not in after
            assert before.merge(delta) == after, "delta merged into the state != state after the op"
            deltas.append(delta)
        assert before.leq(after), f"{operation} is not inflationary"
        replicas[at] = after
        assert after.elements() == models[at].elements(), f"replica {REPLICAS[at]} diverged"
    merged = reduce(ORSet.merge, replicas, ORSet())
    assert merged.elements() == reduce(NaiveSet.merge, models, NaiveSet()).elements()
    shuffled = data.draw(st.permutations(deltas + deltas[1::2]), label="deltas")
    assert reduce(ORSet.merge, shuffled, ORSet()) == merged


def test_a_concurrent_add_wins_over_a_remove() -> None:
    base, _ = ORSet().add("a", "x")
    removed, _ = base.remove("x")
    re_added, _ = base.add("b", "x")
    assert "x" in removed.merge(re_added)
    assert "x" in re_added.merge(removed)


def test_a_remove_deletes_only_the_adds_it_observed() -> None:
    at_a, _ = ORSet().add("a", "x")
    at_b = at_a
    at_a, remove_delta = at_a.remove("x")
    at_b, _ = at_b.add("b", "y")
    merged = at_b.merge(remove_delta)
    assert merged.elements() == {"y"}
    assert merged == at_b.merge(at_a)


def test_re_adding_replaces_older_dots_instead_of_accumulating_them() -> None:
    state = ORSet()
    for _ in range(5):
        state, _ = state.add("a", "x")
    assert state.entries == {"x": frozenset({Dot("a", 5)})}
    assert state.context.compact == {"a": 5} and not state.context.cloud


def test_removing_an_absent_element_is_a_no_op() -> None:
    state, _ = ORSet().add("a", "x")
    after, delta = state.remove("y")
    assert after is state and delta.is_bottom()


def test_causal_context_compacts_into_one_canonical_form() -> None:
    gappy = CausalContext.from_dots([Dot("a", 3), Dot("a", 1)])
    assert gappy.compact == {"a": 1} and gappy.cloud == {Dot("a", 3)}
    filled = gappy.merge(CausalContext.from_dots([Dot("a", 2)]))
    assert filled == CausalContext({"a": 3})
    assert filled.cloud == frozenset()
    assert gappy.next_dot("a") == Dot("a", 4), "the next dot must skip dots in the cloud"
    assert sorted(filled.dots()) == [Dot("a", 1), Dot("a", 2), Dot("a", 3)]


@pytest.mark.parametrize(
    ("entries", "context"),
    [
        ({"x": {Dot("a", 1)}}, CausalContext()),  # live dot missing from the context
        ({"x": {Dot("a", 1)}, "y": {Dot("a", 1)}}, CausalContext({"a": 1})),  # one dot, two adds
        ({"x": {("a", 0)}}, CausalContext({"a": 1})),  # counters start at 1
        ({"x": {("", 1)}}, CausalContext({"a": 1})),  # replica ids are non-empty
        ({3: {Dot("a", 1)}}, CausalContext({"a": 1})),  # elements are str
    ],
)
def test_inconsistent_parts_are_refused(entries: dict, context: CausalContext) -> None:
    with pytest.raises(ValueError):
        ORSet(entries, context)


def test_causal_context_refuses_negative_prefixes() -> None:
    with pytest.raises(InvalidOrSetError):
        CausalContext({"a": -1})
