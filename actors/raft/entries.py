"""Incident entries of the Raft log: how a node signs them, and the TOTAL check every replica applies.

One incident per entry (the API's ``index`` is the Raft index). Two versions, both valid forever (committed
logs hold them):

- v1: ``msgpack({"v": 1, "body": msgpack({"node", "incident"}), "sig": Ed25519(body)})``.
- v2 (what replicas propose): the incidents a node proposes in one go are signed ONCE. Each entry is
  ``msgpack({"v": 2, "body", "pos": i, "n": B, "proof": [sibling hashes], "sig"})`` where ``sig`` is
  Ed25519 over ``b"garrison-batch-v2" + B (8 bytes) + root`` and ``root`` is the RFC 9162 Merkle tree
  hash of the batch's bodies with domain-separated hashes (``sha256(b"garrison-leaf" + body)``,
  ``sha256(b"garrison-node" + left + right)``): a leaf can never pass for an inner node. ``proof`` is the
  body's inclusion path (RFC 9162 2.1.3), so each entry is checked on its own: the root it implies must
  carry a valid signature of the node its body names. One Ed25519 verify (~175 us) then covers a whole
  batch instead of one per entry, which was ~half of a follower's CPU when pipelining.

Verified signatures are memoised (:func:`_signature_ok`): a bounded in-process cache of (public key,
batch size, root, sig) whose Ed25519 verify returned True. It is a pure function's memo, seeded only with
the same True that verify would return (signatures this process made with the matching private key), so
the answer never depends on it: a replica with a warm cache and one just started give identical answers.

The entries a process signed are memoised too (:func:`_open_own`: entry bytes -> node, signer's raw public
key, body): the leader applying its own proposals checks only what does not follow from having built them
(the size, that the node's trusted key is the signer's, the incident's schema), ~6 instead of ~14 us an
entry. Bounded like the others, and it only ever accepts what the full check accepts.

Two paths, one answer (issue 9: checking entries was ~half of a follower's CPU when pipelining). A v2
entry is first opened by :func:`_open_v2_fast`: msgspec decodes the outer map and the body straight into
types that already prove what the generic checks check one by one (field types, sizes, ranges, and an
incident of plain data nested at most FAST_DEPTH deep), so what is left in Python is the Merkle path, the
required fields and the signature. The fast path only ever ACCEPTS, or rejects a bad batch signature once
every check before it is known to pass; anything else (v1, a failed decode, a missing field, an extra
key, a schema error) goes to :func:`_open`, the original check, which builds the exact reason. A test
(``tests/unit/raft/test_entry_equivalence.py``) holds both to the answers of a frozen copy of the
original on thousands of random and mutated entries.

Why total: a committed entry stays in the log and is applied again at every boot (``applied`` restarts at
the snapshot). If checking it raised, the replica would crash on it at every start, forever, and take the
node down with it. So :func:`open_entry` never raises: whatever the bytes are, it returns the incident or
the reason for rejecting it. The decision depends only on the entry and the trusted keys (no clock, no
local state), so every replica rejects the same entries with the same reasons, and the replicated state
machines stay equal.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from actors.raft.node_keys import verify

__all__ = [
    "MAX_BATCH",
    "MAX_ENTRY_BYTES",
    "REQUIRED_FIELDS",
    "open_entry",
    "open_snapshot",
    "signed_batch",
    "signed_entry",
]

_encode = msgspec.msgpack.Encoder(order="deterministic").encode
_decode = msgspec.msgpack.decode

# An incident is ~500 bytes; a bound keeps decoding a hostile entry cheap and its cost the same everywhere.
MAX_ENTRY_BYTES = 256 * 1024
# incident_id is part of an LMDB key (``raft/<replica>/applied/<id>``); LMDB keys are at most 511 bytes
MAX_ID_BYTES = 200
MAX_NAME_CHARS = 256  # a node name
MAX_DEPTH = 16  # of the incident's nested payload
SIGNATURE_BYTES = 64  # Ed25519
HASH_BYTES = 32  # SHA-256
# Entries signed together (v2). A proposer signs at most this many at once; a proof for a batch this big has
# at most MAX_PROOF hashes, so a longer proof list is rejected before any hashing.
MAX_BATCH = 4096
MAX_PROOF = 12  # ceil(log2(MAX_BATCH))
_LEAF, _NODE, _ROOT = b"garrison-leaf", b"garrison-node", b"garrison-batch-v2"
_LEAF_STATE = hashlib.sha256(_LEAF)  # copied by _leaf, never updated itself
# (public key, n, root, sig) whose verify returned True; bounded: oldest dropped first (dicts keep order)
_VERIFIED: dict[tuple[bytes, int, bytes, bytes], None] = {}
VERIFIED_CACHE_SIZE = 4096
_PATHS: dict[bytes, bytes] = {}  # left + right -> inner node hash (see _path_node)
PATH_CACHE_SIZE = 8192
_RAW_KEYS: dict[int, tuple[Any, bytes]] = {}  # id(public key) -> (the key, its raw bytes): see _raw_key
RAW_KEYS_CACHE_SIZE = 64
_SIDES: dict[tuple[int, int], tuple[bool, ...]] = {}  # see _sides
SIDES_CACHE_SIZE = 8192
# Entries this process signed: entry bytes -> (node, raw public key of the signer, body). See _open_own.
_SIGNED: dict[bytes, tuple[str, bytes, bytes]] = {}
SIGNED_CACHE_SIZE = 8192
# The fields every incident carries (as the inference actor writes them) and their types.
REQUIRED_FIELDS: dict[str, tuple[type, ...]] = {
    "incident_id": (str,),
    "timestamp": (int, float),
    "type": (str,),
    "source_node": (str,),
    "sensor": (str,),
    "confidence": (int, float),
    "payload": (dict,),
}
_TYPE_NAMES = {str: "a string", int: "a number", float: "a number", dict: "a map"}


class _Rejected(Exception):
    """Internal: the reason an entry is rejected."""


def signed_entry(node: str, incident: dict[str, Any], key: Ed25519PrivateKey) -> bytes:
    """The v1 log entry for ``incident``, proposed by ``node`` and signed with its key (one signature per
    entry; replicas propose with :func:`signed_batch`)."""
    body = _encode({"node": node, "incident": incident})
    return _encode({"v": 1, "body": body, "sig": key.sign(body)})


def signed_batch(node: str, incidents: Sequence[dict[str, Any]], key: Ed25519PrivateKey) -> list[bytes]:
    """The v2 log entries for ``incidents`` (one each, in order), proposed by ``node``, with ONE Ed25519
    signature over the Merkle root of their bodies. Raises ValueError past MAX_BATCH: split the batch."""
    if not 0 < len(incidents) <= MAX_BATCH:
        raise ValueError(f"a signed batch holds 1..{MAX_BATCH} incidents, not {len(incidents)}: split it")
    bodies = [_encode({"node": node, "incident": incident}) for incident in incidents]
    root, proofs = _tree([_leaf(body) for body in bodies])
    n = len(bodies)
    sig = key.sign(_signed_message(n, root))
    # the matching public key verifies this signature: the memo's answer is verify's answer
    raw = key.public_key().public_bytes_raw()
    _remember(raw, n, root, sig)
    signed = [
        _encode({"v": 2, "body": body, "pos": pos, "n": n, "proof": proof, "sig": sig})
        for pos, (body, proof) in enumerate(zip(bodies, proofs, strict=True))
    ]
    for entry, body in zip(signed, bodies, strict=True):
        if len(_SIGNED) >= SIGNED_CACHE_SIZE:
            del _SIGNED[next(iter(_SIGNED))]
        _SIGNED[entry] = (node, raw, body)
    return signed


def open_entry(data: object, trusted: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The incident in an entry (v1 or v2), or None and why it is rejected (the same answer on every
    replica, whatever its signature memo holds). Never raises: see the module docstring."""
    try:
        fast = _open_own(data, trusted) or _open_v2_fast(data, trusted)
    except Exception:  # the fast paths do not explain: the original check below does
        fast = None
    if fast is not None:
        return fast
    try:
        return _open(data, trusted), ""
    except _Rejected as exc:
        return None, str(exc)
    except Exception as exc:  # a case the checks below missed: still a rejection, never a crash
        return None, f"malformed entry: {type(exc).__name__}: {str(exc)[:200]}"


