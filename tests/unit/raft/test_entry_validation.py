"""``open_entry`` is total: any committed entry is either an incident or a rejection with a reason.

A committed entry is applied again at every boot; before, an entry without a signature (or with a
non-string one, or a malformed ``node``) made the replica raise KeyError/TypeError on every start.
Both entry versions are covered: v1 (one signature per entry) and v2 (one signature per proposal batch
over a Merkle root, each entry carrying its inclusion proof).
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.raft import entries
from actors.raft.entries import (
    MAX_BATCH,
    MAX_ENTRY_BYTES,
    open_entry,
    open_snapshot,
    signed_batch,
    signed_entry,
)
from actors.raft.node_keys import parse_public_key, public_key_b64

_encode = msgspec.msgpack.Encoder(order="deterministic").encode
_decode = msgspec.msgpack.decode

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
TRUSTED = {"edge-1": parse_public_key(public_key_b64(KEY))}
INCIDENT: dict[str, Any] = {
    "incident_id": "0123456789abcdef",
    "timestamp": 1_700_000_000.5,
    "type": "CO_leak",
    "source_node": "edge-1",
    "sensor": "S1",
    "confidence": 0.97,
    "payload": {"reading": {"value": 87.25, "unit": "ppm", "ts": 1.0}, "location": [1.0, 2.0]},
}


def _outer(**fields: Any) -> bytes:
    """A validly signed entry's outer map with some fields replaced (None: removed)."""
    outer = _decode(signed_entry("edge-1", INCIDENT, KEY))
    outer.update(fields)
    return _encode({k: v for k, v in outer.items() if v is not None})


def _signed_body(body: Any, key: Ed25519PrivateKey = KEY) -> bytes:
    """An entry whose body is ``body`` (any value), correctly signed: only the body's content is wrong."""
    raw = msgspec.msgpack.encode(body)  # any keys, as a buggy or hostile proposer could write
    return _encode({"v": 1, "body": raw, "sig": key.sign(raw)})


def _incident(**fields: Any) -> bytes:
    incident = {k: v for k, v in {**INCIDENT, **fields}.items() if v is not None}
    return signed_entry("edge-1", incident, KEY)


# a v2 batch of 5 (an unbalanced tree: leaf 4 is promoted twice) and another batch of the same size
BATCH = signed_batch("edge-1", [{**INCIDENT, "incident_id": f"b-{i}"} for i in range(5)], KEY)
OTHER_BATCH = signed_batch("edge-1", [{**INCIDENT, "incident_id": f"c-{i}"} for i in range(5)], KEY)


def _v2(at: int = 0, batch: list[bytes] = BATCH, **fields: Any) -> bytes:
    """Entry ``at`` of a validly signed v2 batch with some fields replaced (None: removed)."""
    outer = _decode(batch[at])
    outer.update(fields)
    return _encode({k: v for k, v in outer.items() if v is not None})


def _flip(h: bytes) -> bytes:
    return bytes([h[0] ^ 1]) + h[1:]


def _cold() -> None:
    """As on a replica that just started: nothing in the memos of verified signatures, path hashes and
    entries it signed."""
    entries._VERIFIED.clear()
    entries._PATHS.clear()
    entries._SIGNED.clear()


_P0 = _decode(BATCH[0])["proof"]  # entry 0's proof: 3 hashes (siblings at levels 0, 1 and 2)


