"""Long-lived mTLS links to every peer: non-blocking sends, heartbeats, reconnects, role checks.

Connection rule: **every node dials every peer, and each direction has its own connection.** A node sends
all its frames to peer P on the one connection it dialled to P; what arrives on a connection P dialled to
us is P's traffic, and the only thing we ever write back on it is the echo of P's heartbeats. So there is
no duplicate to resolve (no race when both sides dial at once), each side's send path depends only on its
own dialler and reconnect loop, and a heartbeat round trip measures exactly the path our frames take.
etcd's rafthttp streams are per-direction too; the price is two sockets per pair, nothing at 3-5 nodes.

Sending never blocks: :meth:`PeerLinks.send` appends to a bounded per-peer, per-lane queue and returns; a
full queue drops the frame, counts it and calls ``on_unreachable(peer, lane)`` (Raft's ReportUnreachable,
etcd's rule). One writer task per peer drains its queues round-robin (heartbeats first), and
``await writer.drain()`` is its only backpressure, so a peer that stops reading stalls its own writer only.

Refusals. A frame that breaks the protocol (bad length, unknown lane, malformed body, or a frame of the
wrong kind for the connection's direction) closes that connection: after a bad length prefix the stream
position is lost, and a peer that speaks another protocol is broken, so we drop it and let it redial. A
frame the peer's *role* does not allow (an edge node on the Raft lane) is dropped and logged but the
connection is kept: the framing is intact, and that peer's allowed traffic (its gossip, its forwarded
proposals) must keep flowing, e.g. while a role change rolls out. Both are logged as ``frame_refused``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import random
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, Final

from actors.logs import get_logger
from supervisors.peer.config import ALLOWED_LANES, DEFAULT_QUEUE_SIZES, PeerConfig, node_san
from supervisors.peer.frames import (
    HEADER_SIZE,
    LANE_OF,
    BadFrame,
    Body,
    Heartbeat,
    Lane,
    decode_body,
    encode_frame,
    parse_header,
)
from supervisors.peer.tls import PeerRefused, client_context, dns_names, identify, server_context

DATA_LANES: Final = tuple(DEFAULT_QUEUE_SIZES)  # the queued lanes, in round-robin order
ECHO_BUFFER_LIMIT: Final = 64 << 10  # skip echoing heartbeats to a peer that does not read them
LEAVE_WAIT_S: Final = 0.5  # how long a stopping node waits for its peers to echo its leave
LOG_DROP_EVERY: Final = 1000  # after the first drop of an episode, log every Nth
# a frame goes straight to an idle link's transport while it holds less than this (else it is queued and
# the write loop, which awaits drain(), is the flow control)
DIRECT_WRITE_BELOW: Final = 64 << 10
# Handshakes in progress at once: an unauthenticated client costs a socket and a TLS state until its
# handshake times out, so a flood of them is capped instead of exhausting file descriptors.
MAX_PENDING_HANDSHAKES: Final = 64

OnFrame = Callable[[str, Body], None]
OnUnreachable = Callable[[str, Lane], None]


class UnknownPeer(KeyError):
    def __init__(self, peer: str, known: tuple[str, ...]) -> None:
        super().__init__(f"no peer link to {peer!r}: this node links with {list(known)}")


class LaneNotAllowed(PermissionError):
    def __init__(self, role: str, lane: Lane) -> None:
        super().__init__(
            f"a {role} node may not send on the {lane.name} lane (peers refuse it); "
            f"allowed: {sorted(x.name for x in ALLOWED_LANES[role])}"
        )


class _LinkDown(Exception):
    """Why an outbound connection is being closed (becomes ``last_error``)."""


def describe(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {error.verify_message}"
    if isinstance(error, ssl.SSLError):
        return f"TLS error: {error.reason or error}"
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, asyncio.IncompleteReadError):
        return "connection closed by peer"
    if isinstance(error, (_LinkDown, PeerRefused, BadFrame)):
        return getattr(error, "reason", None) or str(error)
    return f"{type(error).__name__}: {error}"


@dataclasses.dataclass
class _Peer:
    name: str
    role: str
    host: str
    port: int
    queue_sizes: dict[Lane, int]
    queues: dict[Lane, collections.deque[bytes]] = dataclasses.field(default_factory=dict)
    wake: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    # set when the peer connects to us while our dial to it is down: it is up now, dial without backoff
    redial: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    ping: bytes | None = None  # the one pending heartbeat; a newer one replaces it
    state: str = "down"
    state_since: float = dataclasses.field(default_factory=time.monotonic)
    rtt_ms: float | None = None
    last_error: str | None = None
    last_echo_ns: int = 0
    seq: int = 0
    out_writer: asyncio.StreamWriter | None = None
    in_writer: asyncio.StreamWriter | None = None
    connections: int = 0  # successful dials, the first included
    refused: int = 0
    sent: collections.Counter[Lane] = dataclasses.field(default_factory=collections.Counter)
    received: collections.Counter[Lane] = dataclasses.field(default_factory=collections.Counter)
    dropped: collections.Counter[Lane] = dataclasses.field(default_factory=collections.Counter)
    dropping: set[Lane] = dataclasses.field(default_factory=set)  # lanes in a drop episode
    rr: int = 0
    left: bool = False  # it said it was stopping on purpose: its links ending is no failure
    heard_leaving: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)  # it echoed our leave

    def __post_init__(self) -> None:
        self.queues = {lane: collections.deque() for lane in DATA_LANES}

    def next_frame(self) -> tuple[Lane, bytes] | None:
        if self.ping is not None:
            frame, self.ping = self.ping, None
            return Lane.HEARTBEAT, frame
        for i in range(len(DATA_LANES)):
            lane = DATA_LANES[(self.rr + i) % len(DATA_LANES)]
            if self.queues[lane]:
                self.rr = (self.rr + i + 1) % len(DATA_LANES)
                self.dropping.discard(lane)
                return lane, self.queues[lane].popleft()
        return None


def _lanes(counter: collections.Counter[Lane]) -> dict[str, int]:
    return {lane.name.lower(): counter[lane] for lane in Lane if counter[lane]}


class PeerLinks:
    """The node's links to its peers. ``await start()`` in the gateway's loop; ``await close()`` at exit.

    ``on_frame(peer, body)`` is called in the loop for every accepted frame (heartbeats excepted), with
    ``peer`` the name authenticated by the peer's certificate: authorise on ``peer``, never on a body's own
    ``sender`` field, which the peer wrote. It must not block. ``on_unreachable(peer, lane)`` is called for
    every frame dropped because the lane's queue to ``peer`` was full (Raft's ReportUnreachable; for the
    SNAPSHOT lane, the snapshot failed and Raft should be told so). ``on_peer_lost(peer)`` is called when the
    connection ``peer`` dialled to us ended (a killed process's sockets close at once: its Raft followers
    need not wait an election timeout to learn it). ``send`` and ``status`` are called from
    the loop's thread. ``sent`` counts frames written to the socket, not delivered: frames in flight when a
    connection dies are lost, as Raft allows.
    """

    def __init__(
        self,
        config: PeerConfig,
        on_frame: OnFrame,
        on_unreachable: OnUnreachable | None = None,
        rng: random.Random | None = None,
        on_peer_lost: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config.validate()
        self._on_frame = on_frame
        self._on_unreachable = on_unreachable
        self._on_peer_lost = on_peer_lost
        self._rng = rng or random.Random()
        self._me = config.me()
        self._log = get_logger(component="peer_links")
        nodes = config.by_name()
        sizes = {lane: int(config.queue_sizes[lane]) for lane in DATA_LANES}
        self._peers = {
            name: _Peer(name, nodes[name].role, nodes[name].host, nodes[name].port, sizes)
            for name in config.peer_names()
        }
        self._hb = config.heartbeat_ms / 1000
        self._timeout = config.connect_timeout_ms / 1000
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listener: socket.socket | None = None
        self._server_ctx: ssl.SSLContext | None = None
        self._client_ctx: ssl.SSLContext | None = None
        self._closing = False
        self._handshaking = 0

    # ---- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        self._server_ctx = server_context(cfg.ca, cfg.cert, cfg.key)
        self._client_ctx = client_context(cfg.ca, cfg.cert, cfg.key)
        port = cfg.listen_port if cfg.listen_port is not None else self._me.port
        self._listener = socket.create_server((cfg.listen_host, port), backlog=128)
        self._listener.setblocking(False)
        self._spawn(self._accept_loop())
        for peer in self._peers.values():
            self._spawn(self._dial_loop(peer))

    async def close(self) -> None:
        self._closing = True
        await self._say_leaving()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for peer in self._peers.values():
            for w in (peer.out_writer, peer.in_writer):
                if w is not None:
                    w.transport.abort()
        if self._listener is not None:
            self._listener.close()

    async def _say_leaving(self) -> None:
        """Tell every peer we have a link to that this node is stopping on purpose, and wait (at most
        ``LEAVE_WAIT_S``) until each echoed it: their logs then read a planned stop (``peer_left``, info),
        not a failure (a rolling restart of a city logged some thirty warnings)."""
        told = []
        for peer in self._peers.values():
            writer = peer.out_writer
            if writer is None or writer.is_closing():
                continue
            peer.heard_leaving.clear()
            # whole frames only: the write loop writes each frame in one call, so this one goes between two
            writer.write(encode_frame(Heartbeat(seq=peer.seq, sent_ns=time.monotonic_ns(), leaving=True)))
            told.append(peer)
        if told:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(p.heard_leaving.wait() for p in told)), LEAVE_WAIT_S)

    @property
    def port(self) -> int:
        assert self._listener is not None, "start() first"
        return int(self._listener.getsockname()[1])

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- sending -----------------------------------------------------------------------------------

    def send(self, peer: str, body: Body) -> bool:
        """Queue ``body`` for ``peer``; never blocks. False if the lane's queue was full (frame dropped)."""
        link = self._peers.get(peer)
        if link is None:
            raise UnknownPeer(peer, tuple(self._peers))
        lane = LANE_OF[type(body)]
        if lane is Lane.HEARTBEAT:
            raise ValueError("heartbeats are the link's own business: send data lanes only")
        if lane not in ALLOWED_LANES[self._me.role]:
            raise LaneNotAllowed(self._me.role, lane)
        frame = encode_frame(body, self.config.max_frame)
        queue = link.queues[lane]
        if len(queue) >= link.queue_sizes[lane]:
            link.dropped[lane] += 1
            if lane not in link.dropping or link.dropped[lane] % LOG_DROP_EVERY == 0:
                link.dropping.add(lane)
                self._log.warning(
                    "queue_dropped",
                    peer=peer,
                    lane=lane.name.lower(),
                    dropped_total=link.dropped[lane],
                    queue_size=link.queue_sizes[lane],
                    peer_state=link.state,
                )
            if self._on_unreachable is not None:
                self._on_unreachable(peer, lane)
            return False
        writer = link.out_writer
        if writer is not None and link.ping is None and not any(link.queues.values()):
            # Idle link: write now. Queued, the frame waited for the write loop's task to be scheduled,
            # one more event-loop turn per hop (~0.5-1 ms per gateway on a loaded box, 2 per commit way).
            # In order: every frame popped before was written before its drain() was awaited.
            transport = writer.transport
            if not transport.is_closing() and transport.get_write_buffer_size() < DIRECT_WRITE_BELOW:
                writer.write(frame)
                link.sent[lane] += 1
                return True
        queue.append(frame)
        link.wake.set()
        return True

    def room(self, peer: str, lane: Lane) -> int:
        """How many more frames ``lane``'s queue to ``peer`` takes now without dropping: a sender with
        more to say than the queue holds (a snapshot's chunks) waits for this instead of losing frames."""
        link = self._peers.get(peer)
        if link is None:
            raise UnknownPeer(peer, tuple(self._peers))
        return link.queue_sizes[lane] - len(link.queues[lane])

    def state(self, peer: str) -> str:
        """The link's state to ``peer``: ``up``, ``suspect`` or ``down`` (cheap: for every send)."""
        link = self._peers.get(peer)
        if link is None:
            raise UnknownPeer(peer, tuple(self._peers))
        return link.state

    # ---- status ------------------------------------------------------------------------------------

    def status(self) -> dict[str, dict[str, Any]]:
        """Each peer's link as plain data (for /v1/status and the metrics)."""
        now = time.monotonic()
        return {
            p.name: {
                "state": p.state,
                "state_for_s": round(now - p.state_since, 3),
                "role": p.role,
                "rtt_ms": None if p.rtt_ms is None else round(p.rtt_ms, 3),
                "last_error": p.last_error,
                "connected_out": p.out_writer is not None,
                "connected_in": p.in_writer is not None,
                "connections": p.connections,
                "refused": p.refused,
                "queued": {lane.name.lower(): len(p.queues[lane]) for lane in DATA_LANES},
                "sent": _lanes(p.sent),
                "received": _lanes(p.received),
                "dropped": _lanes(p.dropped),
            }
            for p in self._peers.values()
        }

    def _set_state(self, peer: _Peer, state: str) -> None:
        if peer.state == state:
            return
        previous, peer.state, peer.state_since = peer.state, state, time.monotonic()
        level = self._log.info if state == "up" or peer.left else self._log.warning
        level(
            "peer_state",
            peer=peer.name,
            state=state,
            previous=previous,
            rtt_ms=peer.rtt_ms,
            last_error=peer.last_error,
        )

    # ---- outbound ----------------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        cfg = self.config
        ceiling = min(cfg.backoff_max_ms, cfg.backoff_min_ms * 2 ** min(attempt, 30)) / 1000
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)  # "equal jitter": never 0, never in step

    async def _dial_loop(self, peer: _Peer) -> None:
        attempt = 0
        while not self._closing:
            try:
                reader, writer = await asyncio.wait_for(self._dial(peer), self._timeout)
            except (OSError, TimeoutError, PeerRefused, ssl.SSLError) as error:
                reason = describe(error)
                if reason != peer.last_error:  # once per distinct reason, not once per retry
                    # a peer never seen up that refuses the connection is still starting (every node of a
                    # cluster started at once logs this for its later peers): not yet worth a warning
                    starting = peer.connections == 0 and isinstance(error, ConnectionRefusedError)
                    log = self._log.info if starting or peer.left else self._log.warning
                    log("peer_dial_failed", peer=peer.name, reason=reason, attempt=attempt + 1)
                peer.last_error = reason
                self._set_state(peer, "down")
                attempt = 0 if await self._back_off(peer, self._backoff(attempt)) else attempt + 1
                continue
            attempt = 0
            peer.redial.clear()  # connected: an older sign of life is no reason to skip the next backoff
            peer.connections += 1
            reason = await self._run_outbound(peer, reader, writer)
            peer.last_error = reason
            self._set_state(peer, "down")
            await self._back_off(peer, self._backoff(0))

    async def _back_off(self, peer: _Peer, seconds: float) -> bool:
        """Wait ``seconds`` before the next dial, or less if ``peer`` connects to us meanwhile (its
        certificate checked): it is up, so the backoff built up while it was down would only delay
        the direction we send on. A restarted node's peers kept dialling it with growing backoff; its
        first Raft answers then went nowhere for up to ``backoff_max_ms`` (a leader kill took a whole
        election timeout in about a quarter of the bench's rounds). True if cut short."""
        try:
            await asyncio.wait_for(peer.redial.wait(), seconds)  # set already: it connected mid-dial
        except TimeoutError:
            return False
        peer.redial.clear()
        return True

    async def _dial(self, peer: _Peer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(
            peer.host,
            peer.port,
            ssl=self._client_ctx,
            server_hostname=node_san(peer.name),
            ssl_handshake_timeout=self._timeout,
        )
        try:
            # check_hostname proved the certificate names this peer; also refuse one naming several nodes
            names = dns_names(writer.get_extra_info("peercert"))
            if identify(names, self._peers, self._me.name) != peer.name:
                raise PeerRefused(f"server is not {peer.name}", names)
        except PeerRefused:
            writer.transport.abort()
            raise
        return reader, writer

    async def _run_outbound(
        self, peer: _Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> str:
        peer.out_writer = writer
        peer.left = False  # it is back
        peer.ping = None  # a ping left from the last connection would report a stale RTT
        peer.last_echo_ns = time.monotonic_ns()  # the grace period starts at the handshake
        self._log.info("peer_connected", peer=peer.name, direction="out", address=f"{peer.host}:{peer.port}")
        tasks = [
            self._spawn(self._write_loop(peer, writer)),
            self._spawn(self._echo_loop(peer, reader)),
            self._spawn(self._heartbeat_loop(peer)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            error = next(iter(done)).exception()
            reason = describe(error) if error is not None else "closed"
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            peer.out_writer = None
            writer.transport.abort()  # close() would wait to flush to a peer that may never read
        log = self._log.info if peer.left else self._log.warning
        log("peer_disconnected", peer=peer.name, direction="out", reason=reason)
        return reason

    async def _write_loop(self, peer: _Peer, writer: asyncio.StreamWriter) -> None:
        while True:
            item = peer.next_frame()
            if item is None:
                peer.wake.clear()
                await peer.wake.wait()
                continue
            lane, frame = item
            writer.write(frame)
            if lane is not Lane.HEARTBEAT:
                peer.sent[lane] += 1
            await writer.drain()

    async def _heartbeat_loop(self, peer: _Peer) -> None:
        cfg = self.config
        while True:
            peer.seq += 1
            peer.ping = encode_frame(Heartbeat(seq=peer.seq, sent_ns=time.monotonic_ns()))
            peer.wake.set()
            await asyncio.sleep(self._hb)
            silent_ms = (time.monotonic_ns() - peer.last_echo_ns) / 1e6
            if silent_ms > cfg.down_after_missed * cfg.heartbeat_ms:
                raise _LinkDown(f"no heartbeat echo for {silent_ms:.0f} ms")
            if silent_ms > cfg.suspect_after_missed * cfg.heartbeat_ms and peer.state == "up":
                peer.last_error = f"no heartbeat echo for {silent_ms:.0f} ms"
                self._set_state(peer, "suspect")

    async def _echo_loop(self, peer: _Peer, reader: asyncio.StreamReader) -> None:
        """On our outbound connection the peer may only echo our heartbeats."""
        while True:
            body = await self._read_frame(peer, reader)
            if not (isinstance(body, Heartbeat) and body.reply):
                lane = LANE_OF[type(body)]
                raise self._protocol_violation(peer, lane, "only heartbeat echoes may come back on our link")
            now = time.monotonic_ns()
            if body.sent_ns > now:
                raise self._protocol_violation(peer, Lane.HEARTBEAT, "echo of a heartbeat never sent")
            if body.leaving:
                peer.heard_leaving.set()
                continue
            peer.last_echo_ns = now
            peer.rtt_ms = (now - body.sent_ns) / 1e6
            if not peer.left:  # its last echoes while it stops do not make it up again
                peer.last_error = None
                self._set_state(peer, "up")

    # ---- inbound -----------------------------------------------------------------------------------

    async def _accept_loop(self) -> None:
        assert self._listener is not None
        loop = asyncio.get_running_loop()
        while True:
            conn, address = await loop.sock_accept(self._listener)
            self._spawn(self._handle_inbound(conn, f"{address[0]}:{address[1]}"))

    async def _handshake(self, conn: socket.socket) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # connect_accepted_socket, not start_server(ssl=...): a failed handshake is raised here, so it
        # can be logged as peer_refused with its reason (asyncio would only debug-log it), and not
        # StreamWriter.start_tls: bytes of the ClientHello read before it would be lost.
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=HEADER_SIZE + self.config.max_frame, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await loop.connect_accepted_socket(
            lambda: protocol, conn, ssl=self._server_ctx, ssl_handshake_timeout=self._timeout
        )
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)

    async def _handle_inbound(self, conn: socket.socket, address: str) -> None:
        if self._handshaking >= MAX_PENDING_HANDSHAKES:
            conn.close()
            self._log.warning("peer_refused", address=address, reason="too many handshakes at once", names=[])
            return
        self._handshaking += 1
        try:
            reader, writer = await asyncio.wait_for(self._handshake(conn), self._timeout)
        except (OSError, TimeoutError, ssl.SSLError, ConnectionError) as error:
            conn.close()
            self._log.warning("peer_refused", address=address, reason=describe(error), names=[])
            return
        finally:
            self._handshaking -= 1
        names = dns_names(writer.get_extra_info("peercert"))
        try:
            name = identify(names, self._peers, self._me.name)
        except PeerRefused as refused:
            writer.transport.abort()
            self._log.warning("peer_refused", address=address, reason=refused.reason, names=names)
            return
        peer = self._peers[name]
        if peer.in_writer is not None:  # the peer redialled: its old connection is dead to it
            peer.in_writer.transport.abort()
        peer.in_writer = writer
        peer.left = False  # it is back
        self._log.info("peer_connected", peer=name, direction="in", address=address)
        if peer.out_writer is None:
            peer.redial.set()  # our dial to it is backing off: it is up, dial now
        try:
            reason = await self._serve_inbound(peer, reader, writer)
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        except (OSError, asyncio.IncompleteReadError, BadFrame) as error:
            reason = describe(error)
        lost = peer.in_writer is writer  # else the peer redialled: this connection was displaced
        if lost:
            peer.in_writer = None
        writer.transport.abort()
        log = self._log.info if peer.left else self._log.warning
        log("peer_disconnected", peer=name, direction="in", address=address, reason=reason)
        if lost and self._on_peer_lost is not None:
            self._on_peer_lost(name)

    async def _serve_inbound(
        self, peer: _Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> str:
        allowed = ALLOWED_LANES[peer.role]
        while True:
            body = await self._read_frame(peer, reader)
            lane = LANE_OF[type(body)]
            if lane not in allowed:
                peer.refused += 1
                if peer.refused == 1 or peer.refused % LOG_DROP_EVERY == 0:
                    self._log.warning(
                        "frame_refused",
                        peer=peer.name,
                        lane=lane.name.lower(),
                        reason=f"role {peer.role!r} may not send {lane.name} frames",
                        action="dropped",
                        refused_total=peer.refused,
                    )
                continue
            if isinstance(body, Heartbeat):
                if body.reply:
                    raise self._protocol_violation(peer, lane, "heartbeat echo on the peer's own link")
                if body.leaving:
                    self._on_leaving(peer)
                if body.leaving or writer.transport.get_write_buffer_size() < ECHO_BUFFER_LIMIT:
                    echo = Heartbeat(seq=body.seq, sent_ns=body.sent_ns, reply=True, leaving=body.leaving)
                    writer.write(encode_frame(echo))
                continue
            peer.received[lane] += 1
            try:
                self._on_frame(peer.name, body)
            except Exception as error:  # a consumer's bug must not cut the link
                self._log.error(
                    "peer_frame_handler_failed", peer=peer.name, lane=lane.name.lower(), error=describe(error)
                )

    def _on_leaving(self, peer: _Peer) -> None:
        if peer.left:
            return
        peer.left = True
        peer.last_error = "stopped on purpose"
        self._log.info("peer_left", peer=peer.name)
        self._set_state(peer, "down")

    async def _read_frame(self, peer: _Peer, reader: asyncio.StreamReader) -> Body:
        header = await reader.readexactly(HEADER_SIZE)
        try:
            lane, size = parse_header(header, self.config.max_frame)
            return decode_body(lane, await reader.readexactly(size))
        except BadFrame as bad:
            lane_byte = header[HEADER_SIZE - 1]
            raise self._protocol_violation(peer, lane_byte, bad.reason) from None

    def _protocol_violation(self, peer: _Peer, lane: int, reason: str) -> BadFrame:
        peer.refused += 1
        try:
            lane_name: str | int = Lane(lane).name.lower()
        except ValueError:
            lane_name = lane  # an unknown lane is logged as its number
        self._log.warning(
            "frame_refused",
            peer=peer.name,
            lane=lane_name,
            reason=reason,
            action="closed",
            refused_total=peer.refused,
        )
        return BadFrame(reason)
