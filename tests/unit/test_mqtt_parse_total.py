"""``parse_reading`` is total: for ANY bytes it returns a reading or raises ``MalformedReading``.

Anything else escaping it would crash the MQTT bridge before its ack, the broker would redeliver the same
payload to every new instance, and one message would become a permanent outage.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.pipeline.mqtt_bridge import MAX_PAYLOAD, MalformedReading, parse_reading

VALID = {"sensor": "s1", "pollutant": "NO2", "value": 1.5, "unit": "ppb", "timestamp": 1_700_000_000}
_storable = msgspec.msgpack.Encoder()  # what the event log must be able to store for an accepted reading


def _total(payload: bytes, topic: str = "sensor/s1/raw") -> dict[str, Any] | str:
    """The reading, or the rejection reason; any other exception fails the test."""
    try:
        reading = parse_reading(topic, payload)
    except MalformedReading as exc:
        assert isinstance(exc.reason, str) and exc.reason
        return exc.reason
    # an accepted reading is something the bridge can store and downstream can use
    assert math.isfinite(reading["value"]) and math.isfinite(reading["ts"])
    _storable.encode(reading)
    return reading


def _with(**fields: Any) -> bytes:
    return json.dumps({**VALID, **fields}).encode()


ADVERSARIAL = [
    # reported: a number of 400 digits (math.isfinite raises OverflowError)
    (b'{"pollutant":"NO2","unit":"ppb","ts":1,"value":' + b"9" * 400 + b"}", "value must be finite"),
    (b'{"pollutant":"NO2","unit":"ppb","value":1,"ts":' + b"9" * 400 + b"}", "ts must be finite"),
    (_with(location=[int("9" * 400), 1]), "location[] must be finite"),
    # reported: deep nesting (RecursionError inside json)
    (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    (b'{"a":' * 5000 + b"1" + b"}" * 5000, "nested too deeply"),
    (b"[" * 100_000 + b"]" * 100_000, "larger than"),
    # a huge payload is rejected on its size, before anything is parsed
    (b" " * (MAX_PAYLOAD + 1), "larger than"),
    (b'{"x": "' + b"a" * (10 * MAX_PAYLOAD) + b'"}', "larger than"),
    # more digits than Python converts (ValueError), an exponent that overflows to inf
    (b'{"pollutant":"NO2","unit":"ppb","ts":1,"value":' + b"9" * 5000 + b"}", "not JSON"),
    (b'{"pollutant":"NO2","unit":"ppb","ts":1,"value":1e999}', "value must be finite"),
    (b'{"pollutant":"NO2","unit":"ppb","ts":1,"value":-Infinity}', "value must be finite"),
    # bytes that are not UTF-8, a lone surrogate the event log could not store
    (b"\xff\xfe\x00{", "not JSON"),
    (b'{"pollutant":"\\ud800","unit":"ppb","ts":1,"value":1}', "not valid UTF-8"),
    (b'{"pollutant":"NO2","unit":"ppb","ts":"\\udfff","value":1}', "not ISO 8601"),
    # ill-typed fields
    (_with(value="1"), "value must be a number"),
    (_with(value=None), "value must be a number"),
    (_with(value=[1]), "value must be a number"),
    (_with(pollutant={"a": 1}), "pollutant must be a non-empty string"),
    (_with(sensor=7), "sensor must be a non-empty string"),
    (_with(pollutant="x" * 10_000), "longer than"),
    (_with(timestamp=True), "timestamp must be a number"),
    (_with(timestamp="9999-99-99"), "not ISO 8601"),
    (_with(location={"lat": 1}), "location must be"),
    (_with(location=[1, "2"]), "location[] must be a number"),
    (_with(location=[1, 2, 3, 4]), "location must be"),
    (b"null", "not a JSON object"),
    (b'"a string"', "not a JSON object"),
    (b"", "not JSON"),
]


@pytest.mark.parametrize(("payload", "reason"), ADVERSARIAL, ids=lambda v: str(v)[:40])
def test_adversarial_payloads_are_rejections_with_a_reason(payload: bytes, reason: str) -> None:
    got = _total(payload)
    assert isinstance(got, str), f"accepted {got!r}"
    assert reason in got


def test_a_deeply_nested_payload_below_the_size_bound_really_recurses_too_deep_for_json() -> None:
    payload = b"[" * 5000 + b"]" * 5000
    assert len(payload) <= MAX_PAYLOAD  # the size bound does not hide the RecursionError path
    with pytest.raises(RecursionError):
        json.loads(payload)  # the fault this guards against is real
    assert "nested too deeply" in _total(payload)


def test_a_400_digit_number_really_overflows_math_isfinite() -> None:
    with pytest.raises(OverflowError):
        math.isfinite(int("9" * 400))  # the reported crash is real ...
    assert "finite" in _total(_with(value=int("9" * 400)))  # ... and is now a rejection


def test_a_size_bound_given_by_the_caller_is_applied() -> None:
    payload = _with()
    assert isinstance(_total(payload), dict)
    with pytest.raises(MalformedReading, match="larger than 10 bytes"):
        parse_reading("sensor/s1/raw", payload, max_payload=10)


def test_non_bytes_payload_and_odd_topics_are_rejections() -> None:
    with pytest.raises(MalformedReading, match="payload must be bytes"):
        parse_reading("sensor/s1/raw", "text")  # type: ignore[arg-type]
    no_sensor = json.dumps({k: v for k, v in VALID.items() if k != "sensor"}).encode()
    assert "topic names none" in _total(no_sensor, topic="sensor")
    assert "longer than" in _total(no_sensor, topic="sensor/" + "x" * 1000 + "/raw")
    assert _total(no_sensor, topic="sensor/roof/raw")["sensor"] == "roof"  # type: ignore[index]


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**500), max_value=10**500)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
_field_names = st.sampled_from(
    ["sensor", "sensor_id", "pollutant", "value", "unit", "ts", "timestamp", "location"]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_but_malformed_reading(payload: bytes) -> None:
    _total(payload)


# JSON texts that broke (or could break) a field's check, spliced in as a field's raw value
_nasty_json = st.sampled_from(
    [
        "9" * 400,
        "-" + "9" * 400,
        "9" * 5000,
        "1e999",
        "NaN",
        "-Infinity",
        '"\\ud800"',
        '"\\udfff"',
        '"0001-01-01T00:00:00"',
        '"9999-12-31T23:59:59-23:59"',
        "[" * 3000 + "]" * 3000,
        "[" + "9" * 400 + ", 1]",
        '""',
        "true",
        "{}",
        "null",
    ]
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_field_names, _nasty_json | _json.map(json.dumps)), min_size=1, max_size=3))
def test_readings_with_hostile_field_values_never_raise_anything_but_malformed_reading(
    fields: list[tuple[str, str]],
) -> None:
    # one to three fields of a valid reading replaced by raw JSON text, so a check deep in the parse is
    # reached with everything before it valid
    doc = {**VALID, "location": [45.5, 9.2]}
    for name, _ in fields:
        doc.pop(name, None)
    parts = [json.dumps(doc)[1:-1], *(f"{json.dumps(name)}: {raw}" for name, raw in fields)]
    _total(("{" + ", ".join(p for p in parts if p) + "}").encode())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_byte_mutations_of_a_valid_reading_never_raise_anything_but_malformed_reading(data: Any) -> None:
    payload = bytearray(_with(location=[45.5, 9.2]))
    for _ in range(data.draw(st.integers(1, 6))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "repeat"]))
        at = data.draw(st.integers(0, max(len(payload) - 1, 0)))
        if op == "flip" and payload:
            payload[at] = data.draw(st.integers(0, 255))
        elif op == "insert":
            payload[at:at] = data.draw(
                st.sampled_from([b"[", b"{", b"9" * 400, b"\\ud800", b"\xff", b"1e999"])
            )
        elif op == "delete" and payload:
            del payload[at : at + data.draw(st.integers(1, 8))]
        elif op == "repeat":
            payload[at:at] = payload[at : at + 4] * data.draw(st.integers(1, 3000))
    _total(bytes(payload))