MALFORMED: list[tuple[str, object, str]] = [
    # the three reported crashes
    ("no signature", _outer(sig=None), "sig is missing"),
    ("signature is a string", _outer(sig="c2lnbmF0dXJl"), "sig is str"),
    ("signature is an int", _outer(sig=7), "sig is int"),
    ("node is a list", _signed_body({"node": ["edge-1"], "incident": INCIDENT}), "node is a list"),
    ("node is a map", _signed_body({"node": {"a": 1}, "incident": INCIDENT}), "node is a dict"),
    ("node is empty", _signed_body({"node": "", "incident": INCIDENT}), "not a node name"),
    ("node is missing", _signed_body({"incident": INCIDENT}), "node is None"),
    # not an entry at all
    ("not bytes", "a string", "data is str, not bytes"),
    ("not msgpack", b"\xc1\xc1\xc1", "entry is not msgpack"),
    ("truncated", signed_entry("edge-1", INCIDENT, KEY)[:-10], "entry is not msgpack"),
    ("outer is a list", _encode([1, 2, 3]), "not a map but list"),
    ("outer is an int", _encode(5), "not a map but int"),
    ("too large", b"\x00" * (MAX_ENTRY_BYTES + 1), "more than"),
    ("unknown version", _outer(v=3), "unknown version 3"),
    ("version true", _outer(v=True), "unknown version True"),
    ("no body", _outer(body=None), "body is missing"),
    ("body is a string", _outer(body="text"), "body is str"),
    ("body is not msgpack", _outer(body=b"\xc1"), "body is not msgpack"),
    ("body is a list", _signed_body([1, 2]), "body is not a map but list"),
    # signatures and keys
    ("short signature", _outer(sig=b"\x00" * 10), "sig is 10 bytes"),
    ("zero signature", _outer(sig=b"\x00" * 64), "signature does not verify"),
    ("signed by another key", signed_entry("edge-1", INCIDENT, OTHER), "signature does not verify"),
    ("untrusted node", signed_entry("mallory", INCIDENT, OTHER), "'mallory', which has no trusted key"),
    # the incident's schema (correctly signed: a bug in a trusted node)
    ("incident is a list", _signed_body({"node": "edge-1", "incident": [1]}), "incident is list"),
    ("incident missing", _signed_body({"node": "edge-1"}), "incident is missing"),
    ("no incident_id", _incident(incident_id=None), "no 'incident_id'"),
    ("incident_id is a list", _incident(incident_id=["x"]), "'incident_id' is list"),
    ("incident_id is empty", _incident(incident_id=""), "incident_id must be"),
    ("incident_id too long", _incident(incident_id="x" * 600), "incident_id must be"),
    ("incident_id with a slash", _incident(incident_id="a/b"), "incident_id must be"),
    ("confidence is a string", _incident(confidence="high"), "'confidence' is str"),
    ("confidence is NaN", _incident(confidence=float("nan")), "not a finite number"),
    ("timestamp is a bool", _incident(timestamp=True), "'timestamp' is bool"),
    ("payload is a list", _incident(payload=[1]), "'payload' is list"),
    ("no type", _incident(type=None), "no 'type'"),
    ("payload holds bytes", _incident(payload={"x": b"raw"}), "holds bytes"),
    ("payload has an int key", _signed_body({"node": "edge-1", "incident": {**INCIDENT, 1: 2}}), "key of"),
    ("payload nested deeply", _incident(payload={"a": [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]}), "deeper"),
    # v2: the proof, its position and the batch signature
    ("v2 bad proof", _v2(proof=[_flip(_P0[0]), *_P0[1:]]), "batch signature does not verify"),
    ("v2 wrong pos", _v2(pos=1), "batch signature does not verify"),
    ("v2 proof of another root", _v2(proof=_decode(OTHER_BATCH[0])["proof"]), "batch signature does not"),
    ("v2 body of another batch", _v2(body=_decode(OTHER_BATCH[0])["body"]), "batch signature does not"),
    ("v2 signature of another batch", _v2(sig=_decode(OTHER_BATCH[0])["sig"]), "batch signature does not"),
    ("v2 zero signature", _v2(sig=bytes(64)), "batch signature does not verify"),
    ("v2 signed by another key", signed_batch("edge-1", [INCIDENT], OTHER)[0], "batch signature does not"),
    ("v2 v1-style signature", _v2(n=1, pos=0, proof=[], sig=KEY.sign(_decode(BATCH[0])["body"])), "batch"),
    ("v1 with a v2 signature", _outer(sig=_decode(BATCH[0])["sig"]), "signature does not verify"),
    ("v2 untrusted node", signed_batch("mallory", [INCIDENT], OTHER)[0], "'mallory', which has no trusted"),
    ("v2 short signature", _v2(sig=b"\x00" * 10), "sig is 10 bytes"),
    ("v2 proof oversized", _v2(proof=[_P0[0]] * 13), "not a list of <= 12"),
    ("v2 proof longer than the path", _v2(proof=[*_P0, _P0[0]]), "proof longer than the path"),
    ("v2 proof shorter than the path", _v2(proof=_P0[:2]), "proof shorter than the path"),
    ("v2 proof is a string", _v2(proof="abc"), "proof is str"),
    ("v2 proof missing", _v2(proof=None), "proof is missing"),
    ("v2 proof holds a short hash", _v2(proof=[_P0[0][:31], *_P0[1:]]), "32-byte hashes"),
    ("v2 proof holds an int", _v2(proof=[7, *_P0[1:]]), "32-byte hashes"),
    ("v2 pos equal to n", _v2(pos=5), "pos is 5, not 0..4"),
    ("v2 pos negative", _v2(pos=-1), "pos is -1"),
    ("v2 pos is a bool", _v2(pos=False), "pos is False"),
    ("v2 pos missing", _v2(pos=None), "pos is None"),
    ("v2 n is 0", _v2(n=0), "n is 0, not 1.."),
    ("v2 n above the maximum", _v2(n=MAX_BATCH + 1), f"n is {MAX_BATCH + 1}"),
    ("v2 n is a float", _v2(n=5.0), "n is 5.0"),
    ("v2 n smaller than the batch", _v2(n=4, pos=0), "proof longer than the path of 0 in 4"),
    ("v2 n larger than the batch", _v2(n=6, pos=0), "batch signature does not verify"),
    ("v2 huge n", _v2(n=2**63 - 1), "n is 9223372036854775807"),
]


