"""Join-semilattice laws for every CRDT state type, checked by hypothesis.

For each type: merge is commutative, associative and idempotent, the bottom element is its
identity, `leq` is the order that merge induces, `difference` is the smallest delta that carries
what a state adds, and a codec round trip is the identity. Every law runs on every example: 200
per type, so the merge and order laws get 1000 examples per run (5 types), `difference` 600 (the
3 counter-based types) and the codec 800 (the 4 stored types). The update laws (inflationary,
delta-correct, equal to a sequential model) are in the per-type files, 1000 examples in total.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.crdt import codec
from actors.crdt.counters import GCounter, PNCounter
from actors.crdt.exposure import Exposure
from actors.crdt.orset import CausalContext, Dot, ORSet

REPLICAS = ("a", "b", "c")
POLLUTANTS = ("NO2", "O3", "PM2.5")
ELEMENTS = ("x", "y", "z")

# Fixed-shape draws are several times cheaper for hypothesis than dictionaries. Small counts make
# equal and comparable states common; 2**62 checks that nothing overflows or loses precision.
counts = st.sampled_from((0, 0, 1, 2, 3, 2**62))


def _per_replica(values: tuple[int, ...]) -> dict[str, int]:
    return dict(zip(REPLICAS, values, strict=True))


gcounters = st.tuples(counts, counts, counts).map(lambda c: GCounter(_per_replica(c)))
pncounters = st.builds(PNCounter, gcounters, gcounters)
exposures = st.tuples(pncounters, pncounters).map(
    lambda pair: Exposure(dict(zip(POLLUTANTS, pair, strict=False)))
)
dots = st.builds(Dot, st.sampled_from(REPLICAS), st.integers(1, 6))
contexts = st.builds(
    CausalContext,
    st.tuples(*[st.integers(0, 3)] * len(REPLICAS)).map(_per_replica),
    st.frozensets(dots, max_size=5),
)


@st.composite
def orset_worlds(draw: st.DrawFn) -> list[ORSet]:
    """States and deltas reachable in one history of three replicas.

    OR-Set states are only jointly valid when their dots come from one history (a dot names one
    add), so unlike the counters they cannot be drawn independently.
    """
    replicas = [ORSet() for _ in REPLICAS]
    seen = []
    steps = st.tuples(
        st.integers(0, 2),
        st.sampled_from(("add", "add", "remove", "merge")),
        st.sampled_from(ELEMENTS),
        st.integers(0, 2),
    )
    for at, kind, element, other in draw(st.lists(steps, min_size=3, max_size=20)):
        if kind == "add":
            replicas[at], delta = replicas[at].add(REPLICAS[at], element)
            seen.append(delta)
        elif kind == "remove":
            replicas[at], delta = replicas[at].remove(element)
            seen.append(delta)
        else:
            replicas[at] = replicas[at].merge(replicas[other])
        seen.append(replicas[at])
    return seen


@st.composite
def orset_triples(draw: st.DrawFn) -> tuple[ORSet, ORSet, ORSet]:
    world = draw(orset_worlds())
    # Distinct positions where possible: the same state three times exercises little.
    index = st.integers(0, len(world) - 1)
    a, b, c = draw(st.lists(index, min_size=3, max_size=3, unique=len(world) >= 3))
    return world[a], world[b], world[c]


TRIPLES = {
    GCounter: st.tuples(gcounters, gcounters, gcounters),
    PNCounter: st.tuples(pncounters, pncounters, pncounters),
    Exposure: st.tuples(exposures, exposures, exposures),
    CausalContext: st.tuples(contexts, contexts, contexts),
    ORSet: orset_triples(),
}
CODABLE = (GCounter, PNCounter, Exposure, ORSet)
WITH_DIFFERENCE = (GCounter, PNCounter, Exposure)


@pytest.mark.parametrize("kind", list(TRIPLES), ids=lambda k: k.__name__)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_merge_is_a_join(kind: type, data: st.DataObject) -> None:
    a, b, c = data.draw(TRIPLES[kind], label="a, b, c")
    ab = a.merge(b)
    assert ab == b.merge(a), "merge is not commutative"
    assert ab.merge(c) == a.merge(b.merge(c)), "merge is not associative"
    assert a.merge(a) == a, "merge is not idempotent"
    assert a.merge(kind()) == a == kind().merge(a), "bottom is not the identity of merge"
    assert a.leq(ab) and b.leq(ab), "merge is not an upper bound"
    assert a.leq(b) == (ab == b), "leq disagrees with the order merge induces"
    if a.leq(c) and b.leq(c):
        assert ab.leq(c), "merge is not the least upper bound"
    assert hash(ab) == hash(b.merge(a)), "equal states hash differently"
    if kind in WITH_DIFFERENCE:
        novel = a.difference(b)
        assert b.merge(novel) == b.merge(a), "difference loses part of what a adds to b"
        assert novel.leq(a), "difference invents state"
        assert novel.is_bottom() == a.leq(b), "difference is non-empty although a <= b"
    if kind in CODABLE:
        assert codec.decode(codec.encode(a), kind) == a, "codec round trip changed the state"
        assert codec.encode(ab) == codec.encode(b.merge(a)), "equal states encode differently"
