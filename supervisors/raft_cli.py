"""``garrison raft status | transfer-leader TO | add-member NAME | remove-member NAME``.

Raft operations on a running node, through its control socket (``supervisors.client``): the node's Raft
replica answers the JSON ops ``raft_status``, ``transfer_leader`` and ``change_membership``
(``actors/raft/replica.py``). Leadership transfer and membership changes must be asked of the leader: when
the named node is a follower, the command goes on to the leader's node when that node runs on this host
(found by ``--topology`` or among this user's running nodes) and otherwise says where to run it.

A membership change is one step at a time, as the core allows: ``add-member`` adds NAME as a learner (it
catches up without voting), then promotes it once its log is close enough (retried until ``--wait`` runs
out), and waits until the new configuration is applied; ``--learner`` stops after the first step.
``remove-member`` removes a voter or a learner. In a cluster a member must be one of the topology's
``cluster.raft_members`` (only those may send Raft traffic over the peer links).

Exit codes as ``garrison ask``: 0 done, 1 not done within ``--wait``, 2 bad input, 3 no such replica, 4 no
node running / reachable, 5 refused by the replica (the message says why and what to do).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import click

from supervisors.client import NodeClient, NoSuchActor, connect
from supervisors.control_cli import (
    EXIT_BAD_INPUT,
    EXIT_NO_SUCH_ACTOR,
    EXIT_REFUSED,
    EXIT_TIMEOUT,
    _connect,
    _run,
    _where,
)

__all__ = ["raft", "register"]

DEFAULT_REPLICA = "root/incident-log"  # where config/city.yaml and the cluster tests put it
POLL_S = 0.1
# Refusals worth retrying while --wait lasts: the previous change is not applied yet, a transfer is in
# progress, or the learner is still catching up (LearnerNotCaughtUp is a ProposalDropped).
_RETRYABLE = ("ProposalDropped:", "LearnerNotCaughtUp:")


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def replica_path_of(topology: str | None, node: str | None) -> str:
    """The node's publishing Raft replica's tree path, from its topology when given (else the default)."""
    if topology is None:
        return DEFAULT_REPLICA
    from supervisors.spec import SupervisorSpec
    from supervisors.topology import TopologyError, load_topology

    try:
        tree = load_topology(topology).node(node).tree
    except TopologyError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    found: list[tuple[str, bool]] = []

    def walk(spec: SupervisorSpec, path: str) -> None:
        for child in spec.children:
            here = f"{path}/{child.id}"
            if isinstance(child, SupervisorSpec):
                walk(child, here)
            elif child.actor.rsplit(".", 1)[-1] == "RaftReplicaActor":
                found.append((here, bool(child.args.get("publish", True))))

    walk(tree, tree.id)
    if not found:
        _fail(
            f"node {node!r} of {topology} runs no RaftReplicaActor: name one with --replica", EXIT_BAD_INPUT
        )
    publishing = [path for path, publish in found if publish]
    return (publishing or [found[0][0]])[0]


@dataclass
class Target:
    """Where the command talks: the node (``--node``/``--data-dir``/``--topology``) and its replica path."""

    node: str | None
    data_dir: str | None
    topology: str | None
    replica: str

    def client(self) -> NodeClient:
        return _connect(self.node, self.data_dir, self.topology)

    def ask(self, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        with self.client() as client:
            reply = _run(lambda: self._ask_replica(client, message, timeout))
        if not isinstance(reply, dict):
            _fail(f"{self.replica} answered {reply!r}: is it a RaftReplicaActor?", EXIT_REFUSED)
        if "error" in reply:
            _fail(f"{self.replica}: {reply['error']}", EXIT_REFUSED)
        return reply

    def _ask_replica(self, client: NodeClient, message: dict[str, Any], timeout: float) -> Any:
        try:
            return client.ask(self.replica, message, timeout=timeout)
        except NoSuchActor:
            where = f"node {self.node!r}" if self.node else "the node"
            _fail(
                f"{where} runs no Raft replica at {self.replica} (an edge node runs none): ask a gateway node "
                "(--node), or name the replica's path with --replica",
                EXIT_NO_SUCH_ACTOR,
            )

    def status(self) -> dict[str, Any]:
        return self.ask({"op": "raft_status"})

    def on_node(self, name: str) -> Target:
        """The same replica path on node ``name`` (cluster trees have the replica at the same path)."""
        if self.topology is not None:
            return Target(name, None, self.topology, self.replica)
        return Target(name, None, None, self.replica)


def _target(node: str | None, data_dir: str | None, topology: str | None, replica: str | None) -> Target:
    return Target(node, data_dir, topology, replica or replica_path_of(topology, node))


def leader_target(target: Target) -> tuple[Target, dict[str, Any]]:
    """The leader's node and its status: ``target`` itself when it leads, else the leader's node on this
    host (in a cluster a replica's id is its node's name)."""
    status = target.status()
    if status.get("role") == "leader":
        return target, status
    leader = status.get("leader")
    if not leader:
        _fail(
            f"{status.get('replica')} knows no leader (role {status.get('role')}, term {status.get('term')}): "
            "wait for an election (a majority of the members must be up) and retry",
            EXIT_REFUSED,
        )
    there = target.on_node(str(leader))
    try:
        connect(topology=there.topology, node=there.node).close()
    except Exception:  # not on this host, ambiguous, or a topology without that node
        _fail(
            f"{status.get('replica')} is not the leader; the leader is {leader!r}, whose node does not run "
            f"on this host (or is not found): run this command on {leader!r}'s host",
            EXIT_REFUSED,
        )
    leader_status = there.status()
    if leader_status.get("role") != "leader":
        _fail(
            f"{leader!r} is no longer the leader (it says {leader_status.get('leader')!r}): retry",
            EXIT_REFUSED,
        )
    click.echo(f"{status.get('replica')} is a {status.get('role')}; asking the leader {leader}", err=True)
    return there, leader_status


def render(status: dict[str, Any]) -> str:
    learners = ", ".join(status.get("learners") or []) or "-"
    moving = f", transferring to {status['lead_transferee']}" if status.get("lead_transferee") else ""
    return (
        f"{status.get('replica')}: {status.get('role')}, term {status.get('term')}, "
        f"leader {status.get('leader') or '-'}{moving}\n"
        f"  commit {status.get('commit')}, applied {status.get('applied')}, "
        f"incidents applied {status.get('incidents_applied')}\n"
        f"  voters {', '.join(status.get('voters') or []) or '-'}; learners {learners}"
    )


def wait_for(check: Callable[[], dict[str, Any] | None], wait: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    while True:
        done = check()
        if done is not None:
            return done
        if time.monotonic() >= deadline:
            _fail(f"{what} not seen within {wait}s (retry, or raise --wait)", EXIT_TIMEOUT)
        time.sleep(POLL_S)


def change(target: Target, kind: str, member: str, wait: float) -> dict[str, Any]:
    """Propose one membership step on the leader, retrying while the core says "not yet"."""
    deadline = time.monotonic() + wait
    while True:
        reply = target.ask({"op": "change_membership", "kind": kind, "replica": member})
        if reply.get("ok"):
            return reply
        reason = str(reply.get("reason"))
        if not reason.startswith(_RETRYABLE) or time.monotonic() >= deadline:
            code = EXIT_TIMEOUT if reason.startswith(_RETRYABLE) else EXIT_REFUSED
            _fail(f"{kind} {member}: {reason}", code)
        time.sleep(POLL_S)


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--replica",
        help=f"The Raft replica's tree path (default: found in --topology, else {DEFAULT_REPLICA}).",
    )(f)
    return _where(f)


def _wait_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--wait",
        type=click.FloatRange(min=0.1, max=3600),
        default=15.0,
        show_default=True,
        help="Seconds to wait for the change to take effect.",
    )(f)


@click.group()
def raft() -> None:
    """Raft operations on a running node: status, leadership transfer, membership."""


@raft.command(name="status")
@_common
@click.option("--json", "as_json", is_flag=True, help="Print the replica's status as one JSON object.")
def status_cmd(
    node: str | None, data_dir: str | None, topology: str | None, replica: str | None, as_json: bool
) -> None:
    """Role, term, leader, commit/applied and membership of the node's Raft replica."""
    status = _target(node, data_dir, topology, replica).status()
    click.echo(json.dumps(status, sort_keys=True) if as_json else render(status))


