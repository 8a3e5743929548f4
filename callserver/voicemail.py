"""After the caller hangs up: file each recording, then fill in its transcript.

Order matters, because nothing answered may be lost:
1. the WAV is already durable on disk with its sidecar (callserver/recording.py);
2. its row is committed at once (a ticket for a cancellation message, or the message on its
   callback) — before any recognition, so a recognizer failure or a crash cannot cost it;
3. with it, in the same transaction, its transcription job (storage/transcription_queue.py);
   the transcript and what extraction finds (name, personnummer, intent) are written when the
   job is done: at once for a call recognized while the caller spoke (at most stt.max_live at a
   time, so an overload makes transcripts late, never calls fail), else by the transcription
   workers (callserver/transcribe_workers.py), in this process or any other.
At start-up, `recover()` files what a crash left between 1 and 2 (partial `.part` files
included); jobs this node held when it died are given back to the queue.
With a node lease (several nodes on one shared recordings directory, callserver/node_lease.py)
this node records under its own directory, and each sweep also files what dead nodes left in
theirs: only once a node's heartbeat is older than the lease, claimed so that one node does it.
While running, the same sweep repeats every `recording.sweep_interval_s` (`start_sweeping`), so
what could not be filed at once (a database that refused the row, a `.part` the full disk would
not let us finish) is filed once it can be, without a restart; it never touches a recording a
call of this process still holds (callserver/recording.py). Filing is idempotent by the
recording's path, so a sweep can meet a recording twice.

A message cut short by a full disk is filed at once as partial, like a crash leftover.

When filing fails because the database is down (storage.db.is_unavailable), the filing (path,
length, partial or not, the sidecar's facts) goes to the local spool (callserver/spool.py) and
is replayed by `replay_spooled` as soon as the database takes it; the sweep leaves spooled
recordings to the replay, so the filing keeps what only the call knew (a disk-full partial).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from callserver import call_log
from callserver.call_log import Filed, Queueing, SessionFactory
from callserver.db_threads import in_db_thread
from callserver.node_lease import NODES_DIR, NodeLease
from callserver.recording import LEFTOVER_AGE_S, Sidecar, collect, read_sidecar, wav_duration
from callserver.spool import Spool
from callserver.transcribe_workers import finish_job
from config.clinics import Clinic
from ivr_flows.call_api import RecordingPurpose, RecordingResult
from storage import transcription_queue as queue
from storage.db import is_unavailable
from transcription.streaming import CallTranscriber, NullTranscriber, Transcriber
from transcription.vosk_engine import SpeechModel, Transcript

log = logging.getLogger(__name__)

RECORDING_SPOOL_KIND = "recording"
"""Spool records of filings (replayed by Voicemail.replay_spooled)."""


class Voicemail:
    """Files recordings and their transcripts; one per server process."""

    def __init__(
        self,
        db: SessionFactory,
        recordings_dir: Path,
        *,
        min_seconds: float,
        speech_model: SpeechModel | None,
        node_id: str = "local",
        max_live: int = 1,
        live_lease: dt.timedelta = dt.timedelta(minutes=2),
        on_queued: Callable[[], None] | None = None,
        clinics: Mapping[str, Clinic] | None = None,
        node_lease: dt.timedelta | None = None,
        db_executor: Executor | None = None,
        spool: Spool | None = None,
    ) -> None:
        self.db = db
        self.spool = spool
        """Where filings go while the database is down (None: they wait for the sweep)."""
        self.db_executor = db_executor
        """Where database work runs (callserver/db_threads.py); file work stays in the default
        pool."""
        self.recordings_dir = recordings_dir
        self.lease: NodeLease | None = (
            NodeLease(db, recordings_dir, node_id, node_lease) if node_lease else None
        )
        """None: this process alone owns the whole directory (tests of the pipeline)."""
        self.min_seconds = min_seconds
        self.speech_model = speech_model
        self.node_id = node_id
        self.max_live = max_live
        self.live_lease = live_lease
        self.on_queued = on_queued
        """Wakes this process's transcription workers when a message was queued here."""
        self.clinics: Mapping[str, Clinic] = clinics or {}
        """The clinic files: a ticket's deadline counts its clinic's working days."""
        self.live = 0
        """Recognitions running while their callers speak (at most max_live)."""
        self.recordings = 0
        """Recordings this process's calls made (handed to `file`) since start, and their
        seconds: for the metrics."""
        self.recorded_seconds = 0.0
        self._background: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._unfileable: set[Path] = set()
        """Recordings an operator must look at (no readable sidecar, no clinic): logged once."""

    def transcriber(self) -> Transcriber:
        """A recognizer for one recording, fed while the caller speaks; past stt.max_live (or
        without a model) a stand-in, and the message is queued at hang-up instead."""
        if self.speech_model is None or self.live >= self.max_live:
            return NullTranscriber()
        self.live += 1
        return _Counted(CallTranscriber(self.speech_model), self)

    @property
    def own_dir(self) -> Path:
        """Where this node's calls record."""
        return self.lease.own_dir if self.lease is not None else self.recordings_dir

    async def close(self) -> None:
        """Stop live transcripts still being worked on; their jobs go back to the queue when
        their lease runs out (or at once when this node starts again)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.wait([self._sweeper], timeout=5)
            self._sweeper = None
        if self.lease is not None:
            await self.lease.stop()
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(list(self._background), timeout=5)

    # ------------------------------------------------------------------ live calls
    async def file(
        self, result: RecordingResult, sidecar: Sidecar, transcriber: Transcriber
    ) -> None:
        """The LiveCall hook for a finished recording: file it (and queue its transcription)
        now; a live transcript is written as soon as the recognizer is done.

        A recording cut short by the disk ("storage_error") is filed as partial. When the
        database refuses the row, the recording stays on disk and the sweep files it later.
        """
        pending = transcriber.finish()  # awaited below in any case: it frees the recognizer
        live = transcriber.live
        if result.path is None:
            self._spawn(self._discard(pending))
            return
        self.recorded_seconds += result.duration_s
        self.recordings += 1
        partial = result.ended_by == "storage_error"
        queueing = Queueing(
            model=self.speech_model is not None,
            live_owner=self.node_id if live else None,
            live_lease=self.live_lease,
        )
        try:
            filed = await self._store(
                result.path, result.duration_s, sidecar, partial=partial, queueing=queueing
            )
        except SQLAlchemyError as exc:
            self._spawn(self._discard(pending))
            if self.spool is not None and is_unavailable(exc):
                await self._spool_filing(result.path, result.duration_s, sidecar, partial, exc)
                return
            log.error("recording %s could not be filed now (%s): it stays on disk and the "
                      "sweep files it", result.path.name, exc)  # fmt: skip
            return
        if filed is not None and live:
            self._spawn(self._live_transcript(filed, pending))
            return
        self._spawn(self._discard(pending))
        if filed is not None:
            self._queued()

    async def _store(
        self, path: Path, duration_s: float, sidecar: Sidecar, *, partial: bool,
        queueing: Queueing,
    ) -> Filed | None:  # fmt: skip
        """File one recording: on its callback, or as a ticket of its clinic."""
        if sidecar.meta.purpose is RecordingPurpose.CALLBACK_MESSAGE:
            return await in_db_thread(
                self.db_executor, call_log.store_callback_message, self.db, path=path,
                duration_s=duration_s, sidecar=sidecar, queueing=queueing, complete=not partial,
            )  # fmt: skip
        if sidecar.call.clinic_id:
            return await in_db_thread(
                self.db_executor, call_log.store_recording, self.db, path=path,
                duration_s=duration_s, sidecar=sidecar, min_seconds=self.min_seconds,
                partial=partial, queueing=queueing, complete=not partial,
                calendar=self.clinics.get(sidecar.call.clinic_id),
            )  # fmt: skip
        return None

    async def _spool_filing(
        self, path: Path, duration_s: float, sidecar: Sidecar, partial: bool, exc: Exception
    ) -> None:
        assert self.spool is not None
        log.error("recording %s could not be filed: the database is unavailable (%s); the "
                  "filing is spooled", path.name, exc)  # fmt: skip
        record = {
            "path": str(path),
            "duration_s": duration_s,
            "partial": partial,
            "sidecar": sidecar.to_json(),
        }
        try:
            await asyncio.to_thread(self.spool.put, RECORDING_SPOOL_KIND, str(path), record)
        except OSError as spool_exc:
            log.error("recording %s: spooling failed too (%s); the recording stays on disk and "
                      "the sweep files it", path.name, spool_exc)  # fmt: skip

    async def replay_spooled(self, data: dict[str, Any]) -> None:
        """The spool's handler for a filing: idempotent by the recording's path."""
        path = Path(str(data["path"]))
        sidecar = Sidecar.from_json(data["sidecar"])
        queueing = Queueing(model=self.speech_model is not None)
        filed = await self._store(
            path, float(data["duration_s"]), sidecar, partial=bool(data.get("partial")),
            queueing=queueing,
        )  # fmt: skip
        if filed is not None:
            if filed.ticket_id is not None:
                log.warning("spooled recording %s filed as ticket %d", path.name, filed.ticket_id)
            self._queued()

    # ------------------------------------------------------------------ sweeps
    async def recover(self) -> None:
        """At start-up: jobs this node held when it stopped go back to the queue (nothing of
        ours runs yet), and what a crash left on disk is filed and queued."""
        released = await in_db_thread(self.db_executor, queue.release_node, self.db, self.node_id)
        if released:
            log.warning("%d transcriptions this node had not finished are queued again", released)
        if self.lease is not None:
            await self.lease.acquire()
        await self._sweep(min_age_s=0.0)

    def start_sweeping(self, interval_s: float) -> None:
        """Sweep every `interval_s` seconds while running (0: never)."""
        if interval_s > 0 and self._sweeper is None:
            self._sweeper = asyncio.ensure_future(self._sweep_every(interval_s))

    async def _sweep_every(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.sweep_once()
            except SQLAlchemyError as exc:  # the database is down: what is on disk waits
                log.error("sweep of %s could not file (%s); next try in %.0f s",
                          self.recordings_dir, exc, interval_s)  # fmt: skip
            except Exception:
                log.exception("sweep of %s failed; next try in %.0f s", self.recordings_dir,
                              interval_s)  # fmt: skip

    async def sweep_once(self) -> int:
        """File leftovers no live call holds (and queue their transcription), remove stray
        files; returns how many tickets it made."""
        return len(await self._sweep(min_age_s=LEFTOVER_AGE_S))

    async def _sweep(self, min_age_s: float) -> list[int]:
        """Our own leftovers (outside the nodes' directories too: recordings from before node
        leases), then those of dead nodes whose recovery we claimed; the tickets made."""
        if self.lease is None:
            return await self._file_leftovers(self.recordings_dir, min_age_s)
        tickets = await self._file_leftovers(
            self.recordings_dir, min_age_s, exclude=self.recordings_dir / NODES_DIR
        )
        tickets += await self._file_leftovers(self.lease.own_dir, min_age_s)
        for directory in await self.lease.dead_directories():
            try:
                # What was written to within the lease is left alone even now: a node whose
                # heartbeat stalled (database unreachable) may still be recording.
                recovered = await self._file_leftovers(directory, self.lease.lease.total_seconds())
            finally:
                await self.lease.release(directory)
            if recovered:
                log.warning("filed %d recording(s) left by dead node %s", len(recovered),
                            directory.name)  # fmt: skip
            tickets += recovered
        return tickets

    async def _file_leftovers(
        self, directory: Path, min_age_s: float, exclude: Path | None = None
    ) -> list[int]:
        """File (and queue) every recording in `directory` that has no row yet; the tickets
        made."""
        found = await asyncio.to_thread(collect, directory, min_age_s=min_age_s, exclude=exclude)
        found = [
            (wav, partial)
            for wav, partial in found
            if wav not in self._unfileable and not self._spooled(wav)
        ]
        if not found:
            return []
        known = await in_db_thread(
            self.db_executor, call_log.filed_paths, self.db, [str(wav) for wav, _ in found]
        )
        queueing = Queueing(model=self.speech_model is not None)
        tickets: list[int] = []
        for wav, partial in found:
            if str(wav) in known:
                continue
            sidecar = await asyncio.to_thread(read_sidecar, wav)
            if sidecar is None:
                self._unfileable.add(wav)  # logged by read_sidecar: an operator must look
                continue
            duration = await asyncio.to_thread(wav_duration, wav)
            if sidecar.meta.purpose is RecordingPurpose.CALLBACK_MESSAGE:
                message = await in_db_thread(
                    self.db_executor, call_log.store_callback_message, self.db, path=wav,
                    duration_s=duration, sidecar=sidecar, queueing=queueing, complete=not partial,
                )  # fmt: skip
                if message is None:
                    self._unfileable.add(wav)  # logged: its callback does not exist
                else:
                    self._queued()
                continue
            if not sidecar.call.clinic_id:
                log.error("recording %s has no clinic in its metadata: left for an operator", wav)
                self._unfileable.add(wav)
                continue
            filed = await in_db_thread(
                self.db_executor, call_log.store_recording, self.db, path=wav, duration_s=duration,
                sidecar=sidecar, min_seconds=self.min_seconds, partial=partial,
                queueing=queueing, complete=not partial,
                calendar=self.clinics.get(sidecar.call.clinic_id),
            )  # fmt: skip
            if filed is not None and filed.ticket_id is not None:
                log.warning("recovered recording %s as ticket %d", wav.name, filed.ticket_id)
                tickets.append(filed.ticket_id)
                self._queued()
        return tickets

    # ------------------------------------------------------------------ transcripts
    async def _live_transcript(
        self, filed: Filed, pending: Coroutine[Any, Any, Transcript]
    ) -> None:
        """Write the transcript recognized during the call, if this node still holds the job;
        if recognition failed, the job goes back to the queue for a worker to redo."""
        try:
            transcript = await pending
        except Exception as exc:
            log.exception("live recognition of %s failed; queued for the workers", filed.job.path)
            transcript = Transcript(text="", error=repr(exc))
            failed = True
        else:
            failed = transcript.failure is not None
        if failed:
            await in_db_thread(
                self.db_executor, queue.fail_attempt, self.db, filed.job, self.node_id,
                queue.JobError.RECOGNIZER_FAILED, transcript.error or "live recognition failed",
            )  # fmt: skip
            self._queued()
            return
        done = await in_db_thread(
            self.db_executor, finish_job, self.db, filed.job, self.node_id, transcript
        )
        if done:
            log.info("job %d transcribed live (%.1f s of audio)", filed.job.id,
                     transcript.audio_seconds)  # fmt: skip

    async def _discard(self, pending: Coroutine[Any, Any, Transcript]) -> None:
        """Await a stand-in's (or an unneeded) transcript: finishing frees the recognizer."""
        try:
            await pending
        except Exception:
            log.exception("finishing a recognizer failed")

    def _spooled(self, wav: Path) -> bool:
        """The spool holds this recording's filing: its replay files it, not the sweep."""
        return self.spool is not None and self.spool.holds(RECORDING_SPOOL_KIND, str(wav))

    def _queued(self) -> None:
        if self.on_queued is not None:
            self.on_queued()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


class _Counted:
    """A live recognizer that gives its place back when its transcript is done."""

    live = True

    def __init__(self, inner: CallTranscriber, owner: Voicemail) -> None:
        self.inner, self.owner = inner, owner

    def feed(self, frame: bytes) -> None:
        self.inner.feed(frame)

    async def finish(self) -> Transcript:
        try:
            return await self.inner.finish()
        finally:
            self.owner.live -= 1
