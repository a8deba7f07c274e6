"""GossipCore scenarios: what is sent to whom, acknowledged, trimmed, and refused."""

from __future__ import annotations

import pytest

from actors.crdt.exposure import Exposure
from actors.crdt.gossip import (
    AckMessage,
    DeltaMessage,
    GossipConfigError,
    GossipCore,
    GossipMessage,
    MisroutedMessageError,
    UnknownPeerError,
)


def mesh(*names: str, max_buffered_deltas: int = 256) -> dict[str, GossipCore]:
    return {
        name: GossipCore(
            name,
            [p for p in names if p != name],
            Exposure(),
            incarnation=index + 1,
            max_buffered_deltas=max_buffered_deltas,
        )
        for index, name in enumerate(names)
    }


def deliver(cores: dict[str, GossipCore], messages: list[GossipMessage]) -> None:
    """Deliver messages and every reply they cause, in order, with no loss."""
    while messages:
        message = messages.pop(0)
        messages.extend(cores[message.recipient].receive(message))


def settle(cores: dict[str, GossipCore]) -> None:
    for core in cores.values():
        deliver(cores, core.tick())


def to(recipient: str, messages: list[GossipMessage]) -> list[GossipMessage]:
    return [m for m in messages if m.recipient == recipient]


def test_an_unknown_peer_gets_the_full_state_then_nothing_once_it_acknowledged() -> None:
    cores = mesh("a", "b")
    cores["a"].add("NO2", 5)
    (hello,) = cores["a"].tick()
    assert isinstance(hello, DeltaMessage) and hello.full_state and hello.seq == 1
    deliver(cores, [hello])
    assert cores["a"].acked("b") == 1
    assert cores["a"].tick() == []
    assert cores["b"].state.value() == {"NO2": 5}


def test_an_acknowledged_peer_gets_only_the_deltas_since_its_acknowledgement() -> None:
    cores = mesh("a", "b")
    cores["a"].add("NO2", 5)
    settle(cores)
    cores["a"].add("O3", 2)
    cores["a"].add("O3", 3)
    (message,) = cores["a"].tick()
    assert not message.full_state
    assert message.payload.value() == {"O3": 5}, "the interval joins both new deltas only"
    deliver(cores, [message])
    assert cores["b"].state == cores["a"].state
    assert cores["a"].buffered_deltas == 0, "deltas every peer acknowledged are dropped"


def test_unacknowledged_deltas_are_resent_on_every_tick() -> None:
    cores = mesh("a", "b")
    settle(cores)
    cores["a"].add("NO2", 1)
    first = cores["a"].tick()  # lost
    second = cores["a"].tick()
    assert first == second and len(second) == 1
    deliver(cores, second)
    assert cores["a"].tick() == []


def test_a_peer_behind_the_delta_buffer_gets_the_full_state() -> None:
    cores = mesh("a", "b", max_buffered_deltas=2)
    settle(cores)
    for amount in (1, 2, 3):
        cores["a"].add("NO2", amount)
    assert cores["a"].buffered_deltas == 2
    (message,) = cores["a"].tick()
    assert message.full_state and message.payload == cores["a"].state


def test_duplicates_are_acknowledged_but_buffered_once() -> None:
    cores = mesh("a", "b")
    settle(cores)
    cores["a"].add("NO2", 4)
    (message,) = cores["a"].tick()
    first_ack = cores["b"].receive(message)
    seq_after_first = cores["b"].next_seq
    assert cores["b"].receive(message) == first_ack
    assert cores["b"].next_seq == seq_after_first
    assert cores["b"].state.value() == {"NO2": 4}


def test_received_deltas_are_forwarded_to_third_replicas_but_not_echoed() -> None:
    cores = mesh("a", "b", "c")
    settle(cores)
    cores["a"].add("NO2", 4)
    from_a = cores["a"].tick()
    deliver(cores, to("b", from_a))  # the message to c is lost
    from_b = cores["b"].tick()
    assert to("a", from_b) == [], "b must not send a's own delta back to a"
    assert cores["b"].acked("a") == cores["b"].next_seq
    (forward,) = to("c", from_b)
    deliver(cores, [forward])
    assert cores["c"].state.value() == {"NO2": 4}


def test_a_restarted_peer_is_treated_as_new_and_gets_the_full_state() -> None:
    cores = mesh("a", "b")
    cores["a"].add("NO2", 4)
    settle(cores)
    # b restarts having lost everything (no snapshot): a new incarnation.
    cores["b"] = GossipCore("b", ["a"], Exposure(), incarnation=99)
    settle(cores)  # b's hello (its empty full state) tells a about the new incarnation
    assert cores["a"].acked("b") is None
    (catch_up,) = cores["a"].tick()
    assert catch_up.full_state
    deliver(cores, [catch_up])
    assert cores["b"].state.value() == {"NO2": 4}


