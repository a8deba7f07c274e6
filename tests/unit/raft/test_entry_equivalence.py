"""The fast ``open_entry`` gives exactly the answers of the original check (issue 9).

``legacy_entries.py`` is a frozen copy of ``actors/raft/entries.py`` from before the fast path: the oracle.
Both open the same entries (thousands of random valid v1 and v2 entries, random byte mutations, structural
mutations of the outer map, the body, the incident and the proof, entries correctly signed by a trusted
node with a bug, hand-made encodings a generic decoder reads differently from a typed one), and every
(incident, reason) pair must be identical, with the new module's memos warm and cold. Results are
compared by ``repr``: NaN is in the payloads, and ``nan != nan``.
"""

from __future__ import annotations

import datetime
import random
import struct
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from actors.raft import entries
from tests.unit.raft import legacy_entries as legacy

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
BUGGY = Ed25519PrivateKey.from_private_bytes(bytes(range(2, 34)))
TRUSTED: dict[str, Any] = {
    "gw-1": KEY.public_key(),
    "gw-2": BUGGY.public_key(),
    "é-node-✓": OTHER.public_key(),
    "weird": "not a key",  # a broken trust config: both raise inside, and must say the same
}
NODES = ["gw-1", "gw-2", "é-node-✓", "mallory", "weird", "", "x" * 256, "x" * 257]
SIGNERS = {"gw-1": KEY, "gw-2": BUGGY, "é-node-✓": OTHER}

_encode = msgspec.msgpack.encode
VALID: dict[str, Any] = {
    "incident_id": "0123456789abcdef",
    "timestamp": 1_700_000_000.5,
    "type": "NO2_leak",
    "source_node": "gw-1",
    "sensor": "S1",
    "confidence": 0.9731,
    "payload": {"reading": {"value": 87.25, "unit": "ppb", "ts": 1.0}, "location": [1.0, 2.0], "t": None},
}


def _answers_match(data: object, *, cold: bool = False) -> tuple[Any, str]:
    """Opens ``data`` with both implementations (the new one warm, then cold if asked) and asserts the same
    answer; returns it."""
    old = legacy.open_entry(data, TRUSTED)
    new = entries.open_entry(data, TRUSTED)
    assert repr(new) == repr(old), data
    if cold:
        entries._VERIFIED.clear()
        entries._PATHS.clear()
        entries._SIDES.clear()
        entries._RAW_KEYS.clear()
        entries._SIGNED.clear()
        assert repr(entries.open_entry(data, TRUSTED)) == repr(old), data
    return old


# --- random data -------------------------------------------------------------------------------------

_STRINGS = ["", "x", "ppb", "é✓😀", "a/b", "\x00", "NO2_leak", "S1", "gw-1", "x" * 70, "😀" * 20]
_INTS = [0, 1, -1, 7, 2**31, 2**63 - 1, -(2**63), 2**64 - 1, 1_700_000_000]
_FLOATS = [0.0, -0.0, 1.5, 0.9731, 1e308, -1e-308, float("nan"), float("inf"), float("-inf"), 1_700_000_000.5]


def _scalar(rng: random.Random) -> Any:
    kind = rng.randrange(6)
    if kind == 0:
        return (
            rng.choice(_STRINGS)
            if rng.random() < 0.7
            else "".join(rng.choices("ab/é😀\x7f ", k=rng.randrange(9)))
        )
    if kind == 1:
        return rng.choice(_INTS) if rng.random() < 0.5 else rng.randrange(-(10**6), 10**6)
    if kind == 2:
        return rng.choice(_FLOATS) if rng.random() < 0.5 else rng.uniform(-1e6, 1e6)
    return [True, False, None][kind - 3]


def _plain(rng: random.Random, depth: int, limit: int) -> Any:
    """Plain data at ``depth`` (the incident is 0), containers no deeper than ``limit``."""
    if depth >= limit or rng.random() < 0.45:
        return _scalar(rng)
    if rng.random() < 0.5:
        return [_plain(rng, depth + 1, limit) for _ in range(rng.randrange(4))]
    return {rng.choice(_STRINGS): _plain(rng, depth + 1, limit) for _ in range(rng.randrange(4))}


