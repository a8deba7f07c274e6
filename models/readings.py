"""Readings as columns: the ``readings`` stream's block records, and the arrays the pipeline works on.

A producer appends the readings of one commit (a sensor tick, an MQTT drain) as ONE block record: the
numbers as raw little-endian float64 buffers and the channel descriptors (sensor, pollutant, unit,
location, source) once per block. A consumer then decodes a handful of buffers per block with
``np.frombuffer`` instead of a msgpack map per reading: at a few hundred thousand readings/s the per-reading
decode was the inference actor's largest cost, larger than the model. A single reading stored as a dict
(older logs, tests, a replayed dead letter) is still a valid record of the stream.

Pure: numpy and msgspec only, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import numpy as np

__all__ = ["BLOCK_FORMAT", "MalformedReading", "ReadingColumns", "readings_in"]

BLOCK_FORMAT = 1  # the "block" field of a block record
_U4 = np.dtype("<u4")
# one packed row per reading: ONE buffer per block (one frombuffer, one concatenate per chunk)
ROW = np.dtype([("index", "<u4"), ("ts", "<f8"), ("value", "<f8"), ("ingested_at", "<f8")])
_DESCRIPTOR_FIELDS = ("sensor", "pollutant", "unit", "location", "source")
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode
# decoded descriptor lists by their encoded bytes: a sensor's blocks repeat the same descriptors, so a
# consumer decodes them once (bounded: cleared when full)
_DESCRIPTOR_CACHE: dict[bytes, list[tuple[Any, ...]]] = {}
_DESCRIPTOR_CACHE_MAX = 512


class MalformedReading(ValueError):
    """A record of ``readings`` (a reading or a block) that cannot be scored: a missing field, a ts or
    value that is not a number, a block whose buffers do not agree."""


def _hashable(location: Any) -> Any:
    return tuple(location) if isinstance(location, list) else location


class ReadingColumns:
    """``n`` readings: reading ``i`` has descriptor ``descriptors[index[i]]``, ``ts[i]``, ``value[i]`` (NaN:
    none) and ``ingested_at[i]`` (NaN: not recorded). The columns are views of ``rows`` (:data:`ROW`)."""

    __slots__ = ("descriptors", "index", "ingested_at", "rows", "ts", "value")

    def __init__(self, descriptors: list[tuple[Any, ...]], rows: np.ndarray) -> None:
        self.descriptors = descriptors  # (sensor, pollutant, unit, location, source)
        self.rows = rows
        self.index: np.ndarray = rows["index"]
        self.ts: np.ndarray = rows["ts"]
        self.value: np.ndarray = rows["value"]
        self.ingested_at: np.ndarray = rows["ingested_at"]

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def from_dicts(cls, readings: Sequence[dict[str, Any]]) -> ReadingColumns:
        """Columns of reading dicts (the stream's single-reading form); ``MalformedReading`` names the
        first bad one."""
        codes: dict[tuple[Any, ...], int] = {}
        rows = np.empty(len(readings), dtype=ROW)
        index, ts, value, ingested = rows["index"], rows["ts"], rows["value"], rows["ingested_at"]
        for i, r in enumerate(readings):
            if not isinstance(r, dict):
                raise MalformedReading(f"reading {i} of the chunk is a {type(r).__name__}, not a map")
            key = tuple(_hashable(r.get(f)) for f in _DESCRIPTOR_FIELDS)
            where = f"reading {i} of the chunk ({key[0]!r}/{key[1]!r})"
            if key[0] is None or key[1] is None:
                raise MalformedReading(f"{where} has no sensor or pollutant: fix its producer")
            try:
                index[i] = codes.setdefault(key, len(codes))
            except TypeError:  # an unhashable descriptor field (a map as location)
                raise MalformedReading(f"{where} has a descriptor that is not text or numbers") from None
            for column, name in ((ts, "ts"), (value, "value"), (ingested, "ingested_at")):
                field = r.get(name)
                if name == "ts" and name not in r:
                    raise MalformedReading(f"{where} has no ts: fix its producer")
                try:
                    column[i] = _number(field)
                except (TypeError, ValueError):
                    raise MalformedReading(
                        f"{where} has {name}={field!r}, not a number: fix its producer (the chunk is "
                        "retried as is after a restart)"
                    ) from None
        return cls(list(codes), rows)

    @classmethod
    def from_record(cls, payload: Any) -> ReadingColumns:
        """The readings of one record of the stream: a block, or a single reading dict."""
        if not isinstance(payload, dict):
            raise MalformedReading(f"a readings record must be a map, got {type(payload).__name__}")
        if "block" not in payload:
            return cls.from_dicts([payload])
        if payload.get("block") != BLOCK_FORMAT:
            raise MalformedReading(
                f"readings block format {payload.get('block')!r} is not {BLOCK_FORMAT}: written by a newer "
                "garrison? run the same version on every node"
            )
        try:
            descriptors = _descriptors(payload["descriptors"])
            rows = np.frombuffer(payload["rows"], dtype=ROW)
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedReading(f"readings block is damaged ({type(exc).__name__}: {exc})") from None
        if len(rows) and int(rows["index"].max()) >= len(descriptors):
            raise MalformedReading(f"readings block refers to a descriptor outside its {len(descriptors)}")
        return cls(descriptors, rows)

    @classmethod
    def from_records(cls, payloads: Sequence[Any]) -> ReadingColumns:
        """The readings of several records in stream order (a consumer's batch). The usual batch, blocks
        of one producer with the same descriptors, is decoded as ONE buffer: one join, one frombuffer,
        one check, whatever the number of blocks."""
        if (
            len(payloads) > 1
            and all(isinstance(p, dict) and p.get("block") == BLOCK_FORMAT for p in payloads)
            and all(isinstance(p.get("rows"), bytes) and len(p["rows"]) % ROW.itemsize == 0 for p in payloads)
            and all(p.get("descriptors") == payloads[0].get("descriptors") for p in payloads)
        ):
            return cls.from_record(payloads[0] | {"rows": b"".join([p["rows"] for p in payloads])})
        return cls.concat([cls.from_record(p) for p in payloads])

    def to_record(self) -> dict[str, Any]:
        """The block record of these readings (one ``readings`` record)."""
        descriptors = [[list(f) if isinstance(f, tuple) else f for f in d] for d in self.descriptors]
        return {
            "block": BLOCK_FORMAT,
            "descriptors": _encode(descriptors),
            "rows": self.rows.tobytes(),
        }

    @classmethod
    def concat(cls, parts: Sequence[ReadingColumns]) -> ReadingColumns:
        """One set of columns for several (the blocks of one chunk), descriptors merged."""
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls([], np.empty(0, dtype=ROW))
        # as bytes: numpy's concatenate of structured arrays goes field by field, ~100x slower
        rows = np.concatenate([p.rows.view(np.uint8) for p in parts]).view(ROW)
        if all(p.descriptors is parts[0].descriptors for p in parts):
            # the usual chunk: blocks of one sensor actor share ONE decoded descriptor list (the decode
            # cache), so the indices need no remapping
            return cls(parts[0].descriptors, rows)
        merged: dict[tuple[Any, ...], int] = {}
        remaps: dict[int, np.ndarray] = {}  # by id of a descriptor list: blocks often share one
        indices = []
        for part in parts:
            remap = remaps.get(id(part.descriptors))
            if remap is None:
                remap = remaps[id(part.descriptors)] = np.array(
                    [merged.setdefault(d, len(merged)) for d in part.descriptors], dtype=_U4
                )
            indices.append(remap[part.index] if len(part.index) else part.index)
        rows["index"] = np.concatenate(indices)
        return cls(list(merged), rows)

    def reading(self, i: int) -> dict[str, Any]:
        """Reading ``i`` as a dict, the stream's single-reading form."""
        sensor, pollutant, unit, location, source = self.descriptors[int(self.index[i])]
        value, ingested = float(self.value[i]), float(self.ingested_at[i])
        return {
            "sensor": sensor,
            "pollutant": pollutant,
            "ts": float(self.ts[i]),
            "value": None if math.isnan(value) else value,
            "unit": unit,
            "location": list(location) if isinstance(location, tuple) else location,
            "source": source,
            "ingested_at": None if math.isnan(ingested) else ingested,
        }

    def readings(self) -> list[dict[str, Any]]:
        return [self.reading(i) for i in range(len(self))]


def readings_in(payloads: Iterable[Any]) -> list[dict[str, Any]]:
    """Every reading of these ``readings`` records, as dicts, in stream order (tools and tests)."""
    return [r for p in payloads for r in ReadingColumns.from_record(p).readings()]


def _descriptors(encoded: Any) -> list[tuple[Any, ...]]:
    if not isinstance(encoded, bytes):
        raise TypeError(f"descriptors must be bytes, got {type(encoded).__name__}")
    cached = _DESCRIPTOR_CACHE.get(encoded)
    if cached is not None:
        return cached
    decoded = _decode(encoded)
    if not isinstance(decoded, list) or not all(
        isinstance(d, list) and len(d) == len(_DESCRIPTOR_FIELDS) and d[0] is not None and d[1] is not None
        for d in decoded
    ):
        raise ValueError("descriptors must be [sensor, pollutant, unit, location, source] lists")
    descriptors = [tuple(_hashable(f) for f in d) for d in decoded]
    if len(_DESCRIPTOR_CACHE) >= _DESCRIPTOR_CACHE_MAX:
        _DESCRIPTOR_CACHE.clear()
    _DESCRIPTOR_CACHE[encoded] = descriptors
    return descriptors


def _number(x: Any) -> float:
    """A float (``None`` -> NaN); ``TypeError``/``ValueError`` for anything else but a real number."""
    if x is None:
        return math.nan
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise TypeError(f"{x!r} is not a number")
    return float(x)
