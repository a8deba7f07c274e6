"""A fault-injection TCP proxy on 127.0.0.1 (etcd's pkg/proxy, in userspace, no root).

``FaultProxy(target).start()`` listens on a loopback port and forwards every connection to ``target``;
from the test's thread: ``blackhole(direction)`` reads and discards the bytes going one way (or both),
``delay(ms, jitter_ms, direction)`` holds them back (order kept), ``heal()`` forwards normally again and
``cut()`` resets every open connection. Directions: ``"to_target"`` is what the dialling side sends,
``"to_client"`` what comes back. Counters (``forwarded``, ``dropped``, ``delayed``) let a test check that a
fault really hit traffic before it asserts anything about the nodes. It runs its own asyncio loop in one daemon thread;
``stop()`` closes everything it opened.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
import time
from collections import Counter
from typing import Any

DIRECTIONS = ("to_target", "to_client")


@dataclasses.dataclass
class _Fault:
    blackhole: bool = False
    delay_ms: float = 0.0
    jitter_ms: float = 0.0


class FaultProxy:
    def __init__(self, target: tuple[str, int], listen_port: int = 0, seed: int = 0) -> None:
        self.target = target
        self._listen_port = listen_port
        self._rng = random.Random(seed)
        self._faults = {d: _Fault() for d in DIRECTIONS}
        self.forwarded: Counter[str] = Counter()  # bytes per direction
        self.dropped: Counter[str] = Counter()
        self.delayed: Counter[str] = Counter()  # bytes held back by a delay
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    # ---- control (from the test's thread) ----------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def blackhole(self, direction: str = "both") -> None:
        for d in self._directions(direction):
            self._faults[d].blackhole = True

    def delay(self, ms: float, jitter_ms: float = 0.0, direction: str = "both") -> None:
        for d in self._directions(direction):
            self._faults[d].delay_ms, self._faults[d].jitter_ms = ms, jitter_ms

    def heal(self) -> None:
        for d in DIRECTIONS:
            self._faults[d] = _Fault()

    def cut(self) -> None:
        self._call(self._cut())

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _directions(self, direction: str) -> tuple[str, ...]:
        if direction == "both":
            return DIRECTIONS
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {(*DIRECTIONS, 'both')}, not {direction!r}")
        return (direction,)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    # ---- the proxy (in its loop) -------------------------------------------------------------------

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self._listen_port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._cut()

    async def _cut(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self._writers.add(client_w)
        try:
            target_r, target_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self._writers.add(target_w)
        self.connections += 1
        pumps = [
            asyncio.ensure_future(self._pump(client_r, target_w, "to_target")),
            asyncio.ensure_future(self._pump(target_r, client_w, "to_client")),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
                self._tasks.discard(task)
            for writer in (client_w, target_w):
                writer.transport.abort()
                self._writers.discard(writer)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, direction: str) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.ensure_future(self._send(queue, dst, direction))
        last_release = 0.0
        try:
            while True:
                data = await src.read(65536)
                if not data:
                    await queue.join()  # deliver what is held back, then pass the EOF on
                    return
                fault = self._faults[direction]
                if fault.blackhole:
                    self.dropped[direction] += len(data)
                    continue
                delay = fault.delay_ms + self._rng.uniform(-fault.jitter_ms, fault.jitter_ms)
                if delay > 0:
                    self.delayed[direction] += len(data)
                last_release = max(time.monotonic() + max(delay, 0.0) / 1000, last_release)
                queue.put_nowait((last_release, data))
        finally:
            sender.cancel()

    async def _send(
        self, queue: asyncio.Queue[tuple[float, bytes]], dst: asyncio.StreamWriter, d: str
    ) -> None:
        while True:
            release, data = await queue.get()
            wait = release - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            dst.write(data)
            self.forwarded[d] += len(data)
            await dst.drain()
            queue.task_done()