def _chain(depth: int, leaf: Any, rng: random.Random) -> Any:
    """A payload (depth 1) whose innermost container sits at ``depth`` and holds ``leaf`` (if not None)."""
    inner: Any = [] if leaf is None else [leaf]
    if rng.random() < 0.5:
        inner = {} if leaf is None else {"k": leaf}
    for _ in range(depth - 1):
        inner = {"n": inner} if rng.random() < 0.5 else [inner]
    return inner if isinstance(inner, dict) else {"wrapped": inner}


def _iid(rng: random.Random) -> Any:
    return rng.choice(
        [
            f"{rng.randrange(10**9):09d}-{rng.randrange(10**5)}",
            "x" * 200,  # the longest id
            "x" * 201,
            "é" * 100,  # 200 bytes in 100 characters
            "é" * 101,
            "😀" * 50,  # 200 bytes in 50 characters
            "😀" * 51,
            "a/b",
            "",
            "ok",
        ]
    )


def _incident(rng: random.Random) -> dict[str, Any]:
    """A realistic incident, sometimes with an edge value (long ids, ints for floats, deep payloads)."""
    seq = rng.randrange(10**6)
    incident: dict[str, Any] = {
        "incident_id": _iid(rng) if rng.random() < 0.3 else f"{seq:08d}-{rng.randrange(10**6)}",
        "timestamp": rng.choice([1_700_000_000.0 + seq, 1_700_000_000 + seq, rng.choice(_FLOATS)]),
        "type": rng.choice(["NO2_leak", "CO_leak", ""]),
        "source_node": rng.choice(["gw-1", "edge-2", ""]),
        "sensor": f"S{seq % 5 + 1}",
        "confidence": rng.choice([0.9731, 1, 0, rng.random(), rng.choice(_FLOATS)]),
        "payload": {
            "reading": {"value": 87.25, "unit": "ppb", "ts": 1_700_000_000.0 + seq},
            "location": [160.0, 170.0],
            "pollutant": "NO2",
            "model_version": "1.0.0",
            "degraded": rng.random() < 0.5,
            "ingested_at": rng.choice([None, 1_700_000_000.25]),
        },
    }
    roll = rng.random()
    if roll < 0.3:
        incident["payload"]["extra"] = _plain(rng, 2, rng.randrange(2, 19))
    elif roll < 0.5:  # around the depth limit: an empty or a non-empty container at depth 15..17
        leaf: Any = rng.choice([None, 1, None, [], {}, "s"])
        incident["payload"] = _chain(rng.randrange(14, 18), leaf, rng)
    if rng.random() < 0.1:
        incident[rng.choice(["extra", "zone", "é"])] = _plain(rng, 1, 4)
    return incident


def _v2_entries(bodies: list[bytes], key: Ed25519PrivateKey) -> list[bytes]:
    """v2 entries over ANY bodies, correctly signed (as a trusted node with a bug would write them)."""
    root, proofs = legacy._tree([legacy._leaf(b) for b in bodies])
    sig = key.sign(legacy._signed_message(len(bodies), root))
    return [
        _encode({"v": 2, "body": b, "pos": i, "n": len(bodies), "proof": p, "sig": sig})
        for i, (b, p) in enumerate(zip(bodies, proofs, strict=True))
    ]


def _v1_entry(body: bytes, key: Ed25519PrivateKey) -> bytes:
    return _encode({"v": 1, "body": body, "sig": key.sign(body)})


def _random_batch(rng: random.Random) -> list[bytes]:
    node = rng.choice(["gw-1", "gw-1", "gw-2", "é-node-✓"])
    incidents = [_incident(rng) for _ in range(rng.choice([1, 2, 3, 5, 7, 8, 16, 17, rng.randrange(1, 70)]))]
    return entries.signed_batch(node, incidents, SIGNERS[node])


_HOSTILE: list[Callable[[random.Random], Any]] = [
    lambda r: None,
    lambda r: True,
    lambda r: r.choice(_INTS),
    lambda r: r.choice([2.0, 1.0, 0.0, float("nan")]),
    lambda r: r.choice(_STRINGS),
    lambda r: r.choice([b"", b"\x00" * 32, b"\x00" * 64, b"\xc1", b"\x00" * 31]),
    lambda r: [1],
    lambda r: [b"\x00" * 32] * r.randrange(14),
    lambda r: {"a": 1},
    lambda r: {1: 2},
    lambda r: {(1, 2): "tuple key"},
    lambda r: [[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]],
    lambda r: msgspec.msgpack.Ext(r.randrange(-128, 128), b"x"),
    lambda r: datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),  # the timestamp ext (-1)
    lambda r: r.choice(NODES),
    lambda r: _plain(r, 1, 5),
]


