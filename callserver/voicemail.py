"""After the caller hangs up: file each recording, then fill in its transcript.

Order matters, because nothing answered may be lost:
1. the WAV is already durable on disk with its sidecar (callserver/recording.py);
2. its row is committed at once (a ticket for a cancellation message, or the message on its
   callback) — before any recognition, so a recognizer failure or a crash cannot cost it;
3. the transcript and what extraction finds (name, personnummer, intent) are written later.
At start-up, `recover()` files what a crash left between 1 and 2 (partial `.part` files
included) and re-transcribes tickets that were filed but never transcribed (between 2 and 3).
While running, the same sweep repeats every `recording.sweep_interval_s` (`start_sweeping`), so
what could not be filed at once (a database that refused the row, a `.part` the full disk would
not let us finish) is filed once it can be, without a restart; it never touches a recording a
call of this process still holds (callserver/recording.py). Filing is idempotent by the
recording's path, so a sweep can meet a recording twice.

A message cut short by a full disk is filed at once as partial, like a crash leftover.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from callserver import call_log
from callserver.call_log import SessionFactory
from callserver.recording import LEFTOVER_AGE_S, Sidecar, collect, read_sidecar, wav_duration
from ivr_flows.call_api import RecordingPurpose, RecordingResult
from transcription.extraction import extract
from transcription.streaming import CallTranscriber, NullTranscriber, Transcriber
from transcription.vosk_engine import SpeechModel, Transcript, TranscriptFailure
from transcription.wav import read_wav_8k, transcribe_pcm

log = logging.getLogger(__name__)


class Voicemail:
    """Files recordings and their transcripts; one per server process."""

    def __init__(
        self,
        db: SessionFactory,
        recordings_dir: Path,
        *,
        min_seconds: float,
        speech_model: SpeechModel | None,
    ) -> None:
        self.db = db
        self.recordings_dir = recordings_dir
        self.min_seconds = min_seconds
        self.speech_model = speech_model
        self._background: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._unfileable: set[Path] = set()
        """Recordings an operator must look at (no readable sidecar, no clinic): logged once."""

    def transcriber(self) -> Transcriber:
        """A recognizer for one recording, fed while the caller speaks (or a stand-in that
        says the model is missing)."""
        if self.speech_model is None:
            return NullTranscriber()
        return CallTranscriber(self.speech_model)

    async def close(self) -> None:
        """Stop transcripts still being worked on; their tickets are re-transcribed at the
        next start (they have no transcript status yet)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.wait([self._sweeper], timeout=5)
            self._sweeper = None
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(list(self._background), timeout=5)

    # ------------------------------------------------------------------ live calls
    async def file(
        self, result: RecordingResult, sidecar: Sidecar, transcriber: Transcriber
    ) -> None:
        """The LiveCall hook for a finished recording: file it now, transcribe it after.

        A recording cut short by the disk ("storage_error") is filed as partial. When the
        database refuses the row, the recording stays on disk and the sweep files it later.
        """
        pending = transcriber.finish()  # awaited below in any case: it frees the recognizer
        if result.path is None:
            self._spawn(self._ticket_transcript(None, pending, None))
            return
        partial = result.ended_by == "storage_error"
        try:
            if sidecar.meta.purpose is RecordingPurpose.CALLBACK_MESSAGE:
                callback_id = await asyncio.to_thread(
                    call_log.store_callback_message, self.db, path=result.path,
                    duration_s=result.duration_s, sidecar=sidecar, complete=not partial,
                )  # fmt: skip
                self._spawn(self._message_transcript(callback_id, pending))
                return
            ticket_id = None
            if sidecar.call.clinic_id:
                ticket_id = await asyncio.to_thread(
                    call_log.store_recording, self.db, path=result.path,
                    duration_s=result.duration_s, sidecar=sidecar, min_seconds=self.min_seconds,
                    partial=partial, complete=not partial,
                )  # fmt: skip
        except SQLAlchemyError as exc:
            log.error("recording %s could not be filed now (%s): it stays on disk and the "
                      "sweep files it", result.path.name, exc)  # fmt: skip
            self._spawn(self._ticket_transcript(None, pending, None))
            return
        self._spawn(self._ticket_transcript(ticket_id, pending, sidecar.meta.personnummer))

    # ------------------------------------------------------------------ sweeps
    async def recover(self) -> None:
        """At start-up: file what a crash left on disk, and transcribe tickets that never got a
        transcript."""
        await self._file_leftovers(min_age_s=0.0)
        for ticket_id, path, keypad_pnr in await asyncio.to_thread(
            call_log.tickets_without_transcript, self.db
        ):
            self._spawn(
                self._ticket_transcript(ticket_id, self._transcribe(Path(path)), keypad_pnr)
            )

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
        """File leftovers no live call holds (and transcribe their tickets), remove stray
        files; returns how many tickets it made."""
        tickets = await self._file_leftovers(min_age_s=LEFTOVER_AGE_S)
        for ticket_id, path, keypad_pnr in tickets:
            self._spawn(self._ticket_transcript(ticket_id, self._transcribe(path), keypad_pnr))
        return len(tickets)

    async def _file_leftovers(self, min_age_s: float) -> list[tuple[int, Path, str | None]]:
        """File every recording on disk that has no row yet; (ticket, path, keypad number) of
        the tickets made."""
        found = await asyncio.to_thread(collect, self.recordings_dir, min_age_s=min_age_s)
        found = [(wav, partial) for wav, partial in found if wav not in self._unfileable]
        if not found:
            return []
        filed = await asyncio.to_thread(
            call_log.filed_paths, self.db, [str(wav) for wav, _ in found]
        )
        tickets: list[tuple[int, Path, str | None]] = []
        for wav, partial in found:
            if str(wav) in filed:
                continue
            sidecar = await asyncio.to_thread(read_sidecar, wav)
            if sidecar is None:
                self._unfileable.add(wav)  # logged by read_sidecar: an operator must look
                continue
            duration = await asyncio.to_thread(wav_duration, wav)
            if sidecar.meta.purpose is RecordingPurpose.CALLBACK_MESSAGE:
                callback_id = await asyncio.to_thread(
                    call_log.store_callback_message, self.db, path=wav, duration_s=duration,
                    sidecar=sidecar, complete=not partial,
                )  # fmt: skip
                if callback_id is None:
                    self._unfileable.add(wav)  # logged: its callback does not exist
                continue
            if not sidecar.call.clinic_id:
                log.error("recording %s has no clinic in its metadata: left for an operator", wav)
                self._unfileable.add(wav)
                continue
            ticket = await asyncio.to_thread(
                call_log.store_recording, self.db, path=wav, duration_s=duration,
                sidecar=sidecar, min_seconds=self.min_seconds, partial=partial,
                complete=not partial,
            )  # fmt: skip
            if ticket is not None:
                log.warning("recovered recording %s as ticket %d", wav.name, ticket)
                tickets.append((ticket, wav, sidecar.meta.personnummer))
        return tickets

    async def _transcribe(self, path: Path) -> Transcript:
        model = self.speech_model
        if model is None:
            return Transcript(text="", failure=TranscriptFailure.MODEL_MISSING)
        return await asyncio.to_thread(lambda: transcribe_pcm(model, read_wav_8k(path)))

    # ------------------------------------------------------------------ transcripts
    async def _ticket_transcript(
        self,
        ticket_id: int | None,
        pending: Coroutine[Any, Any, Transcript],
        keypad_pnr: str | None,
    ) -> None:
        try:
            transcript = await pending
        except Exception as exc:
            log.exception("transcription failed for ticket %s", ticket_id)
            transcript = Transcript(
                text="", failure=TranscriptFailure.RECOGNITION_FAILED, error=repr(exc)
            )
        if ticket_id is None:
            return
        if transcript.failure is not None:
            extraction = None
            log.warning("ticket %d has no transcript: %s %s", ticket_id, transcript.failure,
                        transcript.error or "")  # fmt: skip
        else:
            extraction = await asyncio.to_thread(extract, transcript.text, transcript.alternatives)
        fields = call_log.transcript_fields(keypad_pnr, transcript, extraction)
        await asyncio.to_thread(call_log.ticket_updated, self.db, ticket_id, fields)
        log.info(
            "ticket %d transcribed: %s, speech personnummer %s",
            ticket_id, fields["transcript_status"], fields.get("speech_personnummer_status"),
        )  # fmt: skip

    async def _message_transcript(
        self, callback_id: int | None, pending: Coroutine[Any, Any, Transcript]
    ) -> None:
        try:
            transcript = await pending
        except Exception:
            log.exception("transcription of the message for callback %s failed", callback_id)
            return
        if callback_id is not None and transcript.failure is None:
            await asyncio.to_thread(
                call_log.callback_message_transcribed, self.db, callback_id, transcript.text
            )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
