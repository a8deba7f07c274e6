"""``PeerGatewayActor``: the supervised shell that owns the node's peer gateway process.

It starts ``python -m supervisors.peer.gateway`` by exec (``subprocess.Popen``; an asyncio loop and TLS
must not be forked by Thespian) with PR_SET_PDEATHSIG, so the gateway dies with this shell, and it relays
the Raft lane between the gateway's pipes and the local Raft replica:

- gateway stdout (``PipeRaft`` from peer P) -> ``RaftEnvelope(P, data)`` (or ``ProposeEntries``) told to
  the replica by path;
- ``PeerSend(to_node, body)`` from the replica -> a ``PipeRaft`` frame on the gateway's stdin. The pipe is
  non-blocking: when the gateway does not read, frames wait in a bounded buffer and then drop (Raft
  retries), so the shell never blocks the node.

If the gateway process dies the shell crashes (``GatewayExited``): its supervisor logs it and restarts it
with backoff, which starts a new gateway. The replica and the pipeline are siblings and run on meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from typing import Any, Final

import msgspec
from pydantic import Field

from actors.args import ActorArgs
from actors.base import SupervisedActor
from actors.messages import PeerGatewayUp, PeerSend
from supervisors.peer.bridge import PipeRaft, PipeReader, PipeUnreachable, encode_pipe
from supervisors.peer.bridge_cluster import topology_path
from supervisors.process_tree import describe_exit, die_with_parent

PIPE_IN_LIMIT: Final = 8 << 20  # bytes waiting for the gateway's stdin before frames are dropped
FLUSH_S: Final = 0.02
CHECK_S: Final = 1.0
STOP_GRACE_S: Final = 3.0


class GatewayExited(RuntimeError):
    """The peer gateway process exited; the shell crashes so that its supervisor restarts both."""


class PeerGatewayArgs(ActorArgs):
    """``PeerGatewayActor``'s args."""

    # the node's Raft replica (tree path); null on a node without one (an edge node)
    replica: str | None = Field("root/incident-log", min_length=1, max_length=500)
    topology: str | None = Field(None, min_length=1, max_length=4096)  # default: $GARRISON_TOPOLOGY


class PeerGatewayActor(SupervisedActor):
    """Args: :class:`PeerGatewayArgs`."""

    Args = PeerGatewayArgs
    args: PeerGatewayArgs

    def on_start(self, args: dict[str, Any]) -> None:
        assert self.config is not None
        self.replica_path = self.args.replica
        topology = str(topology_path(self.args.topology).absolute())
        cmd = [sys.executable, "-m", "supervisors.peer.gateway", "--topology", topology]
        cmd += ["--node", self.config.node, "--data-dir", self.config.data_dir]
        cmd += ["--log-format", self.config.log_format]
        if self.replica_path:
            cmd += ["--replica", self.replica_path]  # the replica its calls (ReadIndex) are served by
        parent = os.getpid()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            preexec_fn=lambda: die_with_parent(parent),  # prctl only: safe between fork and exec
            close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.out_fd = self.proc.stdout.fileno()
        self.in_fd = self.proc.stdin.fileno()
        os.set_blocking(self.out_fd, False)
        os.set_blocking(self.in_fd, False)
        self.reader = PipeReader()
        self.pending = bytearray()
        self.dropped = 0
        self.flush_armed = False
        self.replica_address: Any = None  # the local replica, learnt from its PeerSends (see on_ready)
        self.watch_fd(self.out_fd, "gateway")
        self.log.info("peer_gateway_spawned", pid=self.proc.pid, topology=topology)
        if self.replica_path:
            self.tell(self.replica_path, PeerGatewayUp(self.proc.pid))
        self.schedule("check", CHECK_S)

    # -- gateway -> node ------------------------------------------------------------------------------

    def on_ready(self, name: str) -> None:
        while True:
            try:
                data = os.read(self.out_fd, 1 << 20)
            except BlockingIOError:
                return
            if not data:
                self._gateway_gone()
            for msg in self.reader.feed(data):
                if isinstance(msg, PipeRaft) and self.replica_path:
                    if self.replica_address is not None:
                        # straight to the replica (one Thespian hop instead of two through its supervisor);
                        # its address is the sender of its latest PeerSend, so a restarted replica is
                        # found again as soon as it sends anything (Raft tolerates what is lost meanwhile)
                        self.send(self.replica_address, self._to_replica(msg))
                    else:
                        self.tell(self.replica_path, self._to_replica(msg))
                elif isinstance(msg, PipeUnreachable) and self.replica_address is not None:
                    self.send(self.replica_address, msg)  # the replica reports it to its Raft core

    def _to_replica(self, msg: PipeRaft) -> object:
        from actors.raft.replica import ProposeEntries, RaftEnvelope

        if msg.kind == "propose":
            try:
                entries = msgspec.msgpack.decode(msg.data, type=list[bytes])
            except (msgspec.DecodeError, UnicodeDecodeError):
                entries = []
            return ProposeEntries(tuple(entries))
        return RaftEnvelope(msg.peer, msg.data)

    def _gateway_gone(self) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=1.0)
        status = self.proc.returncode  # < 0: killed by that signal (Popen's convention, as describe_exit's)
        how = "still running, its stdout closed" if status is None else describe_exit(status)
        raise GatewayExited(f"peer gateway pid {self.proc.pid} exited ({how}); restarting it with this shell")

    # -- node -> gateway ------------------------------------------------------------------------------

    def on_message(self, msg: object, sender: Any) -> None:
        if isinstance(msg, PeerSend):
            if sender is not None:
                self.replica_address = sender
            frame = encode_pipe(PipeRaft(msg.to_node, msg.body, msg.kind))
            if len(self.pending) + len(frame) > PIPE_IN_LIMIT:
                self.dropped += 1
                return
            self.pending += frame
            self._flush()
        elif msg == "status":
            self.send(sender, {"pid": self.proc.pid, "dropped": self.dropped, "pending": len(self.pending)})

    def _flush(self) -> None:
        while self.pending:
            try:
                n = os.write(self.in_fd, self.pending)
            except BlockingIOError:
                break
            except BrokenPipeError:
                self._gateway_gone()
            del self.pending[:n]
        if self.pending and not self.flush_armed:
            self.flush_armed = True
            self.schedule("flush", FLUSH_S)

    def on_timer(self, name: str) -> None:
        if name == "flush":
            self.flush_armed = False
            self._flush()
        elif name == "check":
            if self.proc.poll() is not None:
                self._gateway_gone()
            self.schedule("check", CHECK_S)

    def on_stop(self) -> None:
        self.unwatch_fd(self.out_fd)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.info("peer_gateway_stopped", pid=self.proc.pid, exit_code=self.proc.returncode)
