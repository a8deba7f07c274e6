"""Fixtures for tests that run real processes: a mosquitto broker on 127.0.0.1, stopped by PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisors.thespian_env import free_loopback_port

pytestmark = pytest.mark.system


def _mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
    )
    if found:
        return found
    reason = "mosquitto is not installed (not on PATH, /usr/sbin or /usr/local/sbin); .ci/run installs it"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    binary = _mosquitto_binary()
    port = free_loopback_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\npersistence false\n"
    )
    log = open(tmp_path / "mosquitto.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(
                    f"mosquitto did not start: {(tmp_path / 'mosquitto.log').read_text()}"
                ) from None
            time.sleep(0.05)
    try:
        yield port
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
