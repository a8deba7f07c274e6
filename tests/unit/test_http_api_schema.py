"""The HTTP API's incident check agrees with the Raft log's: whatever the API accepts, every replica applies.

If the API accepted a body the log's total check (``actors.raft.entries``) rejects, the POST would be
appended, rejected as a no-op by every replica, and answered 504 forever; so acceptance is checked against
the real signing and opening of an entry, over generated bodies.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.raft.entries import open_entry, signed_entry
from supervisors.peer.api import BadIncident, parse_incident

KEY = Ed25519PrivateKey.generate()
TRUSTED = {"api-node": KEY.public_key()}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.floats(allow_nan=True), st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)
fields = {
    "incident_id": st.one_of(st.text(min_size=0, max_size=210), json_values),
    "timestamp": st.one_of(
        st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 2**40), json_values
    ),
    "type": st.one_of(st.text(max_size=120), json_values),
    "source_node": st.one_of(st.text(max_size=300), json_values),
    "sensor": st.one_of(st.text(max_size=300), st.none(), json_values),
    "confidence": st.one_of(st.floats(-1, 2), st.just(math.nan), st.integers(-1, 2), json_values),
    "payload": st.one_of(st.dictionaries(st.text(max_size=8), json_values, max_size=5), json_values),
    "extra": json_values,
}


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    chosen = draw(st.sets(st.sampled_from(sorted(fields)), min_size=5))
    return {name: draw(fields[name]) for name in chosen}


@settings(max_examples=400, deadline=None)
@given(bodies())
def test_every_accepted_incident_is_applied_by_the_log_unchanged(body: dict[str, Any]) -> None:
    raw = json.dumps(body, allow_nan=True).encode()
    try:
        incident = parse_incident(raw)
    except BadIncident as exc:
        assert str(exc)  # refused with a reason
        return
    opened, why = open_entry(signed_entry("api-node", incident, KEY), TRUSTED)
    assert opened == incident, why
    assert "extra" not in incident
    assert all(not (isinstance(v, float) and not math.isfinite(v)) for v in incident.values())


finite_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**53), 2**53),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)


@st.composite
def valid_bodies(draw: st.DrawFn) -> dict[str, Any]:
    body = {
        "incident_id": draw(st.text(min_size=1, max_size=50).filter(lambda t: "/" not in t)),
        "timestamp": draw(st.one_of(st.integers(0, 2**40), st.floats(0, 1e12))),
        "type": draw(st.text(min_size=1, max_size=100)),
        "source_node": draw(st.text(min_size=1, max_size=256)),
        "confidence": draw(st.one_of(st.floats(0, 1), st.sampled_from([0, 1]))),
        "payload": draw(st.dictionaries(st.text(max_size=8), finite_json, max_size=5)),
    }
    if draw(st.booleans()):
        body["sensor"] = draw(st.text(max_size=256))
    return body


@settings(max_examples=300, deadline=None)
@given(valid_bodies())
def test_a_valid_incident_is_accepted_and_applied_by_the_log_unchanged(body: dict[str, Any]) -> None:
    incident = parse_incident(json.dumps(body).encode())
    assert incident == {**body, "sensor": body.get("sensor") or ""}
    opened, why = open_entry(signed_entry("api-node", incident, KEY), TRUSTED)
    assert opened == incident, why


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (
            b'{"incident_id": "a", "timestamp": 1, "type": "t", "source_node": "n", "confidence": 0.5}',
            "payload",
        ),
        (
            b'{"incident_id": "\xc3\xa9'
            + b"x" * 199
            + b'", "timestamp": 1, "type": "t", "source_node": "n", '
            b'"confidence": 0.5, "payload": {}}',
            "200 bytes",
        ),
        (b"\xff\xfe", "not JSON"),
        (b'{"payload": ' + b"[" * 20 + b"]" * 20 + b"}", "nested deeper"),
        (b"[" * 100_000 + b"]" * 100_000, "more than"),
        (  # only the dispatchers propose marks: one from a client would make the next leader skip dispatch
            b'{"incident_id": "a", "timestamp": 1, "type": "dispatch_mark", "source_node": "n", '
            b'"confidence": 0.5, "payload": {"through": 1000000000}}',
            "reserved",
        ),
    ],
)
def test_a_refusal_names_what_to_fix(body: bytes, named: str) -> None:
    with pytest.raises(BadIncident, match=named):
        parse_incident(body)
