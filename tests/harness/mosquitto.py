"""A real mosquitto on 127.0.0.1 for tests and benchmarks: started with a config of our own, stopped by PID.

One place for what the conftest fixture, the chaos soak, the MQTT TLS tests and the latency benchmark all
need: a free loopback port, a private config and log, a wait until it accepts connections, and a stop by
PID (SIGTERM, then SIGKILL) whatever happens in between.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from supervisors.thespian_env import free_loopback_port

__all__ = ["Mosquitto", "MosquittoMissing", "mosquitto_binary", "running_mosquitto"]

_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


class MosquittoMissing(RuntimeError):
    """mosquitto is not installed; ``.ci/run`` installs it (``apt-get install mosquitto``)."""


@dataclass(frozen=True)
class Mosquitto:
    port: int
    pid: int
    log_path: Path


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next((p for p in _CANDIDATES if os.access(p, os.X_OK)), None)
    if not found:
        raise MosquittoMissing(
            "mosquitto is not installed (not on PATH, /usr/sbin or /usr/local/sbin); .ci/run installs it"
        )
    return found


@contextlib.contextmanager
def running_mosquitto(workdir: Path, listener_conf: str = "", *, nodelay: bool = True) -> Iterator[Mosquitto]:
    """Run mosquitto with a listener on a free loopback port. ``listener_conf`` adds lines after the
    ``listener`` line (TLS files, ``require_certificate`` ...); without it the listener is anonymous."""
    binary = mosquitto_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_loopback_port()
    lines = [f"listener {port} 127.0.0.1", listener_conf or "allow_anonymous true", "persistence false"]
    if nodelay:
        lines.append("set_tcp_nodelay true")  # else Nagle + delayed ACK cost ~88 ms per QoS 1 round trip
    conf = workdir / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    log_path = workdir / "mosquitto.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not start: {log_path.read_text()}") from None
                time.sleep(0.05)
        yield Mosquitto(port, proc.pid, log_path)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
