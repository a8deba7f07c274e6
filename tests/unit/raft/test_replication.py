"""Log replication and commitment rules (Raft §5.3, §5.4.2), pipelining and batching."""

from __future__ import annotations

import random

import pytest

from actors.raft.core import RaftCore
from actors.raft.errors import RaftInvariantError
from actors.raft.log import RaftLog
from actors.raft.storage import MemoryStorage
from actors.raft.types import Entry, HardState, Message, RaftConfig
from tests.harness.raft_sim import Cluster

ABC = ("a", "b", "c")


def _core_with_log(node: str, terms: list[int], term: int, **config: object) -> RaftCore:
    storage = MemoryStorage()
    storage.append([Entry(t, i) for i, t in enumerate(terms, start=1)])
    storage.set_hard_state(HardState(term=term))
    return RaftCore(RaftConfig(id=node, peers=ABC, **config), storage, random.Random(0))  # type: ignore[arg-type]


def test_committed_entries_reach_every_follower_in_order() -> None:
    cluster = Cluster(ABC)
    leader = cluster.elect("a")
    for i in range(10):
        leader.propose(b"%d" % i)
    cluster.deliver()
    cluster.tick("a", 3)  # heartbeats carry the commit index
    expected = [b"%d" % i for i in range(10)]
    assert cluster.data("a") == cluster.data("b") == cluster.data("c") == expected


def test_follower_rejects_append_whose_previous_entry_does_not_match() -> None:
    # §5.3: "If the follower does not find an entry in its log with the same index and term,
    # then it refuses the new entries."
    follower = _core_with_log("b", [1, 1, 2], term=3)
    follower.step(Message("append", "a", "b", term=3, index=3, log_term=3, entries=(Entry(3, 4),)))
    (answer,) = follower.ready().messages
    assert answer.reject and follower.last_index == 3


def test_follower_truncates_a_conflicting_suffix_and_keeps_a_matching_one() -> None:
    # §5.3: "If an existing entry conflicts with a new one (same index but different terms),
    # delete the existing entry and all that follow it".
    follower = _core_with_log("b", [1, 1, 2, 2], term=3)
    follower.step(Message("append", "a", "b", term=3, index=2, log_term=1, entries=(Entry(3, 3),)))
    assert [follower.log_term(i) for i in range(1, 5)] == [1, 1, 3, 0]
    # A stale, shorter append that matches must not truncate what follows (no rollback).
    follower.step(Message("append", "a", "b", term=3, index=1, log_term=1, entries=(Entry(1, 2),)))
    assert follower.last_index == 3


def test_reject_hint_skips_a_whole_conflicting_term_per_round_trip() -> None:
    # §5.3 optimization: "the follower can include the term of the conflicting entry and the
    # first index it stores for that term ... one AppendEntries RPC will be required for each
    # term with conflicting entries, rather than one RPC per entry."
    leader_log = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
    follower_log = [1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3]
    cluster = Cluster(ABC)
    for node, log in (("a", leader_log), ("b", follower_log), ("c", leader_log)):
        cluster.storages[node].append([Entry(t, i) for i, t in enumerate(log, start=1)])
        cluster.storages[node].set_hard_state(HardState(term=6))
        cluster.restart(node)
    cluster.elect("a")
    probes = [m for m in cluster.delivered if m.type == "append" and m.to == "b"]
    rejections = [m for m in cluster.delivered if m.type == "append_resp" and m.reject]
    # one rejection per conflicting term region (the 3s, then the 2s), not one per entry
    assert len(rejections) <= 3, rejections
    assert [cluster["b"].log_term(i) for i in range(1, 12)] == [*leader_log, 7]
    assert len(probes) <= 5


def test_leader_counts_replicas_only_for_entries_of_its_current_term() -> None:
    # §5.4.2: "Raft never commits log entries from previous terms by counting replicas. Only
    # log entries from the leader's current term are committed by counting replicas".
    # Figure 8 (c): leader of term 4 holds an uncommitted term-2 entry at index 2 that it has
    # just replicated to a majority; its own no-op at index 3 is not replicated yet.
    leader = _core_with_log("a", [1, 2], term=3, max_entries_per_msg=1)
    _become_leader_with_votes(leader)
    assert leader.term == 4
    leader.step(Message("append_resp", "b", "a", term=4, index=2))
    assert leader.commit_index == 0  # index 2 is on a majority, but it is from term 2
    leader.step(Message("append_resp", "b", "a", term=4, index=3))
    assert leader.commit_index == 3  # the no-op of term 4 commits, and index 2 with it


def test_planted_bug_commit_previous_term_commits_by_counting() -> None:
    leader = _core_with_log(
        "a",
        [1, 2],
        term=3,
        max_entries_per_msg=1,
        planted_bugs=frozenset({"commit_previous_term"}),
    )
    _become_leader_with_votes(leader)
    leader.step(Message("append_resp", "b", "a", term=4, index=2))
    assert leader.commit_index == 2


def _become_leader_with_votes(core: RaftCore) -> None:
    for _ in range(100):
        core.tick()
        if core.role != "follower":
            break
    core.ready()
    if core.role == "precandidate":
        core.step(Message("prevote_resp", "b", core.id, term=core.term + 1))
    core.step(Message("vote_resp", "b", core.id, term=core.term))
    assert core.role == "leader"


def test_follower_ignores_append_from_a_stale_term_and_reports_its_term() -> None:
    # §5.1: "If a server receives a request with a stale term number, it rejects the request."
    follower = _core_with_log("b", [1, 2], term=3)
    follower.step(Message("append", "a", "b", term=2, index=2, log_term=2, entries=(Entry(2, 3),)))
    (answer,) = follower.ready().messages
    assert answer.type == "append_resp" and answer.term == 3 and follower.last_index == 2


