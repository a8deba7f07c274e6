"""Sinks on their own: the file sink's crash recovery (skip, torn line) and the webhook's HTTP contract."""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from actors.dispatch.sinks import (
    Delivery,
    DeliveryFailed,
    FileSink,
    SinkConfigError,
    WebhookSink,
    build_sink,
)
from tests.small_fs import fill, free_bytes, mounted_tmpfs


def incident(i: int) -> dict:
    return {"incident_id": f"inc-{i}", "type": "NO2_leak", "confidence": 0.9}


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_file_sink_skips_what_it_wrote_before_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = FileSink("file", path)
    for i in (1, 2, 3):
        sink.deliver(Delivery(i, incident(i)))
    sink.close()  # "crash" with the dispatcher's offset still at 1: 2 and 3 come again
    again = FileSink("file", path)
    assert (again.resume_index, again.resume_replay) == (3, 0)
    assert [again.already_delivered(Delivery(i, incident(i))) for i in (2, 3, 4)] == [True, True, False]
    again.deliver(Delivery(4, incident(4)))
    assert [rec["index"] for rec in lines(path)] == [1, 2, 3, 4]


def test_file_sink_cuts_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = FileSink("file", path)
    sink.deliver(Delivery(1, incident(1)))
    sink.close()
    with open(path, "ab") as f:
        f.write(b'{"incident":{"incident_id":"inc-2"')  # killed mid-write, never fsynced whole
    again = FileSink("file", path)
    assert again.resume_index == 1 and not again.already_delivered(Delivery(2, incident(2)))
    again.deliver(Delivery(2, incident(2)))
    assert [rec["index"] for rec in lines(path)] == [1, 2]


def test_file_sink_tracks_replays_separately(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = FileSink("file", path)
    sink.deliver(Delivery(5, incident(5)))
    sink.deliver(Delivery(2, incident(2), replay=1))  # an old index, replayed after 5
    sink.close()
    again = FileSink("file", path)
    assert again.already_delivered(Delivery(2, incident(2), replay=1))
    assert not again.already_delivered(Delivery(3, incident(3), replay=2))
    # the last line was a replay, so every first delivery it wrote is already covered by its offset
    assert not again.already_delivered(Delivery(6, incident(6)))


def test_file_sink_does_not_take_a_reused_index_for_a_delivered_incident(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = FileSink("file", path)
    for i in (1, 2, 3):
        sink.deliver(Delivery(i, incident(i)))
    sink.close()
    # the node started over with a fresh event log: its index 2 is another incident
    again = FileSink("file", path)
    assert again.already_delivered(Delivery(2, incident(2)))  # the crash case still skips
    fresh = Delivery(2, {**incident(2), "incident_id": "fresh-log-2"})
    assert not again.already_delivered(fresh)
    again.deliver(fresh)
    again.close()
    assert [rec["incident"]["incident_id"] for rec in lines(path)] == [
        "inc-1",
        "inc-2",
        "inc-3",
        "fresh-log-2",
    ]
    # after the reset, only the new run is the tail: the old line 3 is no longer "just written"
    third = FileSink("file", path)
    assert third.already_delivered(fresh) and not third.already_delivered(Delivery(3, incident(3)))
    third.close()


def test_file_sink_writes_exactly_once_through_a_full_disk(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "small") as fs:
        path = fs / "out.jsonl"
        sink = FileSink("file", path)
        sink.deliver(Delivery(1, incident(1)))
        filler = fill(fs)
        size_before = path.stat().st_size
        big = Delivery(2, {**incident(2), "payload": "x" * 20_000})  # needs pages the disk no longer has
        with pytest.raises(DeliveryFailed, match="disk full") as failed:
            sink.deliver(big)
        cause = failed.value.__cause__
        assert isinstance(cause, OSError) and cause.errno == errno.ENOSPC, cause  # really full
        assert failed.value.retryable and free_bytes(fs) < 64 << 10
        assert path.stat().st_size == size_before  # no partial line left behind
        filler.unlink()
        assert not sink.already_delivered(big)
        sink.deliver(big)  # the retry once space is back
        sink.deliver(Delivery(3, incident(3)))
        sink.close()
        assert [rec["incident"]["incident_id"] for rec in lines(path)] == ["inc-1", "inc-2", "inc-3"]


def test_file_sink_file_is_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    old_file = tmp_path / "old.jsonl"
    old_file.write_text("")
    os.chmod(old_file, 0o644)  # created world-readable by an older version
    umask = os.umask(0)
    try:
        for path in (tmp_path / "new" / "out.jsonl", old_file):
            FileSink("file", path).close()
    finally:
        os.umask(umask)
    modes = {
        p.name: oct(stat.S_IMODE(p.stat().st_mode))
        for p in (tmp_path / "new", tmp_path / "new" / "out.jsonl", old_file)
    }
    assert modes == {"new": "0o700", "out.jsonl": "0o600", "old.jsonl": "0o600"}


def test_file_sink_finds_the_last_line_of_a_large_file(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = FileSink("file", path)
    big = {**incident(0), "payload": "x" * 100_000}  # lines longer than the tail chunk
    for i in range(1, 4):
        sink.deliver(Delivery(i, {**big, "incident_id": f"inc-{i}"}))
    sink.close()
    assert FileSink("file", path).resume_index == 3


def test_file_sink_refuses_a_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    with pytest.raises(SinkConfigError, match="not a garrison incident line"):
        FileSink("file", path)


def test_relative_file_path_resolves_under_data_dir(tmp_path: Path) -> None:
    sink = build_sink({"kind": "file", "path": "out/incidents.jsonl"}, tmp_path)
    assert isinstance(sink, FileSink) and sink.path == tmp_path / "out" / "incidents.jsonl"
    sink.close()
    with pytest.raises(SinkConfigError, match="unknown kind"):
        build_sink({"kind": "pigeon"}, tmp_path)


class _Recorder(BaseHTTPRequestHandler):
    statuses: list[int] = []
    seen: list[tuple[str | None, dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.headers.get("Idempotency-Key"), body))
        status = type(self).statuses.pop(0) if type(self).statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("Handler", (_Recorder,), {"statuses": [], "seen": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", handler
    httpd.shutdown()
    httpd.server_close()


def test_webhook_posts_with_idempotency_key_and_classifies_failures(server) -> None:
    url, handler = server
    handler.statuses = [503, 400, 200]
    sink = WebhookSink("webhook", url, timeout=2)
    item = Delivery(7, incident(7))
    with pytest.raises(DeliveryFailed) as retryable:
        sink.deliver(item)
    assert retryable.value.retryable and "HTTP 503" in retryable.value.reason
    with pytest.raises(DeliveryFailed) as final:
        sink.deliver(item)
    assert not final.value.retryable
    sink.deliver(item)
    assert handler.seen[-1] == ("inc-7", {"index": 7, "incident": incident(7)})
    assert {key for key, _ in handler.seen} == {"inc-7"}
    sink.close()


def test_webhook_connection_refused_is_retryable(tmp_path: Path) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    port = httpd.server_address[1]
    httpd.server_close()  # nothing listens there now
    sink = WebhookSink("webhook", f"http://127.0.0.1:{port}/", timeout=1)
    with pytest.raises(DeliveryFailed) as failed:
        sink.deliver(Delivery(1, incident(1)))
    assert failed.value.retryable
    sink.close()
