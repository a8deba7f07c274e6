"""The ``garrison`` command: run a node, validate a topology, and the tools on-call needs."""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import click

from actors.linearizability import DEFAULT_MAX_STEPS
from actors.logs import LOG_FORMATS, default_format
from supervisors.topology import TopologyError, load_topology


def _version() -> str:
    try:
        return version("garrison")
    except PackageNotFoundError:
        return "0+unknown (not installed)"


@click.group()
def main() -> None:
    """garrison: supervised actor trees on Thespian for resilient edge AI pipelines."""


@main.command()
@click.argument("topology", required=False, type=click.Path(dir_okay=False))
@click.option("--node", "node_name", help="Node to run (may be left out when the topology has one).")
@click.option("--duration", type=click.FloatRange(min=0), help="Stop by itself after SECONDS.")
@click.option(
    "--log-format", type=click.Choice(LOG_FORMATS), help="Default: console on a terminal, else json."
)
@click.option(
    "--reinit",
    is_flag=True,
    help="Start over with a new, empty event log (after moving the old data_dir/eventlog aside).",
)
def run(
    topology: str | None,
    node_name: str | None,
    duration: float | None,
    log_format: str | None,
    reinit: bool,
) -> None:
    """Run one node of TOPOLOGY (default: the embedded single-node topology)."""
    from supervisors.node import EXIT_LAUNCHER_FAILED, NodeAlreadyRunning, run_node

    try:
        node = load_topology(topology).node(node_name)
    except TopologyError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    try:
        code = run_node(
            node,
            duration=duration,
            log_format=log_format or default_format(),
            topology_file=Path(topology) if topology else None,
            reinit=reinit,
        )
    except NodeAlreadyRunning as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except Exception:  # a launcher bug: node_stopped already said so with exit_code 4; keep them equal
        import traceback

        traceback.print_exc()
        sys.exit(EXIT_LAUNCHER_FAILED)
    sys.exit(code)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
def validate(file: str) -> None:
    """Check a topology FILE; print every error and exit non-zero if there is any."""
    try:
        topo = load_topology(file)
    except TopologyError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    click.echo(f"{file}: ok ({len(topo.nodes)} node(s): {', '.join(n.name for n in topo.nodes)})")


@main.command(name="check-history")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--model", "model", required=True, type=click.Choice(["cas-register", "kv", "log"]))
@click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_STEPS,
    show_default=True,
    help="Search budget for the whole check; a history needing more ends as 'unknown' (exit 3).",
)
def check_history_cmd(file: str, model: str, max_steps: int) -> None:
    """Check a Jepsen-style JSON-lines history FILE for linearizability.

    \b
    Exit codes:
      0  linearizable
      1  not linearizable (a shrunk witness is printed)
      2  bad input: unreadable file, not JSON lines, malformed event, NaN or
         Infinity, numbers too long, nesting too deep (one line names FILE:LINE)
      3  unknown: no verdict within --max-steps search steps
    """
    from actors.linearizability import run_check_history

    sys.exit(run_check_history(file, model, sys.stdout, max_steps=max_steps))


@main.group()
def model() -> None:
    """The gas-leak detector model."""


# Mirrors models/build.py's argparse options (a test keeps the two in step); literal defaults so that
# `--help` does not import numpy and onnxruntime.
MODEL_BUILD_SEED = 7
MODEL_BUILD_OUT = Path(__file__).resolve().parents[1] / "models" / "gas_detector.onnx"


@model.command(name="build")
@click.option(
    "--seed",
    type=int,
    default=MODEL_BUILD_SEED,
    show_default=True,
    help="Seed of the simulated training data (held-out evaluation uses its own seed).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=MODEL_BUILD_OUT,
    show_default="the packaged models/gas_detector.onnx",
    help="Where to write the ONNX model; model_card.json and MODEL_CARD.md go next to it.",
)
def model_build(seed: int, out: Path) -> None:
    """Train and export the ONNX detector and its model card (needs pip install '.[model]')."""
    from models.build import main as build_main

    sys.exit(build_main(["--seed", str(seed), "--out", str(out)]))


@main.command(name="version")
def version_cmd() -> None:
    """Print garrison's version."""
    click.echo(f"garrison {_version()}")


def _register_subcommands() -> None:
    from supervisors.certs import register as register_certs
    from supervisors.control_cli import register as register_control
    from supervisors.deadletters import register
    from supervisors.raft_cli import register as register_raft
    from supervisors.up import register as register_up

    register(main)
    register_control(main)  # ask, tell, status
    register_certs(main)  # certs init, certs issue
    register_up(main)  # up: every node of a topology as local processes
    register_raft(main)  # raft status, transfer-leader, add-member, remove-member


_register_subcommands()

if __name__ == "__main__":
    main()