def _hostile(rng: random.Random) -> Any:
    return rng.choice(_HOSTILE)(rng)


def _mutate(value: Any, rng: random.Random, depth: int = 0) -> Any:
    """One structural mutation of a decoded value: a part replaced, dropped, added, or mutated in place;
    a bytes value that is msgpack (the body) is decoded, mutated and encoded again."""
    if isinstance(value, dict) and value and rng.random() < 0.8:
        out = dict(value)
        key = rng.choice(list(out))
        op = rng.choice(["replace", "drop", "add", "recurse", "recurse"])
        if op == "drop":
            del out[key]
        elif op == "replace":
            out[key] = _hostile(rng)
        elif op == "add":
            out[rng.choice([*_STRINGS, "v", "pos", "n", "proof", "sig", "body", "node", 3])] = _hostile(rng)
        else:
            out[key] = _mutate(out[key], rng, depth + 1)
        return out
    if isinstance(value, list) and value and rng.random() < 0.7:
        out_list = list(value)
        at = rng.randrange(len(out_list))
        op = rng.choice(["replace", "drop", "recurse", "append"])
        if op == "drop":
            del out_list[at]
        elif op == "replace":
            out_list[at] = _hostile(rng)
        elif op == "append":
            out_list.append(rng.choice([out_list[at], _hostile(rng)]))
        else:
            out_list[at] = _mutate(out_list[at], rng, depth + 1)
        return out_list
    if isinstance(value, bytes) and value and rng.random() < 0.7:
        try:
            inner = msgspec.msgpack.decode(value)
        except (msgspec.DecodeError, UnicodeDecodeError):
            inner = None
        if isinstance(inner, dict):
            return _encode(_mutate(inner, rng, depth + 1))
        if len(value) in (entries.HASH_BYTES, entries.SIGNATURE_BYTES):  # a hash or a signature
            at = rng.randrange(len(value))
            return value[:at] + bytes([value[at] ^ (1 << rng.randrange(8))]) + value[at + 1 :]
    return _hostile(rng)


