import math
import random

import numpy as np
import pytest

from models.simulator import (
    ALL_POLLUTANTS,
    Dropout,
    Leak,
    Scenario,
    SensorSite,
    SimulatedSensor,
    Spike,
    Stuck,
    channel_values,
    default_scenario,
    generate,
    leak_exposures,
    random_scenario,
)


def _values(readings):
    return [(r.sensor, r.pollutant, r.step, r.ts, r.value) for r in readings]


def test_same_seed_same_readings_and_other_seed_differs():
    a = _values(generate(default_scenario(seed=7), 1000.0, 200))
    b = _values(generate(default_scenario(seed=7), 1000.0, 200))
    c = _values(generate(default_scenario(seed=8), 1000.0, 200))
    assert a == b
    assert [v[4] for v in a] != [v[4] for v in c]


def test_generate_covers_every_sensor_and_pollutant_in_step_order():
    sc = default_scenario()
    readings = list(generate(sc, 0.0, 3))
    assert len(readings) == 3 * len(sc.sensors) * len(ALL_POLLUTANTS)
    assert {r.pollutant for r in readings} == {"NO2", "CO", "O3", "PM2.5"}
    assert [r.step for r in readings] == sorted(r.step for r in readings)
    assert readings[-1].ts == pytest.approx(2 * sc.interval_s)


def test_sensor_resumed_from_a_step_continues_the_same_sequence():
    sc = default_scenario()
    straight = SimulatedSensor(sc, "S2", start_ts=50.0)
    first = straight.read(100) + straight.read(150)
    crashed = SimulatedSensor(sc, "S2", start_ts=50.0)
    crashed.read(100)
    resumed = SimulatedSensor(sc, "S2", start_ts=50.0, next_step=crashed.next_step)
    again = crashed.read(0) + resumed.read(150)
    assert _values(first[400:]) == _values(again)
    # and it equals the all-sensor generator at the same steps
    from_generate = [r for r in generate(sc, 50.0, 250) if r.sensor == "S2"]
    np.testing.assert_array_equal([r.value for r in first], [r.value for r in from_generate])


def test_values_are_a_pure_function_of_the_step_not_of_the_batch():
    sc = default_scenario()
    whole = channel_values(sc, "S1", "CO", np.arange(0, 400))
    pieces = np.concatenate(
        [channel_values(sc, "S1", "CO", np.arange(lo, lo + 57)) for lo in range(0, 400, 57)]
    )[:400]
    np.testing.assert_array_equal(whole, pieces)


def test_default_plume_reaches_neighbours_with_increasing_delay_and_not_the_far_sensor():
    sc = default_scenario()
    co = [e for e in leak_exposures(sc) if e.leak_id == "leak-co-1"]
    reached = [e.sensor for e in co]
    assert reached[0] == "S1" and len(reached) >= 3
    assert "S5" not in reached
    assert co[0].arrival_ts < 3600  # within the first simulated hour
    arrivals = [e.arrival_ts for e in co]
    assert arrivals == sorted(arrivals) and arrivals[1] - arrivals[0] > 60


def test_plume_raises_a_neighbour_only_after_its_arrival():
    sc = default_scenario()
    s2 = next(e for e in leak_exposures(sc) if e.leak_id == "leak-co-1" and e.sensor == "S2")
    arrival_step = math.ceil(s2.arrival_ts / sc.interval_s)
    values = channel_values(sc, "S2", "CO", np.arange(arrival_step - 60, arrival_step + 60))
    before, after = np.nanmedian(values[:55]), np.nanmedian(values[-30:])
    assert after > before * (1 + 0.8 * s2.excess)
    # the same steps without the leak stay near the baseline
    quiet = Scenario(sc.sensors, sc.pollutants, sc.seed, (), sc.interval_s, sc.start_hour)
    q = channel_values(quiet, "S2", "CO", np.arange(arrival_step - 60, arrival_step + 60))
    assert np.nanmedian(q[-30:]) < before * 1.5


def test_hard_negatives_shape_the_signal():
    site = SensorSite("A", 0.0, 0.0)
    events = (
        Spike("A", "NO2", 100.0, magnitude=10.0, n_readings=2),
        Stuck("A", "O3", 200.0, 100.0),
        Dropout("A", None, 400.0, 50.0),
    )
    sc = Scenario((site,), ALL_POLLUTANTS, 3, events)
    steps = np.arange(0, 60)
    no2 = channel_values(sc, "A", "NO2", steps)
    assert no2[10] > 5 * no2[5] and no2[11] > 5 * no2[5] and no2[12] < 2 * no2[5]
    o3 = channel_values(sc, "A", "O3", steps)
    assert len(set(o3[20:30].tolist())) == 1 and len(set(o3[30:40].tolist())) > 1
    for p in ALL_POLLUTANTS:
        v = channel_values(sc, "A", p, steps)
        assert np.isnan(v[40:45]).all() and np.isfinite(v[:40]).all()


def test_ground_truth_marks_leaks_hidden_by_a_silent_sensor():
    sites = (SensorSite("A", 0.0, 0.0), SensorSite("B", 100.0, 0.0))
    leak = Leak("l", "CO", (0.0, 0.0), 600.0, 900.0, peak=5.0)
    sc = Scenario(sites, ALL_POLLUTANTS, 1, (leak, Dropout("B", "CO", 500.0, 900.0)))
    by_sensor = {e.sensor: e for e in leak_exposures(sc, start_ts=1e6)}
    assert not by_sensor["A"].masked and by_sensor["B"].masked
    assert by_sensor["A"].arrival_ts == pytest.approx(1e6 + 600.0)
    assert by_sensor["B"].arrival_ts == pytest.approx(1e6 + 600.0 + 100.0 / leak.spread_m_s)


def test_random_scenario_is_reproducible_from_the_injected_rng():
    a = random_scenario(random.Random(5), hours=3.0)
    b = random_scenario(random.Random(5), hours=3.0)
    assert a == b
    assert any(isinstance(e, Leak) for e in a.events)
    assert len(a.sensors) == 6


def test_scenario_rejects_unknown_pollutants_and_duplicate_sensors():
    with pytest.raises(ValueError, match="unknown pollutants"):
        Scenario((SensorSite("A", 0, 0),), ("SO3",), 1)
    with pytest.raises(ValueError, match="duplicate sensor"):
        Scenario((SensorSite("A", 0, 0), SensorSite("A", 1, 1)), ("CO",), 1)
