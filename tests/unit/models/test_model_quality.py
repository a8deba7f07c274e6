"""The committed model, through the actor's path, on a small held-out simulated scenario set."""

import pytest

from models.detector import DEFAULT_MODEL_PATH, load_detector
from models.episodes import EpisodeConfig
from models.evaluate import EvalSpec, evaluate, run_scenario, score_scenario
from models.simulator import default_scenario


@pytest.fixture(scope="module")
def detector():
    return load_detector(DEFAULT_MODEL_PATH)


def test_committed_model_meets_the_quality_bar_on_held_out_data(detector):
    # seed 99 is neither the training stream ('train-7') nor the card's evaluation seed
    report = evaluate(detector, seed=99, spec=EvalSpec.quick(), include_river=False)
    assert report.leak_exposures >= 20
    assert report.leak_recall >= 0.95
    assert report.clean_false_incidents * 24.0 / report.clean_sensor_hours <= 1.0
    assert report.negative_false_incidents * 24.0 / report.negative_sensor_hours <= 1.0


def test_default_scenario_plume_is_one_incident_per_reached_sensor(detector):
    sc = default_scenario()
    incidents = run_scenario(sc, 2160, detector, EpisodeConfig())
    score = score_scenario(sc, incidents)
    assert score.detected == score.exposures >= 6
    co = {i.sensor for i in incidents if i.pollutant == "CO" and i.start_ts < 3600}
    assert {"S1", "S2", "S3"} <= co
    assert score.false_incidents == 0
    # the same readings give the same incident ids (idempotent replays)
    again = run_scenario(sc, 2160, detector, EpisodeConfig())
    assert [i.incident_id for i in again] == [i.incident_id for i in incidents]
