"""``open_entry(..., signed_here)``: skipping the verify of entries this process signed gives the same
answer as verifying them; it never lets through what verifying would reject."""

from __future__ import annotations

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from actors.raft.entries import open_entry, signed_entry
from tests.harness.cluster import incident


def test_own_entries_open_the_same_with_or_without_the_verify() -> None:
    key = Ed25519PrivateKey.generate()
    trusted = {"gw-1": key.public_key()}
    entries = [signed_entry("gw-1", incident(f"i-{n}"), key) for n in range(5)]
    assert [open_entry(e, trusted, set(entries)) for e in entries] == [
        open_entry(e, trusted) for e in entries
    ]
    assert all(opened is not None for opened, _ in (open_entry(e, trusted, set(entries)) for e in entries))


def test_only_the_exact_signed_bytes_skip_the_verify() -> None:
    key = Ed25519PrivateKey.generate()
    trusted = {"gw-1": key.public_key()}
    good = signed_entry("gw-1", incident("i-1"), key)
    # the same body with another signature (a forgery) is different bytes: verified, and rejected
    outer = msgspec.msgpack.decode(good)
    forged = msgspec.msgpack.encode({**outer, "sig": bytes(64)})
    opened, why = open_entry(forged, trusted, {good})
    assert opened is None and "signature does not verify" in why
    # an entry this process signed while the cluster trusts another key for the node is still rejected
    # (the replica only passes signed_here when its own key is the trusted one; verify decides otherwise)
    other = {"gw-1": Ed25519PrivateKey.generate().public_key()}
    assert open_entry(good, other)[0] is None
