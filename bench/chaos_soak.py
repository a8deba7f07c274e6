"""Chaos soak: the default pipeline on a real node under a seeded nemesis, for as long as you like.

    python -m bench.chaos_soak [--seed N] [--minutes M] [--faults F] [--steps S] [--speedup X] [--raft3]
                               [--no-mqtt] [--keep]

The nemesis (``tests/system/nemesis.py``) SIGKILLs and SIGSTOPs random processes of the node's tree
(workers, nested supervisors, the root, the launcher, which it then restarts on the same data_dir), feeds
poison records to a consumer and hostile payloads to an MQTT bridge on a real mosquitto (when installed).
Then the pipeline must drain and the node stop cleanly, and the run is compared with a clean run of the same
simulator seed: the same committed incidents, each once in the file sink, nothing of the node left running,
every kill accounted for in the logs; with ``--raft3`` (config/raft-3.yaml's shape) every replica's state
machine identical. It prints the seed first, each fault as it lands, and the verdicts,
then one JSON line; the exit code is 1 when any verdict failed. ``--seed`` reproduces a run's fault plan.

``--steps`` sizes the sensor run (10 simulated seconds a step); with ``--minutes`` the sensors are slowed so
that readings keep coming for about the whole soak, and faults hit a busy pipeline.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

from tests.system.nemesis import Layout, Nemesis, clean_timeline, mosquitto

STEP_S = 10.0  # simulated seconds per sensor step (models.simulator's default interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=None, help="nemesis seed (default: random, printed)")
    parser.add_argument("--minutes", type=float, default=5.0, help="inject faults for this long")
    parser.add_argument("--faults", type=int, default=None, help="stop after this many faults instead")
    parser.add_argument(
        "--steps", type=int, default=1080, help="sensor steps (5 sensors x 4 pollutants each)"
    )
    parser.add_argument("--speedup", type=float, default=None, help="simulated seconds per wall second")
    parser.add_argument(
        "--no-mqtt", action="store_true", help="no MQTT bridge even if mosquitto is installed"
    )
    parser.add_argument("--raft3", action="store_true", help="config/raft-3.yaml's 3-replica incident log")
    parser.add_argument("--keep", action="store_true", help="keep the data dirs (printed) for a post-mortem")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**9)
    print(f"chaos soak seed {seed}  (reproduce: python -m bench.chaos_soak --seed {seed})", flush=True)
    speedup = args.speedup or max(60.0, args.steps * STEP_S / max(args.minutes * 60, 1.0))
    workdir = Path(tempfile.mkdtemp(prefix=f"garrison-chaos-{seed}-"))
    keep = args.keep
    try:
        layout = Layout(raft3=args.raft3)
        reference = clean_timeline(workdir / "clean", args.steps, layout=layout)
        print(f"clean run: {len(reference)} incidents", flush=True)
        with mosquitto(workdir / "broker") as port:
            nemesis = Nemesis(
                seed,
                workdir / "chaos",
                steps=args.steps,
                speedup=speedup,
                mqtt_port=None if args.no_mqtt else port,
                layout=layout,
                log=lambda line: print(line, flush=True),
            )
            minutes = None if args.faults is not None else args.minutes
            try:
                report = nemesis.run(faults=args.faults, minutes=minutes)
            except BaseException:
                keep = True  # a node that did not start or drain: its logs and data are the evidence
                raise
            nemesis.compare(reference)
            keep = keep or bool(report.failures)
    finally:
        if keep:
            print(f"data kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report.summary())
    print(
        json.dumps(
            {
                "bench": "chaos_soak",
                "seed": seed,
                "faults": len(report.faults),
                "node_starts": report.node_starts,
                "poison_fed": report.poison_fed,
                "hostile_fed": report.hostile_fed,
                "failures": report.failures,
            }
        )
    )
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