def open_snapshot(data: object) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, str]]]:
    """The (raft index, incident) pairs of a state-machine snapshot, and the (index, reason) of those it
    holds that are not incidents. Never raises: a snapshot that is not one at all is one rejection at
    index 0. Its incidents were verified when their entries were applied, so only the schema is checked."""
    try:
        if not isinstance(data, bytes):
            raise _Rejected(f"malformed snapshot: data is {type(data).__name__}, not bytes")
        doc = _msgpack(data, "snapshot")
        items = doc.get("incidents") if isinstance(doc, dict) else None
        if not isinstance(items, list):
            raise _Rejected("malformed snapshot: no list of incidents")
    except _Rejected as exc:
        return [], [(0, str(exc))]
    except Exception as exc:
        return [], [(0, f"malformed snapshot: {type(exc).__name__}: {str(exc)[:200]}")]
    return check_snapshot_items(items)


def check_snapshot_items(
    items: list[Any],
) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, str]]]:
    """The (raft index, incident) pairs among a snapshot's ``[raft_index, incident]`` items (one piece of a
    snapshot file, or an inline snapshot's list), and the (index, reason) of the others. Never raises."""
    good: list[tuple[int, dict[str, Any]]] = []
    bad: list[tuple[int, str]] = []
    for item in items:
        if not (isinstance(item, list) and len(item) == 2 and type(item[0]) is int and item[0] > 0):
            bad.append((0, f"malformed snapshot item: {_short(item)}"))
            continue
        try:
            good.append((item[0], check_incident(item[1])))
        except _Rejected as exc:
            bad.append((item[0], str(exc)))
        except Exception as exc:
            bad.append((item[0], f"malformed snapshot item: {type(exc).__name__}: {str(exc)[:200]}"))
    return good, bad