def _encodable(value: Any) -> bytes | None:
    try:
        return _encode(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _byte_mutations(entry: bytes, rng: random.Random) -> bytes:
    data = bytearray(entry)
    for _ in range(rng.randrange(1, 6)):
        at = rng.randrange(len(data))
        op = rng.randrange(3)
        if op == 0:
            data[at] = rng.randrange(256)
        elif op == 1:
            data[at:at] = rng.randbytes(rng.randrange(1, 9))
        elif len(data) > 1:
            del data[at : at + rng.randrange(1, 5)]
    return bytes(data)


# --- the tests -------------------------------------------------------------------------------------


def _tally(answers: Iterator[tuple[Any, str]]) -> tuple[int, int]:
    opened = rejected = 0
    for incident, _ in answers:
        opened += incident is not None
        rejected += incident is None
    return opened, rejected


def test_random_valid_batches_open_identically_warm_and_cold() -> None:
    rng = random.Random(9001)
    batches = [_random_batch(rng) for _ in range(170)]
    cases = [entry for batch in batches for entry in batch]
    assert len(cases) >= 2000
    opened, rejected = _tally(_answers_match(entry, cold=i % 7 == 0) for i, entry in enumerate(cases))
    # both kinds really happen: most open, and the edge values (long ids, NaN, depth 17) are rejected
    assert opened > len(cases) // 2 and rejected > 50, (opened, rejected)


def _fast(data: bytes) -> tuple[Any, str] | None:
    """The fast path's own answer (None: undecided; raising is undecided too, open_entry falls back)."""
    try:
        return entries._open_v2_fast(data, TRUSTED)
    except Exception:
        return None


def test_the_fast_path_really_decides_valid_v2_entries() -> None:
    """The comparison above is not vacuous: the fast path answers a valid entry and a bad batch signature
    itself, and hands v1 and anything malformed to the original check."""
    realistic = entries.signed_batch("gw-1", [{**VALID, "incident_id": f"f-{i}"} for i in range(40)], KEY)
    assert [_fast(e) for e in realistic] == [legacy.open_entry(e, TRUSTED) for e in realistic]
    assert all(legacy.open_entry(e, TRUSTED)[0] is not None for e in realistic)
    rng = random.Random(7)  # random incidents: some too deep for the fast path, some invalid
    batch = entries.signed_batch("gw-1", [_incident(rng) for _ in range(40)], KEY)
    decided = [_fast(e) for e in batch]
    assert sum(d is not None and d[0] is not None for d in decided) >= 10
    for entry, fast in zip(batch, decided, strict=True):
        if fast is not None:
            assert repr(fast) == repr(legacy.open_entry(entry, TRUSTED))
    outer = msgspec.msgpack.decode(realistic[0])
    forged = _encode({**outer, "sig": bytes(64)})
    fast = entries._open_v2_fast(forged, TRUSTED)
    assert fast is not None and "batch signature does not verify against 'gw-1'" in fast[1]
    assert fast == legacy.open_entry(forged, TRUSTED)
    v1 = entries.signed_entry("gw-1", VALID, KEY)
    for undecided in (v1, _encode({**outer, "extra": 1})):  # v1 and a malformed v2: open_entry falls back
        with pytest.raises(msgspec.ValidationError):
            entries._open_v2_fast(undecided, TRUSTED)
    assert entries.open_entry(v1, TRUSTED) == (VALID, "")
    assert entries._open_v2_fast(_encode({**outer, "v": 1}), TRUSTED) is None  # v1 shaped as v2


@pytest.mark.parametrize("seed", range(4))
def test_structural_mutations_of_v1_and_v2_entries_answer_identically(seed: int) -> None:
    rng = random.Random(seed)
    answers = []
    for round_ in range(900):
        batch = _random_batch(rng)
        node = rng.choice(["gw-1", "gw-2"])
        kind = rng.randrange(4)
        if kind == 0:  # the outer map of a v2 entry
            data = _encodable(_mutate(msgspec.msgpack.decode(rng.choice(batch)), rng))
        elif kind == 1:  # a v1 entry, re-signed or not after the mutation
            entry = entries.signed_entry(node, _incident(rng), SIGNERS[node])
            mutated = _mutate(msgspec.msgpack.decode(entry), rng)
            if rng.random() < 0.5 and isinstance(mutated, dict) and isinstance(mutated.get("body"), bytes):
                mutated["sig"] = SIGNERS[node].sign(mutated["body"])
            data = _encodable(mutated)
        elif kind == 2:  # a trusted node with a bug signs a batch of damaged bodies
            bodies = [_encodable(_mutate({"node": node, "incident": _incident(rng)}, rng)) for _ in range(5)]
            good = [b for b in bodies if b is not None]
            data = rng.choice(_v2_entries(good, SIGNERS[node])) if good else None
        else:  # the same bodies, one v1 entry each
            body = _encodable(_mutate({"node": node, "incident": _incident(rng)}, rng))
            data = _v1_entry(body, SIGNERS[node]) if body is not None else None
        if data is not None:
            answers.append(_answers_match(data, cold=round_ % 5 == 0))
    opened, rejected = _tally(iter(answers))
    assert len(answers) > 800 and opened > 50 and rejected > 300, (len(answers), opened, rejected)


@pytest.mark.parametrize("seed", range(3))
def test_byte_mutations_of_v1_and_v2_entries_answer_identically(seed: int) -> None:
    rng = random.Random(100 + seed)
    pool = [*_random_batch(rng), *_random_batch(rng), entries.signed_entry("gw-1", _incident(rng), KEY)]
    answers = []
    for round_ in range(1200):
        if round_ % 100 == 0:
            pool = [*_random_batch(rng), entries.signed_entry("gw-2", _incident(rng), BUGGY)]
        answers.append(_answers_match(_byte_mutations(rng.choice(pool), rng), cold=round_ % 9 == 0))
    opened, rejected = _tally(iter(answers))
    assert rejected > 1000, (opened, rejected)


def _map(pairs: list[tuple[Any, Any]]) -> bytes:
    """A msgpack map written by hand: duplicate or non-string keys, in any order."""
    header = bytes([0x80 | len(pairs)]) if len(pairs) < 16 else b"\xde" + struct.pack(">H", len(pairs))
    return header + b"".join(_encode(k) + _encode(v) for k, v in pairs)


def test_hand_made_encodings_answer_identically() -> None:
    """What a typed decoder could read differently from the generic one: duplicate keys (the last wins),
    binary keys, trailing bytes, a float or bool where an int is, a body or incident with an extra key,
    invalid UTF-8 in a field the typed decoder would otherwise skip, containers at the depth limit."""
    rng = random.Random(5)
    incidents = [{**VALID, "incident_id": f"hand-{i}"} for i in range(3)]
    batch = entries.signed_batch("gw-1", incidents, KEY)
    outer = msgspec.msgpack.decode(batch[1])
    pairs = list(outer.items())
    bad_utf8 = b"\xa2\xff\xfe"  # a 2-byte str that is not UTF-8
    cases: list[bytes] = [
        _map([*pairs, ("v", 2)]),
        _map([("v", 1), *pairs]),  # v 1 first, then v 2: the last wins
        _map([*pairs, ("v", 1)]),
        _map([*pairs, ("pos", 0)]),
        _map([*pairs, ("pos", outer["pos"])]),
        _map([("pos", "x"), *pairs]),  # an invalid value overwritten by a valid one
        _map([*pairs, ("sig", bytes(64))]),
        _map([(k.encode(), v) for k, v in pairs]),  # binary keys
        _map([*pairs[:-1], (pairs[-1][0].encode(), pairs[-1][1])]),
        batch[1] + b"\x00",
        batch[1] + _encode({"v": 2}),
        _map([*pairs, ("v", 2.0)]),
        _map([*pairs, ("v", True)]),
        _map([*pairs, ("n", float(outer["n"]))]),
        _map([*pairs, ("pos", True)]),
        _map([*pairs, ("extra", 1)]),
        _map([*pairs, (1, 1)]),
        _encode({**outer, "proof": tuple(outer["proof"])}),
        _encode({**outer, "body": bytearray(outer["body"])}),
        bytes(bytearray(batch[1])),
    ]
    # an extra key holding invalid UTF-8: the generic decoder rejects the whole entry
    cases.append(
        _map(pairs)[:0] + bytes([0x80 | (len(pairs) + 1)]) + _map(pairs)[1:] + _encode("x") + bad_utf8
    )
    body_pairs = [("node", "gw-1"), ("incident", incidents[0])]
    body_variants = [
        _map(body_pairs),
        _map([*body_pairs, ("node", "gw-1")]),
        _map([("node", "mallory"), *body_pairs]),
        _map([*body_pairs, ("node", "mallory")]),
        _map([*body_pairs, ("extra", 1)]),
        bytes([0x83]) + _map(body_pairs)[1:] + _encode("x") + bad_utf8,
        _map([*body_pairs, (b"node", "gw-1")]),
        _map(body_pairs) + b"\xc0",
        _encode(
            {"node": "gw-1", "incident": {**incidents[0], "payload": {"t": datetime.datetime(2026, 1, 1)}}}
        ),
    ]
    # every depth, around FAST_DEPTH (the fast path's own limit) and MAX_DEPTH (the check's): plain leaves,
    # empty containers, and what is not plain data (bytes, ext, a timestamp, a non-string key)
    for depth in range(1, 19):
        leaves: list[Any] = [None, 0, "s", [], {}, b"raw", msgspec.msgpack.Ext(3, b"x"), {7: 1}]
        leaves.append(datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
        for leaf in leaves:
            payload = _chain(depth, leaf, rng)
            body_variants.append(_encode({"node": "gw-1", "incident": {**incidents[0], "payload": payload}}))
    for body in body_variants:
        cases.extend(_v2_entries([body, batch[0]], KEY))
        cases.append(_v1_entry(body, KEY))
    not_bytes: list[object] = [b"", "text", bytearray(batch[1]), memoryview(batch[1]), None]
    answers = [_answers_match(data, cold=True) for data in [*cases, *not_bytes, b"\x00" * 300_000]]
    opened, rejected = _tally(iter(answers))
    assert opened > 10 and rejected > 30, (opened, rejected)


def test_every_proof_shape_up_to_40_answers_identically() -> None:
    """Each entry of each batch size up to 40, and each with its proof cut, extended, or given the wrong
    pos or n: the precomputed path sides (the fast path) against the original walk."""
    rng = random.Random(11)
    for size in range(1, 41):
        batch = entries.signed_batch("gw-1", [_incident(rng) for _ in range(size)], KEY)
        for entry in batch:
            outer = msgspec.msgpack.decode(entry)
            _answers_match(entry)
            proof = outer["proof"]
            for change in (
                {"proof": proof[:-1]},
                {"proof": [*proof, proof[0] if proof else bytes(32)]},
                {"pos": (outer["pos"] + 1) % size},
                {"n": size + 1},
                {"n": max(size - 1, 1)},
                {"proof": proof[::-1]},
            ):
                _answers_match(_encode({**outer, **change}))