def test_a_peer_with_a_new_incarnation_is_treated_as_new_even_if_it_lacks_nothing() -> None:
    cores = mesh("a", "b")
    cores["a"].add("NO2", 4)
    settle(cores)
    cores["b"] = GossipCore("b", ["a"], cores["b"].state, incarnation=99)  # restored intact
    (hello,) = cores["b"].tick()
    cores["a"].receive(hello)
    assert cores["a"].acked("b") is None, "what b acknowledged before its restart no longer counts"


def test_a_delta_from_an_earlier_incarnation_of_a_peer_is_sent_back_to_its_new_incarnation() -> None:
    cores = mesh("a", "b", "c")
    settle(cores)
    settle(cores)
    cores["c"].add("NO2", 5)
    deliver(cores, to("b", cores["c"].tick()))  # c's message to a is lost
    (forward,) = to("a", cores["b"].tick())  # b forwards c's delta to a; it arrives late
    # b crashes before persisting what it received, and restarts without it.
    cores["b"] = GossipCore("b", ["a", "c"], Exposure(), incarnation=99)
    deliver(cores, to("a", cores["b"].tick()))
    deliver(cores, to("b", cores["a"].tick()))
    assert cores["a"].acked("b") == cores["a"].next_seq
    deliver(cores, [forward])  # now a holds c's delta, received from b's earlier incarnation
    (catch_up,) = to("b", cores["a"].tick())
    assert catch_up.payload.value() == {"NO2": 5}, "b's new incarnation never had that delta"


def test_an_ack_for_an_earlier_incarnation_is_ignored() -> None:
    cores = mesh("a", "b")
    cores["a"].add("NO2", 1)
    cores["a"].add("NO2", 1)
    (to_b,) = cores["a"].tick()
    (stale_ack,) = cores["b"].receive(to_b)
    assert stale_ack.seq == 2
    # a restarts from its snapshot; its deltas are renumbered from 0 in the new incarnation.
    cores["a"] = GossipCore("a", ["b"], cores["a"].state, incarnation=7)
    cores["a"].add("O3", 1)
    cores["a"].add("O3", 1)
    assert cores["a"].receive(stale_ack) == []
    assert cores["a"].acked("b") is None
    (message,) = cores["a"].tick()
    assert message.full_state


def test_an_interval_for_an_earlier_incarnation_is_merged_but_not_acknowledged() -> None:
    cores = mesh("a", "b")
    settle(cores)
    cores["a"].add("NO2", 3)
    (interval,) = cores["a"].tick()
    assert not interval.full_state
    cores["b"] = GossipCore("b", ["a"], Exposure(), incarnation=42)
    assert cores["b"].receive(interval) == []
    assert cores["b"].state.value() == {"NO2": 3}


def test_a_full_state_that_lacks_our_updates_marks_its_sender_as_behind() -> None:
    cores = mesh("a", "b")
    cores["a"].add("NO2", 3)
    settle(cores)
    assert cores["a"].acked("b") is not None
    stale = DeltaMessage("b", 2, "a", 1, seq=0, payload=Exposure(), full_state=True)
    cores["a"].receive(stale)
    assert cores["a"].acked("b") is None
    (message,) = cores["a"].tick()
    assert message.full_state


def test_acks_beyond_what_was_sent_are_ignored() -> None:
    cores = mesh("a", "b")
    cores["a"].add("NO2", 3)
    bogus = AckMessage("b", 2, "a", 1, seq=1_000)
    assert cores["a"].receive(bogus) == []
    assert cores["a"].acked("b") is None


def test_the_delta_buffer_is_bounded_without_peers_acknowledging() -> None:
    core = GossipCore("a", ["b"], Exposure(), incarnation=1, max_buffered_deltas=8)
    for _ in range(100):
        core.add("NO2", 1)
    assert core.buffered_deltas == 8
    assert core.state.value() == {"NO2": 100}


def test_retractions_travel_like_additions() -> None:
    cores = mesh("a", "b")
    cores["a"].add("NO2", 10)
    cores["a"].retract("NO2", 4)
    settle(cores)
    assert cores["b"].state.value() == {"NO2": 6}


def test_messages_from_strangers_or_for_others_are_refused() -> None:
    cores = mesh("a", "b")
    stranger = DeltaMessage("z", 1, "a", None, seq=0, payload=Exposure(), full_state=True)
    with pytest.raises(UnknownPeerError, match="topology"):
        cores["a"].receive(stranger)
    misrouted = DeltaMessage("a", 1, "c", None, seq=0, payload=Exposure(), full_state=True)
    with pytest.raises(MisroutedMessageError):
        cores["b"].receive(misrouted)


@pytest.mark.parametrize(
    ("peers", "kwargs"),
    [
        (["a"], {}),  # itself
        (["b", "b"], {}),  # duplicates
        (["b"], {"max_buffered_deltas": 0}),
        (["b"], {"incarnation": -1}),
        ("bc", {}),  # a str is a sequence too
    ],
)
def test_inconsistent_configuration_is_refused(peers: list[str] | str, kwargs: dict) -> None:
    with pytest.raises(GossipConfigError):
        GossipCore("a", peers, Exposure(), **{"incarnation": 1, **kwargs})
