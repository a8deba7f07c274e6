"""Thespian's select loop on poll(2) (``supervisors.thespian_env.poll_per_loop``): the same answers as the
epoll selector it replaces, including the EBADF Thespian's loop relies on to drop a watched fd that was
closed (``TCPTransport._check_fd``)."""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from thespian.system.transport import TCPTransport

from supervisors.thespian_env import PollPerLoopSelector, poll_per_loop


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        with contextlib.suppress(OSError):  # a test may have closed it
            os.close(fd)


def test_thespian_transport_builds_the_poll_selector_once_patched() -> None:
    poll_per_loop()
    poll_per_loop()  # twice is harmless
    sel = TCPTransport.selectors.DefaultSelector()
    try:
        assert isinstance(sel, PollPerLoopSelector)
    finally:
        sel.close()
    assert TCPTransport.selectors.EVENT_READ == selectors.EVENT_READ
    assert TCPTransport.selectors.EVENT_WRITE == selectors.EVENT_WRITE


def test_readiness_matches_epoll(pipe: tuple[int, int]) -> None:
    r, w = pipe
    for factory in (selectors.EpollSelector, PollPerLoopSelector):
        sel = factory()
        sel.register(r, selectors.EVENT_READ)
        sel.register(w, selectors.EVENT_WRITE)
        first = sorted((key.fd, ev) for key, ev in sel.select(0))
        os.write(w, b"x")
        second = sorted((key.fd, ev) for key, ev in sel.select(0.01))
        os.read(r, 1)
        sel.close()
        assert first == [(w, selectors.EVENT_WRITE)], factory
        assert second == [(r, selectors.EVENT_READ), (w, selectors.EVENT_WRITE)], factory


def test_a_timeout_waits_and_returns_nothing(pipe: tuple[int, int]) -> None:
    import time

    r, _ = pipe
    sel = PollPerLoopSelector()
    sel.register(r, selectors.EVENT_READ)
    t0 = time.monotonic()
    assert sel.select(0.02) == []
    assert time.monotonic() - t0 >= 0.015
    sel.close()


def test_a_closed_watched_fd_raises_ebadf_so_thespian_drops_it(pipe: tuple[int, int]) -> None:
    r, _ = pipe
    os.close(r)
    closed = r + 200  # not r itself: the epoll selector below would get r's number for its own fd
    with pytest.raises(OSError):
        os.fstat(closed)  # really closed, or the test proves nothing
    epoll = selectors.EpollSelector()
    with pytest.raises(OSError) as epoll_err:  # epoll refuses it at register
        epoll.register(closed, selectors.EVENT_READ)
    epoll.close()
    sel = PollPerLoopSelector()
    sel.register(closed, selectors.EVENT_READ)
    with pytest.raises(OSError) as poll_err:  # poll reports POLLNVAL: the selector raises the same
        sel.select(0)
    sel.close()
    assert epoll_err.value.errno == poll_err.value.errno == errno.EBADF
    # and Thespian's own check, which its loop uses to find the bad watch, still fails on it
    poll_per_loop()
    with pytest.raises(OSError):
        TCPTransport.TCPTransport._check_fd(closed)


def test_a_nodes_environment_installs_it_before_thespian_starts(tmp_path: Path) -> None:
    # in a fresh interpreter: the patch is process-global, and this one may have it from the tests above
    probe = (
        "import sys; from pathlib import Path\n"
        "from thespian.system.transport import TCPTransport\n"
        "before = TCPTransport.selectors.DefaultSelector.__name__\n"
        "from supervisors.thespian_env import prepare_environment\n"
        "prepare_environment(Path(sys.argv[1]))\n"
        "print(before, TCPTransport.selectors.DefaultSelector.__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["EpollSelector", "PollPerLoopSelector"], out.stderr
