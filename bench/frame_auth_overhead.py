"""What the frame HMAC costs: actor<->actor ping-pong on multiprocTCPBase with and without it, in one run.

    python -m bench.frame_auth_overhead [--round-trips 1000] [--repeats 3]

``frame_auth.install`` patches Thespian for a whole process and the processes it forks, so each variant runs
in its own child process (plain, hmac, plain, hmac, ... alternating so that load on the machine hits both
alike). Each child reports its median microseconds per round trip (two frames and two acknowledgements, each
one authenticated when patched). The codec figures are the same message through ``pickle`` alone and through
the authenticated codec, in this process: the part of the difference that is the MAC itself.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thespian.actors import Actor, ActorAddress

REPO = Path(__file__).resolve().parents[1]
PING, PONG = "ping", "pong"


@dataclass(frozen=True, slots=True)
class Rally:
    ponger: ActorAddress
    round_trips: int


class Ponger(Actor):  # type: ignore[misc]
    def receiveMessage(self, msg: object, sender: ActorAddress) -> None:
        if msg == PING:
            self.send(sender, PONG)


class Pinger(Actor):  # type: ignore[misc]
    """On a :class:`Rally`, plays that many ping-pongs with the ponger, then answers the elapsed seconds."""

    def receiveMessage(self, msg: object, sender: ActorAddress) -> None:
        if isinstance(msg, Rally):
            self.requester, self.ponger, self.left = sender, msg.ponger, msg.round_trips
            self.began = time.perf_counter()
            self.send(self.ponger, PING)
        elif msg == PONG:
            self.left -= 1
            if self.left > 0:
                self.send(self.ponger, PING)
            else:
                self.send(self.requester, time.perf_counter() - self.began)


def run_variant(hmac_on: bool, round_trips: int, repeats: int) -> dict[str, Any]:
    """In a fresh process: a node-like ActorSystem, then ``repeats`` timed rallies."""
    from supervisors import frame_auth
    from supervisors.thespian_env import bind_loopback_only, bound_transmit_timeout, free_loopback_port

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["THESPIAN_BASE_IPADDR"] = "127.0.0.1"
        os.environ["THESPLOG_FILE"] = str(Path(tmp) / "thespian.log")
        bind_loopback_only()
        bound_transmit_timeout()
        if hmac_on:
            frame_auth.install()
        from thespian.actors import ActorSystem

        asys = ActorSystem("multiprocTCPBase", {"Admin Port": free_loopback_port()}, logDefs=None)
        try:
            pinger = asys.createActor(Pinger)
            ponger = asys.createActor(Ponger)
            asys.ask(pinger, Rally(ponger, 100), 60)  # warm-up: sockets opened, code paths hot
            per_rt = [asys.ask(pinger, Rally(ponger, round_trips), 120) / round_trips for _ in range(repeats)]
        finally:
            asys.shutdown()
    return {"hmac": hmac_on, "us_per_round_trip": statistics.median(per_rt) * 1e6}


def codec_us(round_trips: int = 20000) -> tuple[float, float]:
    """Microseconds to encode + decode one ping frame: pickle alone, then the authenticated codec."""
    from supervisors.frame_auth import AuthenticatedPickle

    message = (("127.0.0.1", 40000), PING)  # what Thespian frames: (sender address, message)
    codec = AuthenticatedPickle(os.urandom(32))

    def timed(dumps: Any, loads: Any) -> float:
        began = time.perf_counter()
        for _ in range(round_trips):
            loads(dumps(message))
        return (time.perf_counter() - began) / round_trips * 1e6

    return timed(pickle.dumps, pickle.loads), timed(codec.dumps, codec.loads)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--round-trips", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", choices=("plain", "hmac"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant == "hmac", args.round_trips, args.repeats)))
        return
    figures: dict[bool, list[float]] = {False: [], True: []}
    sizes = ["--round-trips", str(args.round_trips), "--repeats", str(args.repeats)]
    for variant in ("plain", "hmac", "plain", "hmac"):
        out = subprocess.run(
            [sys.executable, "-m", "bench.frame_auth_overhead", "--variant", variant, *sizes],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        figures[result["hmac"]].append(result["us_per_round_trip"])
    plain, hmac_on = min(figures[False]), min(figures[True])
    pickle_us, auth_us = codec_us()
    print(
        f"actor ping-pong, multiprocTCPBase, best of 2 runs x median of {args.repeats} x {args.round_trips}:"
    )
    print(f"  without frame HMAC: {plain:8.1f} us per round trip")
    print(f"  with frame HMAC:    {hmac_on:8.1f} us per round trip")
    print(f"  ratio:              {hmac_on / plain:8.3f}")
    print(f"codec, one frame encoded + decoded: pickle {pickle_us:.2f} us, with HMAC {auth_us:.2f} us")


if __name__ == "__main__":
    main()