@raft.command(name="transfer-leader")
@click.argument("to")
@_common
@_wait_option
def transfer_cmd(
    to: str, node: str | None, data_dir: str | None, topology: str | None, replica: str | None, wait: float
) -> None:
    """Hand leadership to the voter TO (e.g. before taking the leader's node down)."""
    leader, status = leader_target(_target(node, data_dir, topology, replica))
    if status.get("replica") == to:
        click.echo(f"{to} already leads (term {status.get('term')})")
        return
    if to not in (status.get("voters") or []):
        _fail(
            f"{to!r} is not a voter ({status.get('voters')}): only a voter can lead (an edge node never is "
            "one); a gateway of cluster.raft_members outside the configuration is added with "
            "`garrison raft add-member`",
            EXIT_REFUSED,
        )
    reply = leader.ask({"op": "transfer_leader", "to": to})
    if not reply.get("ok"):
        _fail(f"transfer to {to} refused: {reply.get('reason')}", EXIT_REFUSED)

    def led_by_to() -> dict[str, Any] | None:
        now = leader.status()
        return now if now.get("leader") == to and now.get("role") != "leader" else None

    done = wait_for(led_by_to, wait, f"{to} leading")
    click.echo(f"{to} leads now (term {done.get('term')}; {status.get('replica')} follows)")


