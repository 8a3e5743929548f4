"""Workers that drain the transcription queue: in the server, or in `callserver
transcribe-worker` processes on any node sharing the database and the recordings directory.

Each worker is a plain thread at lower priority (never on the event loop that paces RTP): claim
the oldest job, read its WAV, recognize it (the lease is renewed while it runs), extract the
fields, write them with the job's completion (storage/transcription_queue.py), repeat. An idle
worker looks again every `poll_s` seconds, or at once when `wake()` says a job was queued here.
Adding capacity to a region means starting more of these processes.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from callserver import fault_points
from callserver.call_log import transcript_fields
from storage import transcription_queue as queue
from storage.models import utcnow
from storage.transcription_queue import Job, JobError, SessionFactory
from transcription.extraction import extract
from transcription.streaming import lower_thread_priority
from transcription.vosk_engine import INPUT_RATE, Recognition, SpeechModel, Transcript
from transcription.wav import WavError, read_wav_8k

log = logging.getLogger(__name__)

FEED_SECONDS = 10.0
"""Audio recognized between two lease renewals."""
HEARTBEAT_S = 5.0


def transcribe_job(
    model: SpeechModel, job: Job, renew: Callable[[], bool] | None = None
) -> Transcript | None:
    """Recognize a queued message's WAV; None when the lease was lost midway. Raises WavError
    or OSError for a file that cannot be read, other exceptions for a recognizer failure."""
    pcm = read_wav_8k(Path(job.path))
    recognition = Recognition(model)
    step = int(INPUT_RATE * FEED_SECONDS) * 2
    for offset in range(0, len(pcm), step):
        recognition.feed(pcm[offset : offset + step])
        if renew is not None and offset + step < len(pcm) and not renew():
            return None
    return recognition.finish()


def finish_job(factory: SessionFactory, job: Job, node_id: str, transcript: Transcript) -> bool:
    """Extract and write a transcript for `job` if this node still holds it."""
    fault_points.reached("transcript_write")  # tests only (tests/faults/)
    if job.callback_id is not None:
        return queue.complete(factory, job, node_id, message_text=transcript.text)
    extraction = extract(transcript.text, transcript.alternatives)
    fields = transcript_fields(job.keypad_personnummer, transcript, extraction)
    return queue.complete(factory, job, node_id, ticket_fields=fields)


class TranscribeWorkers:
    """A pool of worker threads sharing one node id (leases and the worker table use it)."""

    def __init__(
        self,
        factory: SessionFactory,
        model: SpeechModel | None,
        *,
        threads: int,
        node_id: str,
        lease_s: float = 120.0,
        poll_s: float = 1.0,
    ) -> None:
        self.factory = factory
        self.model = model
        self.threads = threads
        self.node_id = node_id
        self.lease = dt.timedelta(seconds=lease_s)
        self.poll_s = poll_s
        self._stopping = threading.Event()
        self._work = threading.Event()
        self._threads: list[threading.Thread] = []
        self.done = 0
        self.failed = 0

    def start(self) -> None:
        if self.model is None:
            log.info("transcription workers not started: no speech model")
            return
        requeued = queue.requeue_model_missing(self.factory)
        if requeued:
            log.warning("%d messages filed without a speech model are queued again", requeued)
        if self.threads <= 0:
            log.info("no transcription workers in this process (stt.workers = 0): "
                     "`callserver transcribe-worker` processes do it")  # fmt: skip
            return
        self._beat()
        for index in range(self.threads):
            thread = threading.Thread(target=self._run, name=f"transcribe-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        beat = threading.Thread(target=self._heartbeats, name="transcribe-heartbeat", daemon=True)
        beat.start()
        self._threads.append(beat)
        log.info("%d transcription workers started as %s", self.threads, self.node_id)

    def wake(self) -> None:
        """A job was queued in this process: an idle worker takes it now, not at its poll."""
        self._work.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking jobs; a job in progress finishes or, after `timeout`, is left to run
        out its lease (then another worker takes it: nothing is lost)."""
        if not self._threads:
            return
        self._stopping.set()
        self._work.set()
        for thread in self._threads:
            thread.join(timeout=max(0.1, timeout))
        try:
            queue.retire(self.factory, self.node_id)
        except Exception:
            log.exception("could not remove worker %s from the worker table", self.node_id)
        self._threads.clear()

    # ------------------------------------------------------------------ threads
    def _heartbeats(self) -> None:
        while not self._stopping.wait(HEARTBEAT_S):
            self._beat()

    def _beat(self) -> None:
        try:
            queue.heartbeat(self.factory, self.node_id, self.threads, utcnow())
        except Exception:
            log.exception("transcription worker heartbeat failed")

    def _run(self) -> None:
        lower_thread_priority()
        while not self._stopping.is_set():
            try:
                job = queue.claim(self.factory, self.node_id, self.lease)
            except Exception:
                log.exception("claiming a transcription job failed; retrying")
                job = None
            if job is None:
                self._work.wait(self.poll_s)
                self._work.clear()
                continue
            self._transcribe(job)

    def _transcribe(self, job: Job) -> None:
        assert self.model is not None
        try:
            transcript = transcribe_job(
                self.model,
                job,
                lambda: queue.renew(self.factory, job.id, self.node_id, self.lease),
            )
        except FileNotFoundError as exc:
            self._failed(job, JobError.FILE_MISSING, exc)
            return
        except (WavError, OSError) as exc:
            self._failed(job, JobError.UNREADABLE_AUDIO, exc)
            return
        except Exception as exc:
            log.exception("recognizer failed on %s", job.path)
            self._failed(job, JobError.RECOGNIZER_FAILED, exc)
            return
        if transcript is None:
            log.warning("transcription job %d: lease lost while recognizing; dropped", job.id)
            return
        try:
            if finish_job(self.factory, job, self.node_id, transcript):
                self.done += 1
                log.info("transcribed job %d (%.1f s of audio) on attempt %d", job.id,
                         transcript.audio_seconds, job.attempt)  # fmt: skip
        except Exception:
            log.exception("writing the transcript of job %d failed; its lease will run out "
                          "and it is done again", job.id)  # fmt: skip

    def _failed(self, job: Job, error: JobError, exc: BaseException) -> None:
        try:
            state = queue.fail_attempt(
                self.factory, job, self.node_id, error, f"{type(exc).__name__}: {exc}"
            )
        except Exception:
            log.exception("recording the failure of job %d failed", job.id)
            return
        if state is queue.JobState.FAILED:
            self.failed += 1
