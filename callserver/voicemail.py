"""After the caller hangs up: file each recording, then fill in its transcript.

Order matters, because nothing answered may be lost:
1. the WAV is already durable on disk with its sidecar (callserver/recording.py);
2. its row is committed at once (a ticket for a cancellation message, or the message on its
   callback) — before any recognition, so a recognizer failure or a crash cannot cost it;
3. the transcript and what extraction finds (name, personnummer, intent) are written later.
At start-up, `recover()` files what a crash left between 1 and 2 (partial `.part` files
included) and re-transcribes tickets that were filed but never transcribed (between 2 and 3).
Filing is idempotent by the recording's path, so recovery can meet a recording twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from callserver import call_log
from callserver.call_log import SessionFactory
from callserver.recording import Sidecar, sweep
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

    def transcriber(self) -> Transcriber:
        """A recognizer for one recording, fed while the caller speaks (or a stand-in that
        says the model is missing)."""
        if self.speech_model is None:
            return NullTranscriber()
        return CallTranscriber(self.speech_model)

    async def close(self) -> None:
        """Stop transcripts still being worked on; their tickets are re-transcribed at the
        next start (they have no transcript status yet)."""
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(list(self._background), timeout=5)

    # ------------------------------------------------------------------ live calls
    async def file(
        self, result: RecordingResult, sidecar: Sidecar, transcriber: Transcriber
    ) -> None:
        """The LiveCall hook for a finished recording: file it now, transcribe it after."""
        pending = transcriber.finish()  # awaited below in any case: it frees the recognizer
        if result.path is None:
            self._spawn(self._ticket_transcript(None, pending, None))
            return
        if sidecar.meta.purpose is RecordingPurpose.CALLBACK_MESSAGE:
            callback_id = await asyncio.to_thread(
                call_log.store_callback_message, self.db, path=result.path,
                duration_s=result.duration_s, sidecar=sidecar,
            )  # fmt: skip
            self._spawn(self._message_transcript(callback_id, pending))
            return
        ticket_id = None
        if sidecar.call.clinic_id:
            ticket_id = await asyncio.to_thread(
                call_log.store_recording, self.db, path=result.path,
                duration_s=result.duration_s, sidecar=sidecar, min_seconds=self.min_seconds,
                partial=False,
            )  # fmt: skip
        self._spawn(self._ticket_transcript(ticket_id, pending, sidecar.meta.personnummer))

    # ------------------------------------------------------------------ after a crash
    async def recover(self) -> None:
        """File what a crash left on disk, and transcribe tickets that never got a transcript."""
        for item in await asyncio.to_thread(sweep, self.recordings_dir):
            if item.sidecar is None:
                continue  # logged by sweep: an operator must look at it
            if item.sidecar.meta.purpose is RecordingPurpose.CALLBACK_MESSAGE:
                await asyncio.to_thread(
                    call_log.store_callback_message, self.db, path=item.wav_path,
                    duration_s=item.duration_s, sidecar=item.sidecar, complete=not item.partial,
                )  # fmt: skip
                continue
            if not item.sidecar.call.clinic_id:
                log.error("recording %s has no clinic in its metadata: left for an operator",
                          item.wav_path)  # fmt: skip
                continue
            ticket = await asyncio.to_thread(
                call_log.store_recording, self.db, path=item.wav_path,
                duration_s=item.duration_s, sidecar=item.sidecar, min_seconds=self.min_seconds,
                partial=item.partial, complete=not item.partial,
            )  # fmt: skip
            if ticket is not None:
                log.warning("recovered recording %s as ticket %d", item.wav_path.name, ticket)
        for ticket_id, path, keypad_pnr in await asyncio.to_thread(
            call_log.tickets_without_transcript, self.db
        ):
            self._spawn(
                self._ticket_transcript(ticket_id, self._transcribe(Path(path)), keypad_pnr)
            )

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
