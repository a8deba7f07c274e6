"""``SimulatedSensorActor``: replays the seeded simulator into the ``readings`` stream.

Readings are a pure function of (seed, sensor, step), so the actor only persists the next step, in the same
transaction as the readings it appends: a crash or SIGKILL neither skips nor repeats a step.
Simulated time runs ``speedup`` times faster than the wall clock, so a scripted leak at minute 20 arrives
within seconds of ``garrison run``.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field, model_validator

from actors.args import ActorArgs
from actors.base import SupervisedActor
from actors.streams import READINGS
from models.readings import ReadingColumns
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


class SensorArgs(ActorArgs):
    """``SimulatedSensorActor``'s args."""

    sensors: list[str] | None = None  # sensor ids of the scenario; None or [] = all of them
    seed: int = Field(7, ge=0)  # the scenario's random seed (readings are a pure function of it)
    scenario: Literal["default"] = "default"  # only the default scenario is built in
    speedup: float = Field(300.0, gt=0, le=1e6)  # simulated seconds per wall second
    tick: float = Field(0.1, gt=0, le=3600)  # wall seconds between two batches of readings
    max_steps: int = Field(10**9, ge=0)  # stop producing after this many steps

    @model_validator(mode="after")
    def _known_sensors(self) -> SensorArgs:
        known = [s.sensor for s in scenario_from_args(self).sensors]
        unknown = [s for s in self.sensors or [] if s not in known]
        if unknown:
            raise ValueError(f"sensors: {unknown} are not in the {self.scenario} scenario (it has {known})")
        return self


def scenario_from_args(args: SensorArgs) -> Scenario:
    return default_scenario(args.seed)


class SimulatedSensorActor(SupervisedActor):
    """Args: :class:`SensorArgs`."""

    Args = SensorArgs
    args: SensorArgs

    def on_start(self, args: dict[str, Any]) -> None:
        a = self.args
        self.scenario = scenario_from_args(a)
        wanted = a.sensors or [s.sensor for s in self.scenario.sensors]
        self.tick = a.tick
        self.steps_per_tick = max(1, round(a.speedup * self.tick / self.scenario.interval_s))
        self.max_steps = a.max_steps
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
            block = ReadingColumns.from_dicts([reading_record(r, now) for r in readings])
            with self.event_log.batch() as batch:
                batch.append(READINGS, block.to_record())  # one block record per tick (models/readings.py)
                batch.put_value(self.key, {"start_ts": self.start_ts, "next_step": next_step + n})
        self.schedule("produce", self.tick)
