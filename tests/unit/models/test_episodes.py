import json

import pytest

from models.episodes import (
    EpisodeConfig,
    EpisodeEnded,
    EpisodeStarted,
    EpisodeTracker,
    incident_id,
)


def _run(tracker, probs, t0=0.0):
    return [(i, e) for i, p in enumerate(probs) if (e := tracker.update(t0 + 60.0 * i, p)) is not None]


def test_a_long_detection_is_one_episode_with_hysteresis():
    probs = [0.1, 0.9, 0.95, 0.7, 0.6, 0.2, 0.99, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    events = _run(EpisodeTracker("S1", "CO", EpisodeConfig(min_on=2, min_off=5)), probs)
    assert [type(e) for _, e in events] == [EpisodeStarted, EpisodeEnded]
    (i_start, start), (i_end, end) = events
    assert i_start == 2 and start.start_ts == 60.0  # starts at the first window of the run
    assert i_end == 11 and end.end_ts == 660.0 and end.peak_confidence == pytest.approx(0.99)
    assert start.incident_id == end.incident_id == incident_id("S1", "CO", 60.0)


def test_a_single_high_window_is_not_an_episode_and_threshold_is_configurable():
    assert _run(EpisodeTracker("S", "CO"), [0.1, 0.99, 0.1, 0.99, 0.1]) == []
    lax = EpisodeTracker("S", "CO", EpisodeConfig(threshold=0.6, release=0.3, min_on=1))
    assert [type(e) for _, e in _run(lax, [0.1, 0.7, 0.1])] == [EpisodeStarted]


def test_incident_id_is_deterministic_and_distinguishes_inputs():
    a = incident_id("S1", "CO", 1234.5)
    assert a == incident_id("S1", "CO", 1234.5000000001)
    assert len(a) == 16 and int(a, 16) >= 0
    assert (
        len(
            {
                a,
                incident_id("S2", "CO", 1234.5),
                incident_id("S1", "NO2", 1234.5),
                incident_id("S1", "CO", 1294.5),
            }
        )
        == 4
    )


def test_replay_and_restore_give_the_same_incidents():
    probs = [0.1, 0.9, 0.9, 0.9, 0.2, 0.2, 0.2, 0.2, 0.2, 0.1, 0.9, 0.9, 0.1]
    straight = _run(EpisodeTracker("S", "O3"), probs, t0=5000.0)
    first = EpisodeTracker("S", "O3")
    part = _run(first, probs[:3], t0=5000.0)
    restored = EpisodeTracker.from_state(json.loads(json.dumps(first.state())))
    # windows already seen are ignored after a restore (replay after a crash)
    assert restored.update(5000.0 + 60.0, 0.99) is None
    rest = [
        (i, e)
        for i, p in enumerate(probs)
        if i >= 3 and (e := restored.update(5000.0 + 60.0 * i, p)) is not None
    ]
    assert part + rest == straight
    assert [type(e) for _, e in straight] == [EpisodeStarted, EpisodeEnded, EpisodeStarted]


def test_config_is_validated():
    with pytest.raises(ValueError, match="release <= threshold"):
        EpisodeConfig(threshold=0.5, release=0.8)
    with pytest.raises(ValueError, match="min_on"):
        EpisodeConfig(min_on=0)
