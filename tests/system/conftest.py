"""Fixtures for tests that run real processes: a mosquitto broker on 127.0.0.1, stopped by PID."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.mosquitto import MosquittoMissing, mosquitto_binary, running_mosquitto

pytestmark = pytest.mark.system


def _mosquitto_binary() -> str:
    try:
        return mosquitto_binary()
    except MosquittoMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    _mosquitto_binary()
    with running_mosquitto(tmp_path) as mosquitto:
        yield mosquitto.port
