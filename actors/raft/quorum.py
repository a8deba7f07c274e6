"""Majority arithmetic: the committed index of a voter set, and the outcome of an election.

Pure: stdlib only (etcd's quorum/majority.go, without joint configurations: we change
membership one server at a time).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Literal

VoteResult = Literal["won", "lost", "pending"]


def committed_index(voters: Collection[str], match: Mapping[str, int]) -> int:
    """The largest index that a majority of `voters` has acknowledged (0 with no voters)."""
    if not voters:
        return 0
    acked = sorted((match.get(v, 0) for v in voters), reverse=True)
    return acked[len(acked) // 2]


def vote_result(voters: Collection[str], votes: Mapping[str, bool]) -> VoteResult:
    """ "won" once a majority granted, "lost" once a majority can no longer grant."""
    quorum = len(voters) // 2 + 1
    granted = rejected = 0
    for v in voters:
        answer = votes.get(v)
        if answer is True:
            granted += 1
        elif answer is False:
            rejected += 1
    if granted >= quorum:
        return "won"
    if len(voters) - rejected < quorum:
        return "lost"
    return "pending"


def has_quorum(voters: Collection[str], members: Collection[str]) -> bool:
    """True when `members` include a majority of `voters`."""
    return sum(1 for v in voters if v in members) >= len(voters) // 2 + 1
