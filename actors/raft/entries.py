"""Incident entries of the Raft log: how a node signs one, and the TOTAL check every replica applies.

An entry is ``msgpack({"v": 1, "body": msgpack({"node", "incident"}), "sig": Ed25519(body)})``.

Why total: a committed entry stays in the log and is applied again at every boot (``applied`` restarts at
the snapshot). If checking it raised, the replica would crash on it at every start, forever, and take the
node down with it. So :func:`open_entry` never raises: whatever the bytes are, it returns the incident or
the reason for rejecting it. The decision depends only on the entry and the trusted keys (no clock, no
local state), so every replica rejects the same entries with the same reasons, and the replicated state
machines stay equal.
"""

from __future__ import annotations

import math
from collections.abc import Container
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from actors.raft.node_keys import verify

__all__ = ["MAX_ENTRY_BYTES", "REQUIRED_FIELDS", "open_entry", "open_snapshot", "signed_entry"]

_encode = msgspec.msgpack.Encoder(order="deterministic").encode
_decode = msgspec.msgpack.decode

# An incident is ~500 bytes; a bound keeps decoding a hostile entry cheap and its cost the same everywhere.
MAX_ENTRY_BYTES = 256 * 1024
# incident_id is part of an LMDB key (``raft/<replica>/applied/<id>``); LMDB keys are at most 511 bytes
MAX_ID_BYTES = 200
MAX_NAME_CHARS = 256  # a node name
MAX_DEPTH = 16  # of the incident's nested payload
SIGNATURE_BYTES = 64  # Ed25519
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
    """The log entry for ``incident``, proposed by ``node`` and signed with its key."""
    body = _encode({"node": node, "incident": incident})
    return _encode({"v": 1, "body": body, "sig": key.sign(body)})


def open_entry(
    data: object, trusted: dict[str, Any], signed_here: Container[bytes] = ()
) -> tuple[dict[str, Any] | None, str]:
    """The incident in an entry, or None and why it is rejected (the same answer on every replica).

    ``signed_here``: entries this process signed itself with the key ``trusted`` holds for its node (the
    caller checked that it does). Their signature is known to verify, so it is not checked again: the
    same answer as verifying, without the Ed25519 verify that is most of the leader's apply cost.

    Never raises: see the module docstring."""
    try:
        return _open(data, trusted, signed_here), ""
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


def _open(data: object, trusted: dict[str, Any], signed_here: Container[bytes]) -> dict[str, Any]:
    if not isinstance(data, bytes):
        raise _Rejected(f"malformed entry: data is {type(data).__name__}, not bytes")
    if len(data) > MAX_ENTRY_BYTES:
        raise _Rejected(f"malformed entry: {len(data)} bytes, more than {MAX_ENTRY_BYTES}")
    outer = _msgpack(data, "entry")
    if not isinstance(outer, dict):
        raise _Rejected(f"malformed entry: not a map but {type(outer).__name__}")
    if outer.get("v") != 1 or isinstance(outer.get("v"), bool):
        raise _Rejected(f"malformed entry: unknown version {_short(outer.get('v'))}")
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
    if data not in signed_here and not verify(public, sig, body_bytes):
        raise _Rejected(f"entry {label}: signature does not verify against {node!r}'s key")
    return check_incident(incident, label)


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


def _check_tree(value: object, where: str, depth: int) -> None:
    """Plain data only (what every sink can serialize): maps with string keys, lists, strings, numbers."""
    if depth > MAX_DEPTH:
        raise _Rejected(f"{where}: incident nested deeper than {MAX_DEPTH}")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Rejected(f"{where}: incident has a key of type {type(key).__name__}")
            _check_tree(item, where, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_tree(item, where, depth + 1)
    elif not (value is None or isinstance(value, str | int | float | bool)):
        raise _Rejected(f"{where}: incident holds {type(value).__name__}, not plain data")


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
