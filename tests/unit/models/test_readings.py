"""Block records of the ``readings`` stream: round trip, the legacy single-reading form, damage."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from actors.pipeline.sensor import reading_record
from models.detector import HeuristicDetector
from models.episodes import EpisodeConfig
from models.pipeline import DetectionPipeline
from models.readings import ROW, MalformedReading, ReadingColumns, readings_in
from models.simulator import default_scenario, generate


def _readings(steps: int = 40) -> list[dict]:
    return [reading_record(r, 1234.5) for r in generate(default_scenario(7), n_steps=steps)]


def _stored(record: dict) -> dict:
    """What the event log does to a record: msgpack out and back."""
    return msgspec.msgpack.decode(msgspec.msgpack.encode(record))


def _same(a: dict, b: dict) -> bool:
    nan = {k for k, v in a.items() if isinstance(v, float) and math.isnan(v)}
    return {k: v for k, v in a.items() if k not in nan} == {
        k: v for k, v in b.items() if k not in nan
    } and all(b[k] is None or math.isnan(b[k]) for k in nan)


def test_a_block_round_trips_every_field_of_every_reading_in_order():
    readings = _readings()
    readings[3] = readings[3] | {"location": "hall 2", "source": "mqtt", "unit": "ppm"}
    block = _stored(ReadingColumns.from_dicts(readings).to_record())
    back = ReadingColumns.from_record(block).readings()
    assert len(back) == len(readings)
    assert all(_same(a, b) for a, b in zip(readings, back, strict=True))


def test_a_single_reading_dict_is_still_a_record_of_the_stream():
    reading = _readings(1)[0]
    assert ReadingColumns.from_record(reading).readings() == [reading]
    assert readings_in([reading, ReadingColumns.from_dicts([reading]).to_record()]) == [reading, reading]


def test_concat_merges_descriptors_and_keeps_stream_order():
    readings = _readings()
    parts = [
        ReadingColumns.from_record(_stored(ReadingColumns.from_dicts(readings[i : i + 7]).to_record()))
        for i in range(0, len(readings), 7)
    ]
    merged = ReadingColumns.concat(parts)
    assert len(merged.descriptors) == len({(r["sensor"], r["pollutant"]) for r in readings})
    assert all(_same(a, b) for a, b in zip(readings, merged.readings(), strict=True))


def test_from_records_joins_blocks_of_one_producer_and_merges_any_other_mix():
    readings = _readings()
    same = [_stored(ReadingColumns.from_dicts(readings[i : i + 20]).to_record()) for i in range(0, 200, 20)]
    other = readings[200] | {"sensor": "elsewhere", "location": "hall 9"}
    mixed = [*same[:3], other, _stored(ReadingColumns.from_dicts([other, readings[201]]).to_record())]
    for records, expected in (
        (same, readings[:200]),
        (mixed, [*readings[:60], other, other, readings[201]]),
    ):
        got = ReadingColumns.from_records(records).readings()
        assert all(_same(a, b) for a, b in zip(expected, got, strict=True))
    damaged = [*same[:2], same[2] | {"rows": same[2]["rows"][:-3]}]
    with pytest.raises(MalformedReading, match="damaged"):
        ReadingColumns.from_records(damaged)


def test_the_pipeline_gives_the_same_incidents_from_blocks_as_from_dicts():
    readings = _readings(2000)
    from_dicts = DetectionPipeline(HeuristicDetector(), EpisodeConfig()).process(readings)
    blocks = DetectionPipeline(HeuristicDetector(), EpisodeConfig())
    started = []
    for lo in range(0, len(readings), 60):  # the sensor actor's block: 3 steps of 20 channels
        started += blocks.process(
            ReadingColumns.from_record(_stored(ReadingColumns.from_dicts(readings[lo : lo + 60]).to_record()))
        )
    assert from_dicts, "the scenario must start episodes for this to compare anything"
    assert [s for s, _ in started] == [s for s, _ in from_dicts]
    assert [r for _, r in started] == [r for _, r in from_dicts]


def _with_index(rows: bytes, index: int) -> bytes:
    changed = np.frombuffer(rows, dtype=ROW).copy()
    changed["index"][-1] = index
    return changed.tobytes()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda b: b | {"block": 9}, "format 9 is not 1"),
        (lambda b: b | {"rows": b["rows"][:-8]}, "damaged .*buffer size must be a multiple"),
        (lambda b: b | {"rows": _with_index(b["rows"], 99)}, "outside its"),
        (lambda b: b | {"descriptors": "not bytes"}, "damaged"),
        (lambda b: b | {"descriptors": msgspec.msgpack.encode([["s"]])}, "damaged"),
        (lambda b: {k: v for k, v in b.items() if k != "rows"}, "damaged .*KeyError"),
        (lambda b: b | {"rows": "text"}, "damaged"),
    ],
)
def test_a_damaged_block_is_a_malformed_reading_naming_the_damage(damage, reason):
    block = ReadingColumns.from_dicts(_readings(2)).to_record()
    with pytest.raises(MalformedReading, match=reason):
        ReadingColumns.from_record(damage(block))


@pytest.mark.parametrize(
    ("reading", "reason"),
    [
        ({"sensor": "s1", "pollutant": "NO2", "ts": 1.0, "value": "high"}, "value='high', not a number"),
        ({"sensor": "s1", "pollutant": "NO2", "value": 1.0}, "has no ts"),
        ({"pollutant": "NO2", "ts": 1.0, "value": 1.0}, "no sensor or pollutant"),
        ({"sensor": "s1", "pollutant": "NO2", "ts": 1.0, "value": 1.0, "location": {"a": 1}}, "descriptor"),
        (["not", "a", "map"], "must be a map"),
    ],
)
def test_a_bad_single_reading_is_a_malformed_reading_naming_it(reading, reason):
    with pytest.raises(MalformedReading, match=reason):
        ReadingColumns.from_record(reading)