def _open(data: object, trusted: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(data, bytes):
        raise _Rejected(f"malformed entry: data is {type(data).__name__}, not bytes")
    if len(data) > MAX_ENTRY_BYTES:
        raise _Rejected(f"malformed entry: {len(data)} bytes, more than {MAX_ENTRY_BYTES}")
    outer = _msgpack(data, "entry")
    if not isinstance(outer, dict):
        raise _Rejected(f"malformed entry: not a map but {type(outer).__name__}")
    version = outer.get("v")
    # compared with ==, as before v2 existed: an entry committed with v 1.0 still opens as v1
    if isinstance(version, bool) or version not in (1, 2):
        raise _Rejected(f"malformed entry: unknown version {_short(version)}")
    body_bytes, sig = outer.get("body"), outer.get("sig")
    if not isinstance(body_bytes, bytes):
        raise _Rejected(f"malformed entry: body is {_kind(body_bytes)}, not bytes")
    if not isinstance(sig, bytes) or len(sig) != SIGNATURE_BYTES:
        raise _Rejected(f"malformed entry: sig is {_kind(sig)}, not {SIGNATURE_BYTES} bytes")
    body = _msgpack(body_bytes, "body")
    if not isinstance(body, dict):
        raise _Rejected(f"malformed entry: body is not a map but {type(body).__name__}")
    node, incident = body.get("node"), body.get("incident")
    if not isinstance(node, str) or not node or len(node) > MAX_NAME_CHARS:
        raise _Rejected(f"malformed entry: node is {_short(node)}, not a node name")
    # signature before schema: a forged or untrusted entry is rejected as such whatever it claims
    public = trusted.get(node)
    label = _label(incident)
    if public is None:
        raise _Rejected(f"entry {label} signed by {node!r}, which has no trusted key")
    if version == 1:
        if not verify(public, sig, body_bytes):
            raise _Rejected(f"entry {label}: signature does not verify against {node!r}'s key")
    else:
        n, root = _batch_root(outer, body_bytes, label)
        if not _signature_ok(public, n, root, sig):
            raise _Rejected(f"entry {label}: batch signature does not verify against {node!r}'s key")
    return check_incident(incident, label)


def _batch_root(outer: dict[Any, Any], body: bytes, label: str) -> tuple[int, bytes]:
    """The batch size and the Merkle root that a v2 entry's body and proof imply (RFC 9162 2.1.3.2)."""
    pos, n, proof = outer.get("pos"), outer.get("n"), outer.get("proof")
    if type(n) is not int or not 0 < n <= MAX_BATCH:
        raise _Rejected(f"malformed entry {label}: n is {_short(n)}, not 1..{MAX_BATCH}")
    if type(pos) is not int or not 0 <= pos < n:
        raise _Rejected(f"malformed entry {label}: pos is {_short(pos)}, not 0..{n - 1}")
    if not isinstance(proof, list) or len(proof) > MAX_PROOF:
        raise _Rejected(f"malformed entry {label}: proof is {_kind(proof)}, not a list of <= {MAX_PROOF}")
    if not all(isinstance(h, bytes) and len(h) == HASH_BYTES for h in proof):
        raise _Rejected(f"malformed entry {label}: proof holds something other than {HASH_BYTES}-byte hashes")
    sides = _sides(pos, n)
    if len(proof) > len(sides):
        raise _Rejected(f"malformed entry {label}: proof longer than the path of {pos} in {n}")
    if len(proof) < len(sides):
        raise _Rejected(f"malformed entry {label}: proof shorter than the path of {pos} in {n}")
    return n, _proof_root(body, proof, sides)


def _proof_root(body: bytes, proof: list[bytes], sides: tuple[bool, ...]) -> bytes:
    """The root that ``body``'s leaf and its inclusion ``proof`` imply, ``sides`` saying at each level
    whether the proof's hash is the left child (:func:`_sides`)."""
    root, paths = _leaf(body), _PATHS
    for sibling, on_left in zip(proof, sides, strict=True):
        pair = sibling + root if on_left else root + sibling
        parent = paths.get(pair)
        root = _path_pair(pair) if parent is None else parent
    return root


def _signature_ok(public: Any, n: int, root: bytes, sig: bytes) -> bool:
    """verify(public, sig, message of (n, root)), memoised: see the module docstring."""
    raw = _raw_key(public)
    if (raw, n, root, sig) in _VERIFIED:
        return True
    if not verify(public, sig, _signed_message(n, root)):
        return False
    _remember(raw, n, root, sig)
    return True


def _raw_key(public: Any) -> bytes:
    """``public.public_bytes_raw()`` (~1 us, once per entry), memoised by the key object: the cached pair
    holds the object, so its id cannot be reused by another key while cached; keys are immutable."""
    cached = _RAW_KEYS.get(id(public))
    if cached is not None and cached[0] is public:
        return cached[1]
    raw: bytes = public.public_bytes_raw()
    if len(_RAW_KEYS) >= RAW_KEYS_CACHE_SIZE:
        _RAW_KEYS.clear()
    _RAW_KEYS[id(public)] = (public, raw)
    return raw


def _remember(raw: bytes, n: int, root: bytes, sig: bytes) -> None:
    if len(_VERIFIED) >= VERIFIED_CACHE_SIZE:
        del _VERIFIED[next(iter(_VERIFIED))]
    _VERIFIED[(raw, n, root, sig)] = None


def _signed_message(n: int, root: bytes) -> bytes:
    return _ROOT + n.to_bytes(8, "big") + root


def _leaf(body: bytes) -> bytes:
    """``sha256(b"garrison-leaf" + body)``: the prefix is hashed once and the state copied (no concatenation
    of the ~300-byte body; ~0.3 us an entry)."""
    leaf = _LEAF_STATE.copy()
    leaf.update(body)
    return leaf.digest()


def _path_node(left: bytes, right: bytes) -> bytes:
    """The inner node ``sha256(b"garrison-node" + left + right)``, memoised while checking proofs: the
    entries of one batch share their upper path (a batch of B has B - 1 inner nodes, and checking its B
    proofs one by one would hash ~B log2 B). SHA-256 is pure, so the memo changes no answer; it is emptied
    when full."""
    pair = left + right
    parent = _PATHS.get(pair)
    return _path_pair(pair) if parent is None else parent


def _path_pair(pair: bytes) -> bytes:
    """The inner node over ``pair`` (left + right), hashed and remembered: a miss of :func:`_path_node`."""
    if len(_PATHS) >= PATH_CACHE_SIZE:
        _PATHS.clear()
    parent = _PATHS[pair] = hashlib.sha256(_NODE + pair).digest()
    return parent


def _tree(leaves: list[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The RFC 9162 Merkle tree hash of ``leaves`` (>= 1) and each leaf's inclusion proof (bottom up). Its
    inner nodes go to the path memo: the signer (the leader) then checks its own entries' proofs without
    hashing them again."""
    if len(leaves) == 1:
        return leaves[0], [[]]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)  # the largest power of two below len(leaves)
    left, left_proofs = _tree(leaves[:k])
    right, right_proofs = _tree(leaves[k:])
    return _path_node(left, right), [[*p, right] for p in left_proofs] + [[*p, left] for p in right_proofs]


def check_incident(incident: object, label: str = "") -> dict[str, Any]:
    """``incident`` if it has the incident schema (also used for a snapshot's incidents)."""
    where = f"entry {label or _label(incident)}"
    if not isinstance(incident, dict):
        raise _Rejected(f"{where}: incident is {_kind(incident)}, not a map")
    for name, types in REQUIRED_FIELDS.items():
        if name not in incident:
            raise _Rejected(f"{where}: incident has no {name!r}")
        value = incident[name]
        if isinstance(value, bool) or not isinstance(value, types):
            raise _Rejected(f"{where}: incident {name!r} is {_kind(value)}, not {_TYPE_NAMES[types[0]]}")
        if isinstance(value, float) and not math.isfinite(value):
            raise _Rejected(f"{where}: incident {name!r} is {value!r}, not a finite number")
    iid = incident["incident_id"]
    if not iid or len(iid.encode("utf-8", errors="replace")) > MAX_ID_BYTES or "/" in iid:
        raise _Rejected(f"{where}: incident_id must be 1..{MAX_ID_BYTES} bytes without '/'")
    _check_tree(incident, where, 0)
    return incident


# a tuple, not ``str | int | ...``: isinstance against a union is ~7x slower, and this runs for every value
# of every applied incident
_SCALARS = (str, int, float, bool)


def _check_tree(value: object, where: str, depth: int) -> None:
    """Plain data only (what every sink can serialize): maps with string keys, lists, strings, numbers."""
    if depth > MAX_DEPTH:
        raise _Rejected(f"{where}: incident nested deeper than {MAX_DEPTH}")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Rejected(f"{where}: incident has a key of type {type(key).__name__}")
            if depth >= MAX_DEPTH or not isinstance(item, _SCALARS):  # a leaf above the limit is fine
                _check_tree(item, where, depth + 1)
    elif isinstance(value, list):
        for item in value:
            if depth >= MAX_DEPTH or not isinstance(item, _SCALARS):
                _check_tree(item, where, depth + 1)
    elif not (value is None or isinstance(value, _SCALARS)):
        raise _Rejected(f"{where}: incident holds {type(value).__name__}, not plain data")


# --- the fast path of v2 entries (see the module docstring) ---------------------------------------------


# The fast path decodes incidents nested up to this deep (a value at depth FAST_DEPTH is a scalar; the
# incident is at 0, an inference actor's ``payload.reading.value`` at 3); a deeper one, valid or not, takes
# the original check (same answer, slower). Not MAX_DEPTH: msgspec expands a type as a tree, two
# containers a level, so building the decoder costs ~2**depth (16 levels took 4.6 s at import; 6 take ~2 ms).
FAST_DEPTH = 6


def _plain_at(depth: int) -> Any:
    """The type of a value at ``depth`` of an incident (the incident itself is at 0) that _check_tree
    accepts, as msgspec decodes it: the same Python values as the generic decoder gives, but decoding
    fails on anything else (bytes, ext, a non-string key) and on a container at FAST_DEPTH or deeper
    (FAST_DEPTH <= MAX_DEPTH: what decodes is never too deep for _check_tree). Not recursive: the levels
    count the depth."""
    if depth >= FAST_DEPTH:
        return str | int | float | bool | None
    inner = _plain_at(depth + 1)  # a type built at run time: mypy cannot follow it
    return str | int | float | bool | None | list[inner] | dict[str, inner]  # type: ignore[valid-type]


_Hash = Annotated[bytes, msgspec.Meta(min_length=HASH_BYTES, max_length=HASH_BYTES)]


class _EntryV2(msgspec.Struct, forbid_unknown_fields=True):
    """A v2 entry whose fields _open and _batch_root would accept one by one (``v`` and ``pos < n`` are
    checked after decoding). An extra key fails to decode: skipped bytes would not be checked as msgpack."""

    v: int
    body: bytes
    pos: Annotated[int, msgspec.Meta(ge=0)]
    n: Annotated[int, msgspec.Meta(ge=1, le=MAX_BATCH)]
    proof: Annotated[list[_Hash], msgspec.Meta(max_length=MAX_PROOF)]
    sig: Annotated[bytes, msgspec.Meta(min_length=SIGNATURE_BYTES, max_length=SIGNATURE_BYTES)]


if TYPE_CHECKING:

    class _Body(msgspec.Struct):
        node: str
        incident: dict[str, Any]

else:  # the incident's type is built at run time (FAST_DEPTH levels of plain data)
    _Body = msgspec.defstruct(
        "_Body", [("node", str), ("incident", dict[str, _plain_at(1)])], forbid_unknown_fields=True
    )

_decode_entry_v2 = msgspec.msgpack.Decoder(_EntryV2).decode
_decode_body = msgspec.msgpack.Decoder(_Body).decode


def _open_v2_fast(data: object, trusted: dict[str, Any]) -> tuple[dict[str, Any] | None, str] | None:
    """open_entry's answer for a well-formed v2 entry, or None when this path cannot tell (then _open
    decides and says why). It accepts only what _open accepts, and rejects only a batch signature that
    does not verify once every check _open runs before it has passed; raising means None too."""
    if type(data) is not bytes or len(data) > MAX_ENTRY_BYTES:
        return None
    entry = _decode_entry_v2(data)
    body = _decode_body(entry.body)
    node, incident, n, pos, proof = body.node, body.incident, entry.n, entry.pos, entry.proof
    if entry.v != 2 or not node or len(node) > MAX_NAME_CHARS or pos >= n or not _schema_ok(incident):
        return None
    public = trusted.get(node)
    sides = _sides(pos, n)
    if public is None or len(proof) != len(sides):
        return None
    root = _proof_root(entry.body, proof, sides)
    if _signature_ok(public, n, root, entry.sig):
        return incident, ""
    return None, f"entry {_label(incident)}: batch signature does not verify against {node!r}'s key"


def _open_own(data: object, trusted: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """open_entry's answer for an entry this process signed (the leader applying its own proposals), or
    None when this path cannot tell. Its outer map, Merkle path and signature were made here by
    :func:`signed_batch`, so they pass by construction; what is checked is what does not follow from
    them: the size, that ``trusted`` holds the signer's very key for the node, and the incident's schema.
    It only ever accepts what :func:`_open_v2_fast` accepts; the signer then does not decode the outer map,
    walk the path or look the signature up again (~8 of ~14 us an entry)."""
    if type(data) is not bytes or len(data) > MAX_ENTRY_BYTES:
        return None
    own = _SIGNED.get(data)
    if own is None:
        return None
    node, raw, body = own
    public = trusted.get(node)
    if public is None or not node or len(node) > MAX_NAME_CHARS or _raw_key(public) != raw:
        return None
    incident = _decode_body(body).incident
    return (incident, "") if _schema_ok(incident) else None


def _sides(pos: int, n: int) -> tuple[bool, ...]:
    """For each level of the inclusion path of ``pos`` in a batch of ``n``, whether the proof's hash is the
    LEFT child (RFC 9162 2.1.3.2's walk, which depends on (pos, n) only); its length is the proof's length.
    Memoised (a batch's entries share n), emptied when full."""
    sides = _SIDES.get((pos, n))
    if sides is not None:
        return sides
    out: list[bool] = []
    fn, sn = pos, n - 1
    while sn:
        if fn & 1 or fn == sn:
            out.append(True)
            while not fn & 1 and fn:  # the last node of its level was promoted: skip those levels
                fn, sn = fn >> 1, sn >> 1
        else:
            out.append(False)
        fn, sn = fn >> 1, sn >> 1
    if len(_SIDES) >= SIDES_CACHE_SIZE:
        _SIDES.clear()
    sides = _SIDES[(pos, n)] = tuple(out)
    return sides


def _schema_ok(incident: dict[str, Any]) -> bool:
    """Whether check_incident passes an incident decoded as a _Body's (so already plain data, depth
    checked, its values exact built-in types: ``type(x) is int`` excludes bool). False may be wrong (then
    _open decides); True never is."""
    try:
        iid, ts, conf = incident["incident_id"], incident["timestamp"], incident["confidence"]
        kind, source, sensor = incident["type"], incident["source_node"], incident["sensor"]
        payload = incident["payload"]
    except KeyError:
        return False
    return (
        type(iid) is str
        and type(kind) is str
        and type(source) is str
        and type(sensor) is str
        and type(payload) is dict
        and (type(ts) is int or (type(ts) is float and math.isfinite(ts)))
        and (type(conf) is int or (type(conf) is float and math.isfinite(conf)))
        and iid != ""
        and "/" not in iid
        # at most 4 UTF-8 bytes a character: only a long id is encoded
        and (len(iid) <= MAX_ID_BYTES // 4 or len(iid.encode("utf-8", errors="replace")) <= MAX_ID_BYTES)
    )


def _msgpack(data: bytes, what: str) -> Any:
    try:
        return _decode(data)
    except Exception as exc:  # DecodeError, but also UnicodeDecodeError for a str that is not UTF-8
        whole = "snapshot" if what == "snapshot" else "entry"
        raise _Rejected(f"malformed {whole}: {what} is not msgpack ({str(exc)[:200]})") from None


def _label(incident: object) -> str:
    """How a rejection names the entry: its incident_id when it has a plain one."""
    iid = incident.get("incident_id") if isinstance(incident, dict) else None
    return repr(iid[:MAX_ID_BYTES]) if isinstance(iid, str) else "<no incident_id>"


def _kind(value: object) -> str:
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    return "missing" if value is None else type(value).__name__


def _short(value: object) -> str:
    # repr only of scalars: a hostile container may be nested too deep for repr()
    if value is None or isinstance(value, str | int | float | bool | bytes):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return f"a {type(value).__name__}"