def test_planted_bug_accept_stale_append_obeys_a_deposed_leader() -> None:
    follower = _core_with_log("b", [1, 2], term=3, planted_bugs=frozenset({"accept_stale_append"}))
    follower.step(Message("append", "a", "b", term=2, index=2, log_term=2, entries=(Entry(2, 3),)))
    assert follower.last_index == 3


def test_append_below_the_commit_index_is_answered_with_the_commit_index() -> None:
    follower = _core_with_log("b", [1, 1], term=2)
    follower.step(Message("heartbeat", "a", "b", term=2, commit=2))
    follower.ready()
    follower.step(Message("append", "a", "b", term=2, index=0, entries=(Entry(2, 1), Entry(2, 2))))
    answer = follower.ready().messages[-1]
    assert (answer.type, answer.reject, answer.index) == ("append_resp", False, 2)
    assert follower.log_term(1) == follower.log_term(2) == 1


def test_the_log_refuses_to_overwrite_a_committed_entry() -> None:
    log = RaftLog(MemoryStorage())
    log.append([Entry(1, 1), Entry(1, 2)])
    log.commit_to(2)
    with pytest.raises(RaftInvariantError):
        log.append([Entry(2, 2)])


def test_proposals_between_two_readies_go_out_as_one_append_per_follower() -> None:
    cluster = Cluster(ABC, max_entries_per_msg=64)
    leader = cluster.elect("a")
    for i in range(20):
        leader.propose(b"%d" % i)
    appends = [m for m in leader.ready().messages if m.type == "append"]
    assert sorted(m.to for m in appends) == ["b", "c"]
    assert all(len(m.entries) == 20 for m in appends)


def test_pipelining_is_bounded_by_max_inflight() -> None:
    cluster = Cluster(ABC, max_entries_per_msg=1, max_inflight=3)
    leader = cluster.elect("a")
    for i in range(10):
        leader.propose(b"%d" % i)
    to_b = [m for m in cluster.persist("a") if m.type == "append" and m.to == "b"]
    assert [len(m.entries) for m in to_b] == [1, 1, 1]  # three in flight, the rest wait
    leader.step(Message("append_resp", "b", "a", term=1, index=to_b[0].index + 1))
    more = [m for m in cluster.persist("a") if m.type == "append" and m.to == "b"]
    assert len(more) == 1  # one acknowledged, one more may go


def test_restart_recovers_term_vote_log_and_commit_from_storage() -> None:
    cluster = Cluster(ABC)
    leader = cluster.elect("a")
    leader.propose(b"x")
    cluster.deliver()
    cluster.tick("a", 3)
    before = (cluster["b"].term, cluster["b"].vote, cluster["b"].last_index)
    cluster.crash("b")
    core = cluster.restart("b")
    assert (core.term, core.vote, core.last_index) == before
    assert core.commit_index == 2 and core.applied_index == 0
    cluster.deliver()
    assert cluster.data("b") == [b"x"]  # re-applied from the log after the restart


def test_report_unreachable_stops_pipelining_to_that_peer_until_it_answers() -> None:
    cluster = Cluster(ABC, max_entries_per_msg=1, max_inflight=3)
    leader = cluster.elect("a")
    assert leader.progress("b").state == "replicate"  # type: ignore[union-attr]
    leader.report_unreachable("b")  # the transport dropped a message to b
    assert leader.progress("b").state == "probe"  # type: ignore[union-attr]
    assert leader.progress("c").state == "replicate"  # type: ignore[union-attr]
    for i in range(5):
        leader.propose(b"%d" % i)
    sent = cluster.persist("a")
    to_b = [m for m in sent if m.type == "append" and m.to == "b"]
    to_c = [m for m in sent if m.type == "append" and m.to == "c"]
    assert len(to_b) == 1 and len(to_c) == 3  # one probe to b; c keeps its pipeline (max_inflight)
    for m in sent:  # now let them arrive: b's answer to the probe puts it back to replicating
        cluster[m.to].step(m)
    cluster.deliver()
    cluster.tick("a", 3)
    cluster.deliver()
    assert leader.progress("b").state == "replicate"  # type: ignore[union-attr]
    assert cluster.data("a") == cluster.data("b") == cluster.data("c") == [b"%d" % i for i in range(5)]


def test_report_snapshot_failed_resends_it_and_delivered_continues_after_it() -> None:
    cluster = Cluster(ABC)
    leader = cluster.elect("a")
    for failed, next_index in ((True, None), (False, 8)):
        pr = leader.progress("b")
        assert pr is not None
        pr.become_snapshot(7)  # as _send_snapshot does
        leader.report_snapshot("b", failed=failed)
        assert pr.state == "probe" and pr.probe_sent  # paused until b answers a heartbeat
        if failed:
            assert pr.pending_snapshot == 0 and pr.next == pr.match + 1  # the snapshot goes again
        else:
            assert pr.next == next_index
    leader.report_snapshot("c", failed=True)  # c is not in snapshot state: nothing changes
    assert leader.progress("c").state == "replicate"  # type: ignore[union-attr]


def test_reports_to_a_follower_are_ignored() -> None:
    cluster = Cluster(ABC)
    cluster.elect("a")
    follower = cluster["b"]
    follower.report_unreachable("a")
    follower.report_snapshot("a", failed=True)
    assert follower.progress("a") is None and follower.role == "follower"
