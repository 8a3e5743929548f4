"""Transcribe a call while it happens, from the event loop that paces its RTP.

The media loop cannot wait: a 20 ms frame that is late is heard. So `CallTranscriber.feed`
only appends to a buffer; every ~0.5 s of audio goes to a worker thread, where vosk does the
work (it releases the GIL inside AcceptWaveform, so recognition of many calls runs in parallel
with the loop). By hang-up most of the message has been recognized and `finish` only waits for
the last half second and vosk's final pass.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Executor, Future, InvalidStateError, ThreadPoolExecutor
from typing import Protocol

from transcription.vosk_engine import (
    DEFAULT_MAX_ALTERNATIVES,
    INPUT_RATE,
    Recognition,
    SpeechModel,
    Transcript,
    TranscriptFailure,
)

log = logging.getLogger(__name__)

BATCH_SECONDS = 0.5
_BATCH_BYTES = int(INPUT_RATE * BATCH_SECONDS) * 2

_shared_executor: ThreadPoolExecutor | None = None
_shared_executor_lock = threading.Lock()


RECOGNITION_NICENESS = 19
"""Used only where SCHED_IDLE is refused (it never is for one's own threads on Linux)."""


def shared_executor() -> ThreadPoolExecutor:
    """One pool for all calls, a thread per CPU: more threads would only take turns."""
    global _shared_executor
    with _shared_executor_lock:
        if _shared_executor is None:
            _shared_executor = ThreadPoolExecutor(
                max_workers=os.cpu_count() or 2,
                thread_name_prefix="stt",
                initializer=lower_thread_priority,
            )
        return _shared_executor


def lower_thread_priority() -> str:
    """Make the calling thread use only CPU time that nothing else wants; returns how.

    Recognition must never make an RTP frame late. With nice 10 (what this did first) the
    recognizers still took time slices from the media loop: under the kernel's EEVDF scheduler
    a waking nice-0 thread does not always preempt a running niced one at once, and the loop's
    20 ms sends went out 30-50 ms apart while every core recognized (bench/README.md,
    "Transcription queue"). SCHED_IDLE threads run only when no normal thread wants the core
    and are preempted the moment one wakes, so the loop, the database threads and the
    dispatcher always come first, and recognition still has every idle core. An overload then
    makes transcripts late, never calls. Linux applies this per thread (its TID); elsewhere it
    is a no-op.
    """
    if not sys.platform.startswith("linux"):
        return "unchanged"
    tid = threading.get_native_id()
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        return "SCHED_IDLE"
    except (OSError, AttributeError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, tid, RECOGNITION_NICENESS)
        return f"nice {RECOGNITION_NICENESS}"
    except OSError:
        log.warning("could not lower the priority of the speech recognition threads")
        return "unchanged"


class Transcriber(Protocol):
    """What a call needs: hand over frames as they arrive, get the transcript at hang-up.

    `live` says whether frames are really being recognized: a stand-in (no model, or too many
    live recognitions already) only lets the call record, and the message is transcribed from
    its WAV after hang-up.
    """

    live: bool

    def feed(self, frame: bytes) -> None: ...

    async def finish(self) -> Transcript: ...


_FINISH = object()


class CallTranscriber:
    """Speech recognition of one call, fed from the event loop, run in worker threads.

    Batches of one call are recognized strictly in order and never two at once (a vosk
    recognizer is not thread-safe); batches of different calls share the pool's threads. Each
    job handles one batch and then queues the next behind the other calls' work, so one call
    that fell behind does not starve the rest.

    Call `finish` exactly once, also when the call ends abnormally: it frees the recognizer.
    """

    live = True

    def __init__(
        self,
        model: SpeechModel,
        *,
        max_alternatives: int = DEFAULT_MAX_ALTERNATIVES,
        grammar: Sequence[str] | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.model = model
        self._max_alternatives = max_alternatives
        self._grammar = grammar
        self._executor = executor or shared_executor()
        self._buffer = bytearray()
        self._queue: deque[object] = deque()
        self._lock = threading.Lock()
        self._job_scheduled = False
        self._recognition: Recognition | None = None  # made in the worker: it takes ~0.1 s
        self._error: BaseException | None = None
        self._result: Future[Transcript] = Future()
        self._finishing = False

    def feed(self, frame: bytes) -> None:
        """Take one frame of 8 kHz 16-bit PCM; returns at once."""
        if self._finishing:
            raise RuntimeError("CallTranscriber.feed after finish()")
        self._buffer += frame
        if len(self._buffer) >= _BATCH_BYTES:
            self._enqueue(bytes(self._buffer))
            self._buffer.clear()

    async def finish(self) -> Transcript:
        """Recognize what is still buffered and return the call's transcript."""
        if self._finishing:
            raise RuntimeError("CallTranscriber.finish called twice")
        self._finishing = True
        if self._buffer:
            self._enqueue(bytes(self._buffer))
            self._buffer.clear()
        self._enqueue(_FINISH)
        return await asyncio.wrap_future(self._result)

    def _enqueue(self, item: object) -> None:
        with self._lock:
            self._queue.append(item)
            if self._job_scheduled:
                return
            self._job_scheduled = True
        self._executor.submit(self._run_one)

    def _run_one(self) -> None:
        """Worker thread: handle the oldest queued item, reschedule if more are waiting."""
        with self._lock:
            item = self._queue.popleft()
        try:
            self._handle(item)
        finally:
            with self._lock:
                more = bool(self._queue)
                self._job_scheduled = more
            if more:
                self._executor.submit(self._run_one)

    def _handle(self, item: object) -> None:
        if item is _FINISH:
            transcript = self._final_transcript()
            self._recognition = None
            try:
                self._result.set_result(transcript)
            except InvalidStateError:  # finish() was cancelled: nobody wants the result
                pass
            return
        if self._error is not None:
            return
        assert isinstance(item, bytes)
        try:
            if self._recognition is None:
                self._recognition = Recognition(
                    self.model, self._max_alternatives, grammar=self._grammar
                )
            self._recognition.feed(item)
        except Exception as error:
            log.exception("speech recognition failed; the rest of this call is not transcribed")
            self._error = error

    def _final_transcript(self) -> Transcript:
        if self._error is None:
            try:
                if self._recognition is None:  # hung up before a single frame
                    self._recognition = Recognition(
                        self.model, self._max_alternatives, grammar=self._grammar
                    )
                return self._recognition.finish()
            except Exception as error:
                log.exception("speech recognition failed at the end of the call")
                self._error = error
        return Transcript(
            text="",
            model_name=self.model.name,
            failure=TranscriptFailure.RECOGNITION_FAILED,
            error=f"{type(self._error).__name__}: {self._error}",
        )


class NullTranscriber:
    """Stands in for `CallTranscriber` when nothing is recognized during the call (no speech
    model, or the limit of live recognitions reached): the message is recorded and ticketed,
    and transcribed later from its WAV if a model is there.
    """

    live = False

    def feed(self, frame: bytes) -> None:
        pass

    async def finish(self) -> Transcript:
        return Transcript(text="", failure=TranscriptFailure.MODEL_MISSING)