@pytest.mark.parametrize(("data", "reason"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_each_malformed_entry_is_rejected_with_its_reason(data: object, reason: str) -> None:
    incident, why = open_entry(data, TRUSTED)
    assert incident is None
    assert reason in why, why
    # deterministic: the same answer again, and with a freshly parsed copy of the trusted keys (as on
    # another replica)
    other_replica = {node: parse_public_key(public_key_b64(KEY)) for node in TRUSTED}
    assert open_entry(data, TRUSTED) == open_entry(data, other_replica) == (None, why)


def test_the_reported_entries_really_crashed_the_old_check() -> None:
    # the fault is real: the pre-fix check read outer["sig"] outside its try (KeyError) and looked an
    # unhashable node up in a dict (TypeError)
    no_sig = _decode(_outer(sig=None))
    with pytest.raises(KeyError):
        _ = no_sig["sig"]
    with pytest.raises(TypeError):
        TRUSTED.get(["edge-1"])  # type: ignore[call-overload]
    assert open_entry(_outer(sig=None), TRUSTED)[0] is None


def test_a_valid_entry_is_opened() -> None:
    assert open_entry(signed_entry("edge-1", INCIDENT, KEY), TRUSTED) == (INCIDENT, "")


@pytest.mark.parametrize("size", [*range(1, 18), 31, 32, 33, 100, 256])
def test_every_entry_of_a_batch_opens_alone_with_a_cold_memo(size: int) -> None:
    """Every tree shape up to 17 leaves (balanced or not) and a few larger: each entry, opened on its own
    by a replica that never saw the batch (memo cleared before each), is its incident, in order."""
    incidents = [{**INCIDENT, "incident_id": f"s{size}-{i}"} for i in range(size)]
    batch = signed_batch("edge-1", incidents, KEY)
    assert len({_decode(e)["sig"] for e in batch}) == 1  # ONE signature for the whole batch
    for i, entry in enumerate(batch):
        _cold()
        assert open_entry(entry, TRUSTED) == (incidents[i], "")
        assert len(_decode(entry)["proof"]) <= max(size - 1, 0).bit_length()


def test_a_batch_larger_than_the_maximum_is_refused_when_signing() -> None:
    with pytest.raises(ValueError, match="split it"):
        signed_batch("edge-1", [INCIDENT] * (MAX_BATCH + 1), KEY)
    with pytest.raises(ValueError, match="split it"):
        signed_batch("edge-1", [], KEY)


def test_warm_and_cold_memos_give_identical_answers() -> None:
    """The memo of verified batch signatures is a pure function's: a replica that verified (or signed)
    the batches gives exactly the answers of a replica that starts cold, for good and damaged entries."""
    cases = [*BATCH, *OTHER_BATCH, *(m[1] for m in MALFORMED)]
    _cold()
    cold = []
    for data in cases:
        _cold()
        cold.append(open_entry(data, TRUSTED))
    _cold()
    signed_batch("edge-1", [INCIDENT], KEY)  # this process signs too: seeds the memo
    warm = [open_entry(data, TRUSTED) for data in [*BATCH, *OTHER_BATCH]]  # warms it with both roots
    assert len(entries._VERIFIED) == 3 and len(entries._PATHS) == 8  # 4 inner nodes per batch of 5
    warm = [open_entry(data, TRUSTED) for data in cases]
    assert warm == cold
    assert sum(opened is not None for opened, _ in cold) == len(BATCH) + len(OTHER_BATCH)


_HOSTILE_VALUES = [
    *(None, True, 0, -1, 2**63 - 1, 1.5, float("nan"), float("inf"), "", "x" * 300, b"", b"\x00" * 64),
    *([1], {"a": 1}, {1: 2}, [[[[[]]]]], msgspec.msgpack.Ext(1, b"x"), "edge-1", "a/b"),
]


def _mutate(data: Any, draw: Any) -> Any:
    """One structural mutation of a decoded value: replace, drop or wrap a part of it."""
    hostile = st.sampled_from(_HOSTILE_VALUES)
    if isinstance(data, dict) and data and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(data, key=repr)))
        op = draw(st.sampled_from(["replace", "drop", "recurse"]))
        out = dict(data)
        if op == "drop":
            del out[key]
        elif op == "replace":
            out[key] = draw(hostile)
        else:
            out[key] = _mutate(out[key], draw)
        return out
    if isinstance(data, bytes) and data and draw(st.booleans()):
        try:
            inner = _decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError):  # a hash is any 32 bytes
            inner = None
        if inner is not None:  # re-encode a mutated inner document (the body)
            return msgspec.msgpack.encode(_mutate(inner, draw))
    return draw(hostile)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_structural_mutations_of_a_valid_entry_never_raise(data: Any) -> None:
    outer = _decode(signed_entry("edge-1", INCIDENT, KEY))
    mutated = _mutate(outer, data.draw)
    resign = data.draw(st.booleans())
    if resign and isinstance(mutated, dict) and isinstance(mutated.get("body"), bytes):
        mutated["sig"] = KEY.sign(mutated["body"])  # a trusted node with a bug signs what it wrote
    try:
        entry = msgspec.msgpack.encode(mutated)
    except (TypeError, ValueError, OverflowError):
        return  # not encodable: it cannot be in a log either
    incident, why = open_entry(entry, TRUSTED)
    assert (incident is None) == bool(why)
    if incident is not None:  # only a complete, correctly signed incident gets through
        assert set(INCIDENT) <= set(incident) and isinstance(incident["incident_id"], str)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_byte_mutations_of_a_valid_entry_never_raise(data: Any) -> None:
    entry = bytearray(data.draw(st.sampled_from([signed_entry("edge-1", INCIDENT, KEY), *BATCH])))
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(entry) - 1))
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if op == "flip":
            entry[at] = data.draw(st.integers(0, 255))
        elif op == "insert":
            entry[at:at] = data.draw(st.binary(min_size=1, max_size=9))
        elif len(entry) > 1:
            del entry[at : at + data.draw(st.integers(1, 4))]
    incident, why = open_entry(bytes(entry), TRUSTED)
    assert (incident is None) == bool(why)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_structural_mutations_of_a_v2_entry_never_raise(data: Any) -> None:
    """Any field of a v2 entry replaced, dropped or nested: rejected with a reason, never an exception;
    what still opens is one of the batch's own incidents (a damaged proof cannot pass another off)."""
    at = data.draw(st.integers(0, len(BATCH) - 1))
    outer = _decode(BATCH[at])
    mutated = _mutate(outer, data.draw)
    if isinstance(mutated, dict) and isinstance(mutated.get("proof"), list) and data.draw(st.booleans()):
        mutated["proof"] = [_mutate(h, data.draw) for h in mutated["proof"]]
    try:
        entry = msgspec.msgpack.encode(mutated)
    except (TypeError, ValueError, OverflowError):
        return
    incident, why = open_entry(entry, TRUSTED)
    assert (incident is None) == bool(why)
    if incident is not None:
        assert incident in [_decode(_decode(e)["body"])["incident"] for e in BATCH]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(data: bytes) -> None:
    incident, why = open_entry(data, TRUSTED)
    assert incident is None and why


def test_snapshots_are_opened_totally() -> None:
    good = _encode({"applied_index": 3, "incidents": [[2, INCIDENT], [3, {"incident_id": "x"}], "junk"]})
    incidents, bad = open_snapshot(good)
    assert incidents == [(2, INCIDENT)]
    assert bad[0][0] == 3 and "no 'timestamp'" in bad[0][1]
    assert bad[1][0] == 0 and "malformed snapshot item" in bad[1][1]
    for junk in (b"\xc1", _encode([1]), _encode({"incidents": 5}), "text"):
        assert open_snapshot(junk)[0] == [] and "malformed snapshot" in open_snapshot(junk)[1][0][1]


def test_trusted_keys_are_plain_base64_ed25519() -> None:
    raw = base64.b64decode(public_key_b64(KEY))
    assert len(raw) == 32
    with pytest.raises(ValueError, match="not a base64 raw Ed25519 public key"):
        parse_public_key("not-a-key")
