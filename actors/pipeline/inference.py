"""``InferenceActor``: readings -> feature windows -> ONNX model -> episodes -> proposed incidents.

Exactly once across crashes: the actor reads ``readings`` after its offset and writes, in ONE durable
transaction, the incidents it proposes together with its new offset and the window buffers and episode
trackers of the channels the batch changed (one value per channel: the others' are durable already).
A restarted instance resumes from that state, so no window is scored twice and no episode is opened twice;
``incident_id`` is deterministic (sensor, pollutant, episode start), so a downstream replay is idempotent.

A model that cannot load (missing, corrupt, wrong shape) degrades to the rule-based heuristic with a
``model_degraded`` event; the actor re-checks the configured file every few seconds and goes back to the
model (``model_loaded``) once a good one is there, which is also how a new model version is rolled out:
replace the file (or point ``model`` at a new one and restart just this child). The windows model next to
it (``x_windows.onnx``: the same classifier with the window features in its graph) is watched too; without
it the features are computed in numpy. NaN/inf outputs raise
``NonFiniteOutput``: a crash, handled by the supervisor.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import Field

from actors.args import ActorArgs
from actors.base import SupervisedActor
from actors.quantiles import quantiles
from actors.streams import INFERENCE_LATENCY_PREFIX, PROPOSED_INCIDENTS, READINGS
from models.detector import DEFAULT_MODEL_PATH, Detector, HeuristicDetector, ModelLoadError, load_detector
from models.episodes import DEFAULT_THRESHOLD, EpisodeConfig, EpisodeStarted
from models.features_graph import windows_model_path
from models.pipeline import DetectionPipeline, state_of_channels
from models.readings import ReadingColumns

MODEL_CHECK_S = 2.0
TURN_S = 0.1  # s of batches per turn before yielding to Thespian (stop requests, other messages)
# Scored batches of a backlog committed together (group commit): bounds what a crash makes the restarted
# instance score again.
MAX_UNSAVED_BATCHES = 4
LATENCY_SAMPLES = 256  # recent batches whose latency /metrics shows (garrison_inference_latency_seconds)
LATENCY_EVERY_S = 5.0  # how often their quantiles ride along with a state commit (no commit of their own)


def _stat_or_none(path: Path) -> tuple[float, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime, st.st_size)


class InferenceArgs(ActorArgs):
    """``InferenceActor``'s args."""

    model: str | None = Field(None, min_length=1)  # ONNX file; relative to data_dir; None: the committed one
    # confidence that opens an episode; at least the episode release level (0.5), at most 1
    threshold: float = Field(DEFAULT_THRESHOLD, ge=0.5, le=1.0)
    poll_interval: float = Field(0.05, gt=0, le=3600)  # s between reads of ``readings``
    batch_limit: int = Field(
        4096, ge=1, le=1_000_000
    )  # readings per durable transaction (about: whole blocks)


