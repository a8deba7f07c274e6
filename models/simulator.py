"""Seeded air-quality sensor simulator with scripted, labelled events.

PURE: no clock, no I/O, no global random state. Every reading is a pure function of
``(scenario, sensor, pollutant, step)``: the noise comes from a counter-based hash of
``(seed, sensor, pollutant, step)`` instead of a stateful generator, so a sensor actor that
restarts at step ``k`` continues exactly the sequence it would have produced, and bulk
generation for training can be vectorised with numpy. ``random.Random`` is used only where
a whole scenario is drawn (``random_scenario``), and it is always injected.

Time: step ``k`` happens ``k * interval_s`` simulated seconds after the scenario start.
Events are placed in those scenario seconds; ``start_ts`` (a wall-clock label given to step 0)
only shifts the ``ts`` printed on readings and ground truth, never the values.

Dropouts are emitted as readings whose ``value`` is NaN (not omitted): the step grid stays
regular, a window always holds the same number of readings, and "the sensor said nothing"
is visible to the features as a missing fraction.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

# --- pollutant physics -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PollutantProfile:
    """Typical urban background for one pollutant, and how it moves over a day."""

    name: str
    unit: str
    baseline: float
    # Daily cycle as two harmonics (24 h and 12 h) around 1.0; peaks in hours of the day.
    daily_amplitude: float
    daily_peak_hour: float
    semidaily_amplitude: float
    semidaily_peak_hour: float
    # Slow (weather/traffic) variation and fast sensor noise, both relative to the baseline.
    slow_noise: float
    white_noise: float
    # Sensor resolution, as decimal places of the reported unit.
    decimals: int


POLLUTANTS: dict[str, PollutantProfile] = {
    p.name: p
    for p in (
        # NO2 and CO follow traffic: rush-hour peaks at 8 h and 18-20 h.
        PollutantProfile("NO2", "ppb", 22.0, 0.15, 19.0, 0.25, 8.0, 0.10, 0.03, 1),
        PollutantProfile("CO", "ppm", 0.45, 0.10, 19.0, 0.20, 8.0, 0.08, 0.03, 3),
        # O3 is photochemical: one broad afternoon peak.
        PollutantProfile("O3", "ppb", 30.0, 0.40, 15.0, 0.05, 15.0, 0.10, 0.03, 1),
        PollutantProfile("PM2.5", "ug/m3", 12.0, 0.20, 21.0, 0.15, 8.0, 0.15, 0.06, 1),
    )
}

DEFAULT_INTERVAL_S = 10.0
# A leak "reaches" a sensor when its plateau excess there is at least this multiple of the
# pollutant baseline; below it the plume is treated as fully dispersed (contributes nothing),
# which keeps the ground truth crisp.
REACH_FLOOR = 0.8
LEAK_RISE_S = 60.0
LEAK_FALL_S = 120.0
LEAK_PUFF = 0.25
# Minimum quiet time between two random leaks of the same pollutant (plume travel + a window).
LEAK_GAP_S = 1800.0

# --- values ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """One sensor reading. ``value`` is NaN during a dropout; ``location`` is (x, y) metres."""

    sensor: str
    pollutant: str
    step: int
    ts: float
    value: float
    unit: str
    location: tuple[float, float]


@dataclass(frozen=True, slots=True)
class SensorSite:
    sensor: str
    x: float
    y: float


# --- scripted events ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leak:
    """A gas release at ``source``; the plume spreads at ``spread_m_s`` and thins with distance.

    At a sensor ``d`` metres away it arrives ``d / spread_m_s`` seconds after ``at_s`` with a
    plateau excess of ``peak * exp(-d / decay_m)`` times the pollutant baseline, and lasts
    ``duration_s``.
    """

    leak_id: str
    pollutant: str
    source: tuple[float, float]
    at_s: float
    duration_s: float
    peak: float
    spread_m_s: float = 0.8
    decay_m: float = 150.0
    label: str = field(default="leak", init=False)


@dataclass(frozen=True, slots=True)
class Spike:
    """A short glitch (1-3 readings) of ``magnitude`` times the baseline: not a leak."""

    sensor: str
    pollutant: str
    at_s: float
    magnitude: float
    n_readings: int = 1
    label: str = field(default="spike", init=False)


@dataclass(frozen=True, slots=True)
class Drift:
    """Calibration drift: a linear offset reaching ``total`` x baseline after ``duration_s``,
    reset (recalibrated) when it ends: not a leak."""

    sensor: str
    pollutant: str
    at_s: float
    duration_s: float
    total: float
    label: str = field(default="drift", init=False)


@dataclass(frozen=True, slots=True)
class Stuck:
    """The sensor repeats the value it had at ``at_s`` for ``duration_s``: not a leak."""

    sensor: str
    pollutant: str
    at_s: float
    duration_s: float
    label: str = field(default="stuck", init=False)


@dataclass(frozen=True, slots=True)
class Dropout:
    """No data (NaN) for ``duration_s``; ``pollutant=None`` means every channel of the sensor."""

    sensor: str
    pollutant: str | None
    at_s: float
    duration_s: float
    label: str = field(default="dropout", init=False)


Event = Leak | Spike | Drift | Stuck | Dropout
HARD_NEGATIVE_LABELS = ("spike", "drift", "stuck", "dropout")


@dataclass(frozen=True, slots=True)
class Scenario:
    sensors: tuple[SensorSite, ...]
    pollutants: tuple[str, ...]
    seed: int
    events: tuple[Event, ...] = ()
    interval_s: float = DEFAULT_INTERVAL_S
    # Hour of the day at step 0 (drives the daily cycle).
    start_hour: float = 0.0

    def __post_init__(self) -> None:
        names = [s.sensor for s in self.sensors]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate sensor ids in scenario: {names}")
        unknown = [p for p in self.pollutants if p not in POLLUTANTS]
        if unknown:
            raise ValueError(f"unknown pollutants {unknown}; known: {sorted(POLLUTANTS)}")
        if self.interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {self.interval_s}")

    def site(self, sensor: str) -> SensorSite:
        for s in self.sensors:
            if s.sensor == sensor:
                return s
        raise KeyError(f"sensor {sensor!r} is not in the scenario ({[s.sensor for s in self.sensors]})")


@dataclass(frozen=True, slots=True)
class LeakExposure:
    """Ground truth: leak ``leak_id`` raised ``pollutant`` at ``sensor`` from arrival to end.

    ``masked`` is true when the channel was stuck or dropped out around the plume's arrival
    (from 1 min before to 5 min after): the sensor could not have seen the onset.
    """

    leak_id: str
    sensor: str
    pollutant: str
    arrival_ts: float
    end_ts: float
    excess: float
    masked: bool = False


# --- counter-based noise --------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _key(*parts: object) -> np.uint64:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


def _mix(z: np.ndarray) -> np.ndarray:
    # SplitMix64 finaliser; uint64 array arithmetic wraps modulo 2**64 as intended.
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _uniform(key: np.uint64, idx: np.ndarray) -> np.ndarray:
    z = _mix(key ^ (np.asarray(idx, dtype=np.int64).astype(np.uint64) * _GOLDEN))
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / (1 << 53))


def _normal(key: np.uint64, idx: np.ndarray) -> np.ndarray:
    idx = np.asarray(idx, dtype=np.int64)
    u1 = _uniform(key, 2 * idx)
    u2 = _uniform(key, 2 * idx + 1)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def _smooth(key: np.uint64, steps: np.ndarray, knot_every: int) -> np.ndarray:
    """Value noise: N(0,1) knots every ``knot_every`` steps, smoothstep-interpolated."""
    pos = steps / knot_every
    k = np.floor(pos).astype(np.int64)
    f = pos - k
    f = f * f * (3.0 - 2.0 * f)
    return _normal(key, k) * (1.0 - f) + _normal(key, k + 1) * f


# --- the signal -----------------------------------------------------------------------------


def _distance(a: tuple[float, float], site: SensorSite) -> float:
    return math.hypot(a[0] - site.x, a[1] - site.y)


def leak_excess_at(leak: Leak, site: SensorSite) -> float:
    """Plateau excess (x baseline) of ``leak`` at ``site``; 0 when it does not reach it."""
    excess = leak.peak * math.exp(-_distance(leak.source, site) / leak.decay_m)
    return excess if excess >= REACH_FLOOR else 0.0


def leak_arrival_s(leak: Leak, site: SensorSite) -> float:
    return leak.at_s + _distance(leak.source, site) / leak.spread_m_s


def _plume(seed: int, leak: Leak, site: SensorSite, t: np.ndarray, steps: np.ndarray) -> np.ndarray:
    excess = leak_excess_at(leak, site)
    if excess == 0.0:
        return np.zeros_like(t)
    arrival = leak_arrival_s(leak, site)
    end = arrival + leak.duration_s
    since = np.maximum(t - arrival, 0.0)
    rise = 1.0 - np.exp(-since / LEAK_RISE_S)
    at_end = 1.0 - math.exp(-leak.duration_s / LEAK_RISE_S)
    fall = at_end * np.exp(-np.maximum(t - end, 0.0) / LEAK_FALL_S)
    shape = np.where(t < arrival, 0.0, np.where(t <= end, rise, fall))
    # Turbulent puffs: the plume is never a clean plateau.
    puffs = 1.0 + LEAK_PUFF * _smooth(_key(seed, leak.leak_id, site.sensor), steps, 3)
    return excess * shape * np.maximum(puffs, 0.2)


def _clean(scenario: Scenario, site: SensorSite, pollutant: str, steps: np.ndarray) -> np.ndarray:
    """Background signal in units of the pollutant baseline (no events, no quantisation)."""
    prof = POLLUTANTS[pollutant]
    seed = scenario.seed
    hours = scenario.start_hour + steps * scenario.interval_s / 3600.0
    cycle = (
        1.0
        + prof.daily_amplitude * np.cos(2 * np.pi * (hours - prof.daily_peak_hour) / 24.0)
        + prof.semidaily_amplitude * np.cos(2 * np.pi * (hours - prof.semidaily_peak_hour) / 12.0)
    )
    gain = 0.85 + 0.3 * float(_uniform(_key(seed, site.sensor, pollutant, "gain"), np.zeros(1))[0])
    # Two octaves of slow variation (~40 min and ~8 min correlation at 10 s steps).
    slow = 0.7 * _smooth(_key(seed, site.sensor, pollutant, "slow"), steps, 240) + 0.3 * _smooth(
        _key(seed, site.sensor, pollutant, "mid"), steps, 48
    )
    white = _normal(_key(seed, site.sensor, pollutant, "white"), steps)
    return gain * cycle * np.maximum(1.0 + prof.slow_noise * slow, 0.3) + prof.white_noise * white


def channel_values(scenario: Scenario, sensor: str, pollutant: str, steps: np.ndarray) -> np.ndarray:
    """Readings (pollutant units, NaN for dropouts) of one channel at the given step numbers."""
    steps = np.asarray(steps, dtype=np.int64)
    site = scenario.site(sensor)
    prof = POLLUTANTS[pollutant]
    dt = scenario.interval_s
    t = steps * dt
    rel = _clean(scenario, site, pollutant, steps)
    stuck: list[Stuck] = []
    missing = np.zeros(steps.shape, dtype=bool)
    for ev in scenario.events:
        if isinstance(ev, Leak):
            if ev.pollutant == pollutant:
                rel = rel + _plume(scenario.seed, ev, site, t, steps)
            continue
        if ev.sensor != sensor:
            continue
        if isinstance(ev, Dropout):
            if ev.pollutant in (None, pollutant):
                missing |= (t >= ev.at_s) & (t < ev.at_s + ev.duration_s)
            continue
        if ev.pollutant != pollutant:
            continue
        if isinstance(ev, Spike):
            rel = rel + np.where((t >= ev.at_s) & (t < ev.at_s + ev.n_readings * dt), ev.magnitude, 0.0)
        elif isinstance(ev, Drift):
            active = (t >= ev.at_s) & (t < ev.at_s + ev.duration_s)
            rel = rel + np.where(active, ev.total * (t - ev.at_s) / ev.duration_s, 0.0)
        elif isinstance(ev, Stuck):
            stuck.append(ev)
    values = np.maximum(np.round(rel * prof.baseline, prof.decimals), 0.0)
    for ev in stuck:
        # The frozen value is whatever the channel read at the first stuck step: a pure
        # function of that step, so it is recomputed rather than remembered.
        first = math.ceil(ev.at_s / dt - 1e-9)
        frozen_scenario = _without(scenario, ev)
        frozen = channel_values(frozen_scenario, sensor, pollutant, np.array([first]))[0]
        values = np.where((t >= ev.at_s) & (t < ev.at_s + ev.duration_s), frozen, values)
    return np.where(missing, np.nan, values)


def _without(scenario: Scenario, event: Event) -> Scenario:
    return Scenario(
        sensors=scenario.sensors,
        pollutants=scenario.pollutants,
        seed=scenario.seed,
        events=tuple(e for e in scenario.events if e is not event),
        interval_s=scenario.interval_s,
        start_hour=scenario.start_hour,
    )


# --- readings -------------------------------------------------------------------------------


class SimulatedSensor:
    """One simulated sensor, resumable: ``SimulatedSensor(scenario, "S1", next_step=k)``
    continues exactly where a previous instance stopped after step ``k - 1``."""

    def __init__(self, scenario: Scenario, sensor: str, *, start_ts: float = 0.0, next_step: int = 0) -> None:
        if next_step < 0:
            raise ValueError(f"next_step must be >= 0, got {next_step}")
        self.scenario = scenario
        self.site = scenario.site(sensor)
        self.start_ts = start_ts
        self.next_step = next_step

    def read(self, n_steps: int = 1) -> list[Reading]:
        """The next ``n_steps`` steps, one reading per pollutant per step, in step order."""
        readings = _readings(self.scenario, self.site, self.start_ts, self.next_step, n_steps)
        self.next_step += n_steps
        return readings


def _readings(
    scenario: Scenario, site: SensorSite, start_ts: float, first_step: int, n_steps: int
) -> list[Reading]:
    steps = np.arange(first_step, first_step + n_steps, dtype=np.int64)
    per_pollutant = [
        (p, channel_values(scenario, site.sensor, p, steps).tolist()) for p in scenario.pollutants
    ]
    out: list[Reading] = []
    loc = (site.x, site.y)
    for i, step in enumerate(steps.tolist()):
        ts = start_ts + step * scenario.interval_s
        for p, values in per_pollutant:
            out.append(Reading(site.sensor, p, step, ts, values[i], POLLUTANTS[p].unit, loc))
    return out


def generate(
    scenario: Scenario, start_ts: float = 0.0, n_steps: int = 360, first_step: int = 0
) -> Iterator[Reading]:
    """All sensors' readings for steps ``first_step .. first_step + n_steps - 1``,
    ordered by step, then sensor, then pollutant."""
    chunk = 360
    for lo in range(first_step, first_step + n_steps, chunk):
        n = min(chunk, first_step + n_steps - lo)
        per_sensor = [_readings(scenario, s, start_ts, lo, n) for s in scenario.sensors]
        width = len(scenario.pollutants)
        for i in range(n):
            for readings in per_sensor:
                yield from readings[i * width : (i + 1) * width]


def leak_exposures(scenario: Scenario, start_ts: float = 0.0) -> list[LeakExposure]:
    """Ground truth: every (leak, sensor) pair the plume reaches, with its active window."""
    out = []
    for ev in scenario.events:
        if not isinstance(ev, Leak) or ev.pollutant not in scenario.pollutants:
            continue
        for site in scenario.sensors:
            excess = leak_excess_at(ev, site)
            if excess > 0.0:
                arrival_s = leak_arrival_s(ev, site)
                arrival = start_ts + arrival_s
                masked = _masked(scenario, site.sensor, ev.pollutant, arrival_s - 60.0, arrival_s + 300.0)
                out.append(
                    LeakExposure(
                        ev.leak_id,
                        site.sensor,
                        ev.pollutant,
                        arrival,
                        arrival + ev.duration_s,
                        excess,
                        masked,
                    )
                )
    return sorted(out, key=lambda e: (e.arrival_ts, e.sensor))


def _masked(scenario: Scenario, sensor: str, pollutant: str, lo_s: float, hi_s: float) -> bool:
    return any(
        isinstance(ev, Stuck | Dropout)
        and ev.sensor == sensor
        and ev.pollutant in (None, pollutant)
        and ev.at_s < hi_s
        and ev.at_s + ev.duration_s > lo_s
        for ev in scenario.events
    )


# --- scenarios ------------------------------------------------------------------------------

ALL_POLLUTANTS = tuple(POLLUTANTS)


def default_scenario(seed: int = 7) -> Scenario:
    """Five sensors (four ~150-200 m apart, one far away), all pollutants, six hours.

    A CO leak next to S1 starts at minute 20 and reaches S2, S3 and S4 minutes later; an NO2 leak
    near S4 at 3 h. Hard negatives (spike, stuck, dropout, drift) are scattered around them and
    the rest is clean.
    """
    sensors = (
        SensorSite("S1", 0.0, 0.0),
        SensorSite("S2", 150.0, 0.0),
        SensorSite("S3", 0.0, 180.0),
        SensorSite("S4", 160.0, 170.0),
        SensorSite("S5", 600.0, 500.0),
    )
    minute = 60.0
    events: tuple[Event, ...] = (
        Leak("leak-co-1", "CO", (20.0, 10.0), 20 * minute, 15 * minute, peak=6.0),
        Spike("S2", "NO2", 10 * minute, magnitude=5.0, n_readings=2),
        Stuck("S3", "O3", 30 * minute, 25 * minute),
        Dropout("S4", None, 70 * minute, 5 * minute),
        Drift("S5", "PM2.5", 0.0, 6 * 60 * minute, total=1.0),
        Spike("S1", "PM2.5", 100 * minute, magnitude=8.0),
        Leak("leak-no2-1", "NO2", (170.0, 150.0), 180 * minute, 20 * minute, peak=4.0),
        Stuck("S2", "CO", 240 * minute, 30 * minute),
    )
    return Scenario(sensors, ALL_POLLUTANTS, seed, events, DEFAULT_INTERVAL_S, start_hour=6.0)


def grid_sites(rng: random.Random, n_sensors: int, spacing_m: float = 170.0) -> tuple[SensorSite, ...]:
    cols = max(1, math.ceil(math.sqrt(n_sensors)))
    return tuple(
        SensorSite(
            f"S{i + 1}",
            (i % cols) * spacing_m + rng.uniform(-30.0, 30.0),
            (i // cols) * spacing_m + rng.uniform(-30.0, 30.0),
        )
        for i in range(n_sensors)
    )


def random_scenario(
    rng: random.Random,
    *,
    hours: float,
    n_sensors: int = 6,
    leaks_per_hour: float = 1.0,
    negatives_per_sensor_hour: float = 1.0,
    pollutants: Sequence[str] = ALL_POLLUTANTS,
) -> Scenario:
    """A scenario drawn from ``rng``: leaks of random size anywhere on the grid, and hard
    negatives (spike, drift, stuck, dropout) on random channels."""
    sites = grid_sites(rng, n_sensors)
    span = hours * 3600.0
    xs = [s.x for s in sites]
    ys = [s.y for s in sites]
    events: list[Event] = []
    leaks: list[Leak] = []
    for i in range(_poisson(rng, leaks_per_hour * hours)):
        leak = Leak(
            f"leak-{i}",
            rng.choice(list(pollutants)),
            (rng.uniform(min(xs), max(xs)), rng.uniform(min(ys), max(ys))),
            at_s=rng.uniform(0.0, span - 1800.0),
            duration_s=rng.uniform(8.0, 30.0) * 60.0,
            peak=rng.uniform(1.5, 10.0),
            spread_m_s=rng.uniform(0.5, 1.5),
            decay_m=rng.uniform(100.0, 250.0),
        )
        # Two leaks of one gas on top of each other would be one incident at the sensors
        # they share, so the ground truth could not say which one was "detected": keep them
        # LEAK_GAP_S apart (the draw is simply skipped, which keeps the rng stream simple).
        if all(
            other.pollutant != leak.pollutant
            or leak.at_s > other.at_s + other.duration_s + LEAK_GAP_S
            or other.at_s > leak.at_s + leak.duration_s + LEAK_GAP_S
            for other in leaks
        ):
            leaks.append(leak)
    events.extend(leaks)
    for _ in range(_poisson(rng, negatives_per_sensor_hour * hours * n_sensors)):
        events.append(_random_negative(rng, sites, pollutants, span))
    return Scenario(
        sites, tuple(pollutants), rng.randrange(2**31), tuple(events), start_hour=rng.uniform(0, 24)
    )


def _random_negative(
    rng: random.Random, sites: Sequence[SensorSite], pollutants: Sequence[str], span: float
) -> Event:
    sensor = rng.choice(list(sites)).sensor
    pollutant = rng.choice(list(pollutants))
    at = rng.uniform(0.0, span)
    kind = rng.choice(HARD_NEGATIVE_LABELS)
    if kind == "spike":
        return Spike(sensor, pollutant, at, rng.uniform(1.0, 15.0), rng.randint(1, 3))
    if kind == "drift":
        return Drift(sensor, pollutant, at, rng.uniform(2.0, 8.0) * 3600.0, rng.uniform(-0.6, 1.5))
    if kind == "stuck":
        return Stuck(sensor, pollutant, at, rng.uniform(5.0, 60.0) * 60.0)
    return Dropout(sensor, rng.choice([None, pollutant]), at, rng.uniform(1.0, 30.0) * 60.0)


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method underflows for large means, so add up Poisson draws of mean <= 20.
    total = 0
    while mean > 0.0:
        part = min(mean, 20.0)
        mean -= part
        limit, p = math.exp(-part), rng.random()
        while p > limit:
            total += 1
            p *= rng.random()
    return total
