"""Wake consumers of an event-log stream the moment a producer commits to it: no polling.

The log is the bus; this is its doorbell. Each consumer of a stream owns a named pipe (FIFO)
``<data_dir>/wake/<stream>/<consumer>`` (0600 in 0700 directories: only the node's user can ring it) and
watches it with Thespian's ``ThespianWatch``, so the actor's own select loop wakes it: no thread, no timer.
After every durable commit that appended to a stream, the producer writes one byte to each FIFO of that
stream, non-blocking. Bytes coalesce in the pipe: a consumer that is busy or slow finds one readable pipe
however many commits it missed, drains it, and reads the log after its offset as before, so exactly-once
and the offset-in-the-same-transaction rule are untouched. A full pipe (64 KiB of unread rings) drops the
ring: the consumer already has one pending.

Why FIFOs and not Thespian messages: a Thespian message costs about a millisecond and needs the consumer's
current address (which changes at every restart); a FIFO ring is one ``write`` syscall and its path is the
consumer's stable name. Why not Unix datagram sockets: their paths are limited to 108 bytes, a data_dir may
be longer; FIFO paths are not limited.

A ring can be lost only when no reader has the FIFO open (the consumer is restarting): its new instance
reads the log after its offset when it starts, and a slow safety-net timer (seconds) covers the rest.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

__all__ = ["Doorbells", "Inbox", "wake_dir"]

_DIR_MODE = 0o700
_FIFO_MODE = 0o600


def wake_dir(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / "wake"


def _component(name: str) -> str:
    """One path component for a stream or actor path: ``incidents/committed`` -> ``incidents%2Fcommitted``."""
    return quote(name, safe="") or "%00"


class Inbox:
    """The consumer's end: a FIFO it watches; readable means "the stream has new records"."""

    def __init__(self, root: Path, stream: str, consumer: str) -> None:
        self.stream = stream
        directory = root / _component(stream)
        directory.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        for d in (root, directory):
            os.chmod(d, _DIR_MODE)
        self.path = directory / _component(consumer)
        try:
            os.mkfifo(self.path, _FIFO_MODE)
        except FileExistsError:
            if not stat.S_ISFIFO(os.lstat(self.path).st_mode):  # never write into something else
                os.unlink(self.path)
                os.mkfifo(self.path, _FIFO_MODE)
        os.chmod(self.path, _FIFO_MODE)
        # O_RDWR: this end also counts as a writer, so the pipe never reports end-of-file (which would make
        # select() return "readable" forever once the last producer closed it)
        self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)

    def drain(self) -> bool:
        """Empty the pipe; True if anything rang."""
        rang = False
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except BlockingIOError:
                return rang
            if not chunk:
                return rang
            rang = True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class _StreamBells:
    def __init__(self) -> None:
        self.mtime_ns = -1
        self.fds: dict[str, int | None] = {}  # consumer FIFO name -> write fd (None: no reader right now)


class Doorbells:
    """The producer's end: after a commit, ring every consumer of the streams it appended to."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._streams: dict[str, _StreamBells] = {}
        self._pid = os.getpid()
        self._root = str(root)
        self._dirs: dict[str, str] = {}

    def ring(self, streams: Iterable[str]) -> None:
        if os.getpid() != self._pid:  # inherited through fork: the fds belong to the parent
            self._streams, self._pid = {}, os.getpid()
        for stream in streams:
            self._ring_stream(stream)

    def _directory(self, stream: str) -> str:
        # a plain string, built once per stream: this runs after every commit, and pathlib costs more
        # than the stat it feeds
        directory = self._dirs.get(stream)
        if directory is None:
            directory = self._dirs[stream] = os.path.join(self._root, _component(stream))
        return directory

    def _ring_stream(self, stream: str) -> None:
        directory = self._directory(stream)
        try:
            mtime = os.stat(directory).st_mtime_ns
        except FileNotFoundError:
            bells = self._streams.pop(stream, None)
            if bells is not None:
                self._close_all(bells)
            return
        bells = self._streams.setdefault(stream, _StreamBells())
        if mtime != bells.mtime_ns:  # a consumer subscribed or went away: list the FIFOs again
            bells.mtime_ns = mtime
            try:
                names = set(os.listdir(directory))
            except FileNotFoundError:
                names = set()
            for gone in set(bells.fds) - names:
                fd = bells.fds.pop(gone)
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            for name in names - set(bells.fds):
                bells.fds[name] = None
        for name, fd in list(bells.fds.items()):
            if fd is None:
                fd = self._open(os.path.join(directory, name))
                if fd is None:
                    continue
                bells.fds[name] = fd
            try:
                os.write(fd, b"\1")
            except BlockingIOError:
                pass  # the pipe is full of rings: the consumer has plenty pending
            except OSError as exc:  # EPIPE: its reader died; reopen when it is back
                if exc.errno != errno.EPIPE:
                    raise
                with contextlib.suppress(OSError):
                    os.close(fd)
                bells.fds[name] = None

    @staticmethod
    def _open(path: str) -> int | None:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:  # ENXIO: no reader (consumer restarting); ENOENT: just removed
            if exc.errno in (errno.ENXIO, errno.ENOENT, errno.ENOTDIR, errno.EACCES):
                return None
            raise

    @staticmethod
    def _close_all(bells: _StreamBells) -> None:
        for fd in bells.fds.values():
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