@raft.command(name="add-member")
@click.argument("name")
@_common
@_wait_option
@click.option("--learner", is_flag=True, help="Add NAME as a non-voting learner only (no promotion).")
def add_member_cmd(
    name: str,
    node: str | None,
    data_dir: str | None,
    topology: str | None,
    replica: str | None,
    wait: float,
    learner: bool,
) -> None:
    """Add NAME to the Raft configuration: as a learner, then promoted to voter once caught up."""
    leader, status = leader_target(_target(node, data_dir, topology, replica))
    if name in (status.get("voters") or []):
        click.echo(f"{name} is already a voter: nothing to do")
        return
    if name not in (status.get("learners") or []):
        change(leader, "add_learner", name, wait)
        click.echo(f"{name} added as a learner")
    if learner:
        return
    change(leader, "promote", name, wait)

    def voter() -> dict[str, Any] | None:
        now = leader.status()
        return now if name in (now.get("voters") or []) else None

    done = wait_for(voter, wait, f"{name} among the voters")
    click.echo(f"{name} is a voter; voters now {', '.join(done.get('voters') or [])}")


@raft.command(name="remove-member")
@click.argument("name")
@_common
@_wait_option
def remove_member_cmd(
    name: str, node: str | None, data_dir: str | None, topology: str | None, replica: str | None, wait: float
) -> None:
    """Remove the voter or learner NAME from the Raft configuration."""
    leader, status = leader_target(_target(node, data_dir, topology, replica))
    if name not in (status.get("voters") or []) + (status.get("learners") or []):
        click.echo(f"{name} is not a member: nothing to do")
        return
    change(leader, "remove", name, wait)

    def gone() -> dict[str, Any] | None:
        now = leader.status()
        return now if name not in (now.get("voters") or []) + (now.get("learners") or []) else None

    done = wait_for(gone, wait, f"{name} out of the configuration")
    click.echo(f"{name} removed; voters now {', '.join(done.get('voters') or [])}")


def register(main: click.Group) -> None:
    main.add_command(raft)
