"""The pure building blocks: wire codec, MemoryStorage, majority arithmetic, and purity itself."""

from __future__ import annotations

import ast
import pathlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.raft import codec
from actors.raft.errors import CodecError, Compacted, SnapshotOutOfDate, Unavailable
from actors.raft.quorum import committed_index, vote_result
from actors.raft.storage import MemoryStorage
from actors.raft.types import (
    ConfChange,
    ConfState,
    Entry,
    HardState,
    Message,
    Snapshot,
)

ids = st.sampled_from(["a", "b", "c", "d", "node-7"])
entries = st.builds(
    Entry,
    term=st.integers(0, 2**40),
    index=st.integers(0, 2**40),
    kind=st.sampled_from(["normal", "noop", "conf"]),
    data=st.binary(max_size=64),
)
conf_states = st.builds(
    ConfState,
    voters=st.lists(ids, max_size=5).map(tuple),
    learners=st.lists(ids, max_size=3).map(tuple),
)
snapshots = st.builds(
    Snapshot,
    index=st.integers(0, 2**40),
    term=st.integers(0, 2**40),
    conf_state=conf_states,
    data=st.binary(max_size=64),
)
messages = st.builds(
    Message,
    type=st.sampled_from(
        [
            "append",
            "append_resp",
            "vote",
            "vote_resp",
            "prevote",
            "prevote_resp",
            "heartbeat",
            "heartbeat_resp",
            "snapshot",
            "timeout_now",
        ]
    ),
    sender=ids,
    to=ids,
    term=st.integers(0, 2**40),
    log_term=st.integers(0, 2**40),
    index=st.integers(0, 2**40),
    entries=st.lists(entries, max_size=4).map(tuple),
    commit=st.integers(0, 2**40),
    reject=st.booleans(),
    reject_hint=st.integers(0, 2**40),
    snapshot=st.none() | snapshots,
    context=st.binary(max_size=16),
)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_every_message_round_trips_through_the_wire_codec(msg: Message) -> None:
    assert codec.decode_message(codec.encode_message(msg)) == msg


@settings(max_examples=100, deadline=None)
@given(entries, snapshots, st.builds(HardState, st.integers(0, 2**40), st.none() | ids))
def test_entries_snapshots_and_hard_state_round_trip(entry: Entry, snap: Snapshot, hs: HardState) -> None:
    assert codec.decode_entry(codec.encode_entry(entry)) == entry
    assert codec.decode_snapshot(codec.encode_snapshot(snap)) == snap
    assert codec.decode_hard_state(codec.encode_hard_state(hs)) == hs
    change = ConfChange("promote", "d")
    assert codec.decode_conf_change(codec.encode_conf_change(change)) == change


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_never_decodes_into_a_message_silently(data: bytes) -> None:
    try:
        msg = codec.decode_message(data)
    except CodecError:
        return
    assert isinstance(msg, Message)  # only a well-formed map with valid fields decodes


def test_a_message_of_unknown_type_is_rejected() -> None:
    bad = codec.encode_message(Message("append", "a", "b", 1)).replace(b"append", b"pickle")
    with pytest.raises(CodecError, match="type"):
        codec.decode_message(bad)


# --- MemoryStorage --------------------------------------------------------------------------
def _storage(n: int) -> MemoryStorage:
    storage = MemoryStorage()
    storage.append([Entry(1 + i // 3, i + 1) for i in range(n)])
    return storage


def test_storage_serves_entries_and_terms_and_names_its_errors() -> None:
    storage = _storage(10)
    assert [e.index for e in storage.entries(3, 6)] == [3, 4, 5]
    assert storage.term(0) == 0 and storage.term(10) == 4
    with pytest.raises(Unavailable):
        storage.entries(5, 12)
    with pytest.raises(Unavailable):
        storage.term(11)


def test_storage_append_truncates_the_conflicting_suffix() -> None:
    storage = _storage(10)
    storage.append([Entry(9, 6), Entry(9, 7)])
    assert storage.last_index() == 7 and storage.term(6) == 9
    with pytest.raises(Unavailable):
        storage.append([Entry(9, 12)])  # would leave a gap


def test_storage_compaction_keeps_the_snapshot_term_and_refuses_going_back() -> None:
    storage = _storage(10)
    storage.create_snapshot(Snapshot(index=6, term=storage.term(6), data=b"s"))
    storage.compact(6)
    assert storage.first_index() == 7 and storage.term(6) == 2
    with pytest.raises(Compacted):
        storage.entries(6, 8)
    with pytest.raises(Compacted):
        storage.term(5)
    with pytest.raises(SnapshotOutOfDate):
        storage.create_snapshot(Snapshot(index=4, term=2))
    storage.apply_snapshot(Snapshot(index=20, term=7, data=b"x"))
    assert storage.first_index() == 21 and storage.last_index() == 20 and storage.term(20) == 7


# --- quorum -----------------------------------------------------------------------------------
def _naive_committed(voters: list[str], match: dict[str, int]) -> int:
    # The largest index that at least a majority has reached, by brute force.
    best = 0
    for candidate in {match.get(v, 0) for v in voters}:
        if sum(1 for v in voters if match.get(v, 0) >= candidate) > len(voters) // 2:
            best = max(best, candidate)
    return best


@settings(max_examples=500, deadline=None)
@given(
    st.lists(ids, min_size=1, max_size=5, unique=True),
    st.dictionaries(ids, st.integers(0, 20)),
)
def test_committed_index_matches_a_naive_majority_count(voters: list[str], match: dict) -> None:
    assert committed_index(voters, match) == _naive_committed(voters, match)


def test_vote_result_needs_a_strict_majority() -> None:
    voters = ["a", "b", "c", "d"]
    assert vote_result(voters, {"a": True, "b": True}) == "pending"
    assert vote_result(voters, {"a": True, "b": True, "c": True}) == "won"
    assert vote_result(voters, {"a": True, "b": False, "c": False}) == "lost"


# --- purity -------------------------------------------------------------------------------------
FORBIDDEN = {"thespian", "lmdb", "onnxruntime", "structlog", "time", "socket", "threading", "asyncio", "os"}


def test_the_raft_core_modules_are_pure() -> None:
    package = pathlib.Path(codec.__file__).parent
    pure = ("types", "errors", "storage", "log", "quorum", "progress", "codec", "core")
    for path in [package / f"{name}.py" for name in pure]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                names = []
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
            # random.Random(...) is fine (a seeded instance); random.random() is not.
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "random"
            ):
                assert node.attr == "Random", f"{path.name} calls random.{node.attr}"
