"""The memo of verified batch signatures (v2 entries): one Ed25519 verify per batch instead of one per
entry, and never an answer that verifying would not give."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from actors.raft import entries
from actors.raft.entries import open_entry, signed_batch
from tests.harness.cluster import incident


@pytest.fixture(autouse=True)
def cold_memo() -> None:
    entries._VERIFIED.clear()
    entries._PATHS.clear()
    entries._SIGNED.clear()


@pytest.fixture
def verify_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the real Ed25519 verifies that open_entry runs (each still runs)."""
    calls: list[int] = []
    real = entries.verify

    def counting(public: Any, sig: bytes, data: bytes) -> bool:
        calls.append(1)
        return real(public, sig, data)

    monkeypatch.setattr(entries, "verify", counting)
    return calls


def test_a_cold_replica_verifies_once_per_batch(verify_calls: list[int]) -> None:
    key = Ed25519PrivateKey.generate()
    batch = signed_batch("gw-1", [incident(f"i-{n}") for n in range(100)], key)
    entries._VERIFIED.clear()  # as on a follower that did not sign it
    entries._PATHS.clear()
    entries._SIGNED.clear()
    opened = [open_entry(e, {"gw-1": key.public_key()}) for e in batch]
    assert all(o is not None for o, _ in opened) and len(opened) == 100
    assert len(verify_calls) == 1


def test_the_signer_verifies_nothing_and_a_forgery_is_still_checked(verify_calls: list[int]) -> None:
    key = Ed25519PrivateKey.generate()
    trusted = {"gw-1": key.public_key()}
    batch = signed_batch("gw-1", [incident(f"i-{n}") for n in range(3)], key)
    assert all(open_entry(e, trusted)[0] is not None for e in batch)
    assert verify_calls == []  # the leader applying its own proposals: memo seeded when it signed
    forged = msgspec.msgpack.encode({**msgspec.msgpack.decode(batch[0]), "sig": bytes(64)})
    opened, why = open_entry(forged, trusted)
    assert opened is None and "batch signature does not verify" in why
    assert len(verify_calls) == 1  # a memo miss: really verified
    assert len(entries._VERIFIED) == 1  # and a failure is not remembered


def test_own_signature_in_the_memo_is_rejected_when_the_cluster_trusts_another_key() -> None:
    """The memo is keyed by the public key: an entry this process signed is rejected where verify rejects
    it (the node's trusted key is not ours), exactly as on a replica that never signed it."""
    mine = Ed25519PrivateKey.generate()
    batch = signed_batch("gw-1", [incident("i-1")], mine)
    assert len(entries._VERIFIED) == 1  # seeded
    other = {"gw-1": Ed25519PrivateKey.generate().public_key()}
    opened, why = open_entry(batch[0], other)
    assert opened is None and "batch signature does not verify against 'gw-1'" in why


def test_the_memo_is_bounded_and_eviction_changes_no_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(entries, "VERIFIED_CACHE_SIZE", 8)
    key = Ed25519PrivateKey.generate()
    trusted = {"gw-1": key.public_key()}
    batches = [signed_batch("gw-1", [incident(f"b{b}-{n}") for n in range(2)], key) for b in range(20)]
    assert len(entries._VERIFIED) == 8
    for b, batch in enumerate(batches):  # the first 12 were evicted: verified again, same answers
        assert [open_entry(e, trusted)[0]["incident_id"] for e in batch] == [f"b{b}-0", f"b{b}-1"]  # type: ignore[index]
        assert len(entries._VERIFIED) <= 8


def test_the_path_memo_is_bounded_and_changes_no_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(entries, "PATH_CACHE_SIZE", 16)
    key = Ed25519PrivateKey.generate()
    trusted = {"gw-1": key.public_key()}
    batch = signed_batch("gw-1", [incident(f"i-{n}") for n in range(64)], key)  # 63 inner nodes
    entries._SIGNED.clear()  # as on a follower: its entries' paths are walked
    cold = []
    for entry in batch:
        entries._PATHS.clear()
        cold.append(open_entry(entry, trusted))
    warm = [open_entry(entry, trusted) for entry in batch]
    assert warm == cold and all(opened is not None for opened, _ in warm)
    assert 0 < len(entries._PATHS) <= 16
    # a damaged sibling is hashed, not found: rejected warm as cold
    outer = msgspec.msgpack.decode(batch[5])
    outer["proof"][-1] = bytes(32)
    damaged = msgspec.msgpack.encode(outer)
    assert open_entry(damaged, trusted)[0] is None
    entries._PATHS.clear()
    assert open_entry(damaged, trusted)[0] is None


def _cold_answer(entry: bytes, trusted: dict[str, Any]) -> tuple[Any, str]:
    """open_entry on a replica that signed nothing and verified nothing."""
    signed, verified, paths = dict(entries._SIGNED), dict(entries._VERIFIED), dict(entries._PATHS)
    entries._SIGNED.clear()
    entries._VERIFIED.clear()
    entries._PATHS.clear()
    try:
        return open_entry(entry, trusted)
    finally:
        entries._SIGNED.update(signed)
        entries._VERIFIED.update(verified)
        entries._PATHS.update(paths)


def test_the_signer_opens_its_own_entries_without_the_path_and_with_a_cold_replicas_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The leader applying what it proposed: no outer decode, no Merkle path, no signature lookup (~10 of
    ~14 us an entry), and for every entry, good or not, exactly the answer of a replica that never signed
    it."""
    key = Ed25519PrivateKey.generate()
    trusted = {"gw-1": key.public_key()}
    too_big = {**incident("big"), "payload": {"blob": "x" * entries.MAX_ENTRY_BYTES}}
    no_sensor = {k: v for k, v in incident("no-sensor").items() if k != "sensor"}
    slash = incident("a/b")
    cases = [incident("ok-1"), too_big, no_sensor, slash, incident("ok-2")]
    batch = signed_batch("gw-1", cases, key)
    assert len(entries._SIGNED) == len(cases)
    paths: list[int] = []
    real = entries._proof_root

    def counting(*args: Any) -> bytes:
        paths.append(1)
        return real(*args)

    monkeypatch.setattr(entries, "_proof_root", counting)
    own = [open_entry(e, trusted) for e in (batch[0], batch[4])]
    assert [o["incident_id"] for o, _ in own] == ["ok-1", "ok-2"]  # type: ignore[index]
    assert paths == [], "the signer walked the Merkle path of its own entries"
    for entry in batch:
        answer = open_entry(entry, trusted)
        assert repr(answer) == repr(_cold_answer(entry, trusted))
    assert [open_entry(e, trusted)[0] is None for e in batch] == [False, True, True, True, False]
    # the memo holds the signer's key: another trusted key for the node, or none, rejects as a cold replica
    for other in ({"gw-1": Ed25519PrivateKey.generate().public_key()}, {}):
        opened, why = open_entry(batch[0], other)
        assert opened is None and (opened, why) == _cold_answer(batch[0], other)


def test_the_memo_of_signed_entries_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(entries, "SIGNED_CACHE_SIZE", 8)
    key = Ed25519PrivateKey.generate()
    trusted = {"gw-1": key.public_key()}
    batch = signed_batch("gw-1", [incident(f"i-{n}") for n in range(20)], key)
    assert len(entries._SIGNED) == 8 and batch[0] not in entries._SIGNED
    assert [open_entry(e, trusted)[0]["incident_id"] for e in batch] == [f"i-{n}" for n in range(20)]  # type: ignore[index]