class InferenceActor(SupervisedActor):
    """Args: :class:`InferenceArgs`."""

    Args = InferenceArgs
    args: InferenceArgs

    def on_start(self, args: dict[str, Any]) -> None:
        assert self.config is not None
        self.model_path = Path(self.args.model or DEFAULT_MODEL_PATH)
        if not self.model_path.is_absolute():
            self.model_path = Path(self.config.data_dir) / self.model_path
        self.episodes = EpisodeConfig(threshold=self.args.threshold)
        self.poll = self.args.poll_interval
        self.batch_limit = self.args.batch_limit
        self.node = self.config.node
        self.key = f"inference/{self.path}"
        saved = self.event_log.get_value(self.key) or {}
        self.offset = int(saved.get("offset", 0))
        whole = "buffers" in saved or "trackers" in saved  # saved whole, before per-channel values
        if not whole:
            channels = self.event_log.values_with_prefix(self._channel_prefix)
            saved = state_of_channels({value["channel"]: value for value in channels.values()})
        self.readings_per_record: float | None = None  # learnt from the first batch
        self.writer: ThreadPoolExecutor | None = None
        self.committing: tuple[Future[None], list[dict[str, Any]]] | None = None
        # scored batches not yet handed to the writer (group commit, see _process_batch): their proposals
        # and how many batches they are
        self.unsaved: list[dict[str, Any]] = []
        self.unsaved_batches = 0
        self.batch_seconds: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.latency_due = 0.0  # monotonic time from which the next commit carries the quantiles
        self.detector: Detector = HeuristicDetector()
        self.pipeline = DetectionPipeline(self.detector, self.episodes, saved)
        if whole:  # the first commit writes every channel in the per-channel layout
            self.pipeline.touched = set(self.pipeline.buffers)
        self.model_stamp: tuple[float, ...] | str | None = "never checked"
        self.degraded = True
        self._check_model()
        self.log.info(
            "inference_resumed",
            offset=self.offset,
            model_version=self.model_version,
            threshold=self.episodes.threshold,
        )
        self.subscribe(READINGS)  # woken by the producer's commit: no poll timer
        self.schedule("model-check", MODEL_CHECK_S)

    @property
    def model_version(self) -> str:
        return str(getattr(self.detector, "version", "unknown"))

    def _check_model(self) -> None:
        classifier = _stat_or_none(self.model_path)
        stamp: tuple[float, ...] | None = None
        if classifier is not None:
            # the windows model next to the classifier counts too: replacing either is a rollout
            windows = _stat_or_none(windows_model_path(self.model_path))
            stamp = (*classifier, *(windows or (-1.0, -1)))
        if stamp == self.model_stamp:
            return  # unchanged since the last check (also: still missing)
        previous = self.model_stamp
        self.model_stamp = stamp
        try:
            detector = load_detector(self.model_path)
        except ModelLoadError as exc:
            if not self.degraded or previous == "never checked" or stamp is not None:
                self.log.warning("model_degraded", reason=str(exc), fallback=HeuristicDetector.version)
            self.detector, self.degraded = HeuristicDetector(), True
            return
        self.detector, self.degraded = detector, False
        windows = getattr(detector, "windows_model", None)  # None: features computed in numpy
        self.log.info(
            "model_loaded",
            path=str(self.model_path),
            model_version=self.model_version,
            windows_model=None if windows is None else str(windows),
        )

    def on_timer(self, name: str) -> None:
        if name == "model-check":
            self._check_model()
            self.schedule("model-check", MODEL_CHECK_S)

    def on_appended(self, stream: str) -> None:
        # a backlog is worked in batches (one durable transaction each) for at most TURN_S, then the
        # actor yields to Thespian and asks for more: stop requests are never held up for long, and the
        # ~2 ms yield is not paid per batch. Every batch is durable before the handler returns.
        began = time.monotonic()
        try:
            while self._process_batch():
                if time.monotonic() - began >= TURN_S:
                    self.wake_again()
                    break
        except BaseException:
            with contextlib.suppress(Exception):  # the batch in flight is a durable prefix: let it land
                self._settle()
            raise  # the crash is this batch's, reported against its input range
        self._flush()

    def _records_for(self, readings: int) -> int:
        """How many records of ``readings`` hold about ``readings`` readings (records are blocks of a
        producer's commit: their size is learnt from the last batch; the first batch is one record)."""
        if self.readings_per_record is None:
            return 1
        return max(1, round(readings / self.readings_per_record))

    def _process_batch(self) -> bool:
        """One batch of about ``batch_limit`` readings; True when more are waiting."""
        limit = self.input_limit(READINGS, self._records_for(self.batch_limit))
        records = self.event_log.read(READINGS, after=self.offset, limit=limit)
        if not records:
            return False
        self.pipeline.detector = self.detector  # a model (re)loaded since the last chunk
        chunk = ReadingColumns.from_records([r.payload for r in self.admit(records)])
        self.readings_per_record = max(1.0, len(chunk) / len(records))
        began = time.perf_counter()
        detected = self.pipeline.process(chunk)
        self.batch_seconds.append(time.perf_counter() - began)
        self.unsaved += [self._incident(started, reading) for started, reading in detected]
        self.unsaved_batches += 1
        self.offset = records[-1].seq
        # Group commit: a backlog's batches are committed MAX_UNSAVED_BATCHES at a time, with the state after
        # the last of them; the last few of a turn (a live reading's one batch included) are committed by
        # _flush before the handler returns, so latency is unchanged. The commit of one group runs in the
        # writer thread while the next group is scored. Committing whenever the writer was idle instead
        # made ~4x the transactions in a backlog, and their fsyncs' kernel work on the other core slowed
        # the scoring here by ~12 % (bench.pipeline_throughput at B=256). Exactly once as before: proposals
        # and the offset that covers them are in the same transaction, commits stay in order, and a crash
        # loses only batches that were never durable (at most MAX_UNSAVED_BATCHES, scored again).
        if self.unsaved_batches >= MAX_UNSAVED_BATCHES:
            self._hand_to_writer()
        return len(records) == limit

    @property
    def _channel_prefix(self) -> str:
        return f"{self.key}/channel/"

    def _channel_key(self, channel: str) -> str:
        # a digest, not the name: "sensor|pollutant" comes from the wire and LMDB keys are <= 511 bytes
        return self._channel_prefix + hashlib.blake2b(channel.encode(), digest_size=12).hexdigest()

    def _hand_to_writer(self) -> None:
        """Commit the unsaved batches (in the writer thread) once the commit in flight is durable. Only the
        channels these batches changed are written: the others' state is durable already, and writing
        every channel's windows each time made a one-reading commit ~24 KB (most of its time)."""
        state: dict[str, Any] = {"offset": self.offset, "channels": self.pipeline.take_changes()}  # copies
        now = time.monotonic()
        if now >= self.latency_due:
            self.latency_due = now + LATENCY_EVERY_S
            state["latency"] = quantiles(self.batch_seconds)
        proposals, self.unsaved, self.unsaved_batches = self.unsaved, [], 0
        self._settle()  # batches commit in order: the previous one is durable before this one starts
        self.committing = (self._committer().submit(self._commit, proposals, state), proposals)

    def _flush(self) -> None:
        """Everything scored this turn is durable before the handler returns."""
        if self.unsaved_batches:
            self._hand_to_writer()
        self._settle()

    def _committer(self) -> ThreadPoolExecutor:
        """One writer thread: batch N's durable commit (its fsync, with the GIL released) runs while batch
        N+1 is scored, so the model and the disk work at the same time. Commits stay one at a time and in
        order, so what is durable is always a prefix of the batches (exactly once, as before). The thread
        is safe here: this actor creates no children (Thespian forks children from their parent)."""
        if self.writer is None:
            self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference-commit")
        return self.writer

    def _commit(self, proposals: list[dict[str, Any]], state: dict[str, Any]) -> None:
        with self.event_log.batch() as batch:
            for incident in proposals:
                batch.append(PROPOSED_INCIDENTS, incident)
            for channel, value in state["channels"].items():
                batch.put_value(self._channel_key(channel), {"channel": channel, **value})
            batch.put_value(self.key, {"offset": state["offset"]})  # no "buffers": per-channel values
            if state.get("latency"):
                batch.put_value(INFERENCE_LATENCY_PREFIX + self.path, state["latency"])

    def _settle(self) -> None:
        """Wait for the batch being committed; its failure (a full disk, a newer instance's fence) is
        raised here, a crash like any other; its detections are logged once they are durable."""
        if self.committing is None:
            return
        done, proposals = self.committing
        self.committing = None
        done.result()
        for incident in proposals:
            self.log.info(
                "detection",
                incident_id=incident["incident_id"],
                sensor=incident["sensor"],
                type=incident["type"],
                confidence=incident["confidence"],
                model_version=self.model_version,
            )

    def _incident(self, started: EpisodeStarted, reading: dict[str, Any]) -> dict[str, Any]:
        return {
            "incident_id": started.incident_id,
            "timestamp": started.start_ts,
            "type": f"{started.pollutant}_leak",
            "source_node": self.node,
            "sensor": started.sensor,
            "confidence": round(float(started.confidence), 4),
            "payload": {
                "reading": {k: reading[k] for k in ("value", "unit", "ts")},
                "location": reading.get("location"),
                "pollutant": started.pollutant,
                "model_version": self.model_version,
                "degraded": self.degraded,
                "ingested_at": reading.get("ingested_at"),
            },
        }
