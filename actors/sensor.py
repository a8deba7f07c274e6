"""``SimulatedSensorActor``: replays the seeded simulator into the ``readings`` stream.

Readings are a pure function of (seed, sensor, step), so the actor only persists the next step, in the same
transaction as the readings it appends: a crash or SIGKILL neither skips nor repeats a step.
Simulated time runs ``speedup`` times faster than the wall clock, so a scripted leak at minute 20 arrives
within seconds of ``garrison run``.
"""

from __future__ import annotations

import time
from typing import Any

from actors.base import SupervisedActor
from actors.streams import READINGS
from models.simulator import Reading, Scenario, SimulatedSensor, default_scenario


def reading_record(r: Reading, ingested_at: float) -> dict[str, Any]:
    """A simulated reading as the ``readings`` stream holds it."""
    return {
        "sensor": r.sensor,
        "pollutant": r.pollutant,
        "ts": r.ts,
        "value": r.value,
        "unit": r.unit,
        "location": list(r.location),
        "source": "sim",
        "ingested_at": ingested_at,
    }


def scenario_from_args(args: dict[str, Any]) -> Scenario:
    name = args.get("scenario", "default")
    if name != "default":
        raise ValueError(f"unknown scenario {name!r}: only 'default' is built in")
    return default_scenario(int(args.get("seed", 7)))


class SimulatedSensorActor(SupervisedActor):
    """args: ``sensors`` (ids, default all of the scenario), ``seed``, ``speedup`` (simulated seconds per
    wall second, default 300), ``tick`` (s, default 0.1), ``max_steps`` (stop producing after it)."""

    def on_start(self, args: dict[str, Any]) -> None:
        self.scenario = scenario_from_args(args)
        wanted = args.get("sensors") or [s.sensor for s in self.scenario.sensors]
        self.tick = float(args.get("tick", 0.1))
        self.steps_per_tick = max(
            1, round(float(args.get("speedup", 300)) * self.tick / self.scenario.interval_s)
        )
        self.max_steps = int(args.get("max_steps", 10**9))
        self.key = f"sensor/{self.path}"
        saved = self.event_log.get_value(self.key) or {}
        self.start_ts = float(saved.get("start_ts", time.time()))
        next_step = int(saved.get("next_step", 0))
        self.sensors = [
            SimulatedSensor(self.scenario, s, start_ts=self.start_ts, next_step=next_step) for s in wanted
        ]
        self.log.info("sensor_resumed", sensors=list(wanted), next_step=next_step)
        self.schedule("produce", self.tick)

    def on_timer(self, name: str) -> None:
        next_step = self.sensors[0].next_step
        n = min(self.steps_per_tick, self.max_steps - next_step)
        if n > 0:
            now = time.time()
            readings = [r for sensor in self.sensors for r in sensor.read(n)]
            readings.sort(key=lambda r: (r.step, r.sensor, r.pollutant))
            with self.event_log.batch() as batch:
                for r in readings:
                    batch.append(READINGS, reading_record(r, now))
                batch.put_value(self.key, {"start_ts": self.start_ts, "next_step": next_step + n})
        self.schedule("produce", self.tick)
