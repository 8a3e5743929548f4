"""The running call server: SIP engine, media, flows, storage and the staff UI in one process.

Data flows one way: a call (engine + media) runs a flow (ivr_flows), the flow's recordings are
stored durably (recording.py) and become tickets (call_log.py), which staff handle (staff_ui).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from callbacks.dispatcher import CallbackDispatcher, CallbackJob
from callserver import call_log
from callserver.callback_calls import CallbackCaller
from callserver.callback_service import ClinicBookings
from callserver.dialer import Dialer, OutboundLeg
from callserver.live_call import LiveCall
from callserver.media.clock import MediaClock
from callserver.media.ports import NoMediaPortError, PortPool
from callserver.media.session import MediaSession
from callserver.prompts import PromptLibrary
from callserver.recording import sweep
from callserver.sip.engine import Dialog, SipEngine
from config.clinics import Clinic, clinic_for_number, load_clinics
from config.settings import Settings
from ivr_flows.call_api import CallEnded, CallInfo, RecordingResult
from ivr_flows.cancellation import RecordingLimits
from ivr_flows.main_menu import MenuOptions, main_menu
from staff_ui.app import create_app, load_or_create_secret
from storage.clinics import upsert_clinic
from storage.db import make_engine, make_session_factory, migrate
from transcription.extraction import extract
from transcription.streaming import CallTranscriber, NullTranscriber, Transcriber
from transcription.transcribe_cli import read_wav_8k
from transcription.vosk_engine import (
    Recognition,
    SpeechModel,
    SpeechModelError,
    Transcript,
    load_model,
)

log = logging.getLogger(__name__)

ANSWER_DELAY_S = 0.3  # a short ring, so a caller's CANCEL can still win the race


class CallServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clinics: dict[str, Clinic] = load_clinics(
            Path(settings.clinics.dir), settings.clinics.timezone
        )
        self.prompts = PromptLibrary(settings.prompts_dir)
        for clinic in self.clinics.values():
            self.prompts.add_clinic_overrides(clinic.id, clinic.prompt_overrides)
        self.db_engine = make_engine(settings.database_url)
        self.db = make_session_factory(self.db_engine)
        self.pool = PortPool(
            settings.sip.host, settings.sip.rtp_port_low, settings.sip.rtp_port_high
        )
        self.clock = MediaClock()
        self.engine = SipEngine(
            host=settings.sip.host,
            port=settings.sip.port,
            peer=settings.sip_peer,
            on_invite=self.handle_invite,
            mode=settings.sip.mode,
            username=settings.sip.username,
            password=settings.sip.password,
        )
        self.dialer = Dialer(self.engine, self.pool, self.clock)
        self.callback_caller = CallbackCaller(
            self.dialer, self._staff_call, timeout_s=settings.sip.outbound_timeout_s
        )
        self.dispatcher = CallbackDispatcher(
            self.db,
            self.clinics,
            self.callback_caller.place,
            node_id=settings.callbacks.node_id or f"{socket.gethostname()}:{settings.sip.port}",
            lease_s=settings.callbacks.lease_s,
            poll_interval_s=settings.callbacks.poll_interval_s,
        )
        self.limits = RecordingLimits(
            settings.recording.max_seconds,
            settings.recording.silence_seconds,
            settings.recording.min_seconds,
        )
        self._runner: web.AppRunner | None = None
        self.speech_model: SpeechModel | None = None
        self._background: set[asyncio.Task] = set()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await asyncio.to_thread(self._sync_clinics)
        await self._load_speech_model()
        await self.recover_recordings()
        self.clock.start()
        await self.engine.start()
        await self.dispatcher.start()
        app = create_app(
            self.db,
            load_or_create_secret(self.settings.data_dir),
            timezone=self.settings.clinics.timezone,
            clinics=self.clinics,
            on_callbacks_changed=self.dispatcher.wake,
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.http.host, self.settings.http.port)
        await site.start()
        log.info(
            "staff UI on http://%s:%d/ ; clinics: %s",
            self.settings.http.host,
            self.settings.http.port,
            ", ".join(f"{c.id} ({'/'.join(c.numbers)})" for c in self.clinics.values()),
        )

    async def stop(self) -> None:
        await self.dispatcher.stop()
        await self.engine.stop()
        for task in list(self._background):
            task.cancel()
        await self.clock.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        self.db_engine.dispose()

    async def _load_speech_model(self) -> None:
        path = self.settings.stt.model_path
        if not path:
            log.warning(
                "no speech model configured (stt.model_path): voicemails are recorded and "
                "ticketed without transcript; run `callserver fetch-model` to enable it"
            )
            return
        try:
            self.speech_model = await asyncio.to_thread(load_model, Path(path))
        except SpeechModelError as exc:
            log.error("%s; continuing without transcripts", exc)

    def _transcriber(self) -> Transcriber:
        if self.speech_model is None:
            return NullTranscriber()
        return CallTranscriber(self.speech_model)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _sync_clinics(self) -> None:
        with self.db() as session, session.begin():
            for clinic in self.clinics.values():
                upsert_clinic(session, clinic.id, clinic.name)

    async def recover_recordings(self) -> None:
        """Turn recordings a crash left behind into tickets: nothing answered is ever lost."""
        leftovers = await asyncio.to_thread(sweep, self.settings.recordings_dir)
        for item in leftovers:
            if item.metadata.get("purpose") == "callback_message":
                await asyncio.to_thread(
                    call_log.store_callback_message, self.db, path=item.wav_path,
                    duration_s=item.duration_s, metadata=item.metadata,
                    complete=not item.partial,
                )  # fmt: skip
                continue
            if not item.metadata.get("clinic_id"):
                log.error("recording %s has no clinic in its metadata: left for an operator",
                          item.wav_path)  # fmt: skip
                continue
            ticket = await asyncio.to_thread(
                call_log.store_recording,
                self.db,
                path=item.wav_path,
                duration_s=item.duration_s,
                metadata=item.metadata,
                min_seconds=self.limits.min_s,
                partial=item.partial,
                complete=not item.partial,
            )
            if ticket is not None:
                log.warning("recovered recording %s as ticket %d", item.wav_path.name, ticket)
        for ticket_id, path, keypad_pnr in await asyncio.to_thread(
            call_log.tickets_without_transcript, self.db
        ):
            self._spawn(self._transcribe_file(ticket_id, Path(path), keypad_pnr))

    # ------------------------------------------------------------------ calls
    async def handle_invite(self, dialog: Dialog) -> None:
        clinic = clinic_for_number(self.clinics, dialog.called)
        call_db_id = await asyncio.to_thread(
            call_log.call_started,
            self.db,
            sip_call_id=dialog.call_id,
            clinic_id=clinic.id if clinic else None,
            caller=dialog.caller,
            called=dialog.called,
        )
        outcome = "error"
        media: MediaSession | None = None
        try:
            assert dialog.offer is not None
            codec, pt = dialog.offer.choose_codec() or ("PCMU", 0)
            try:
                media = await self._open_media(dialog, codec, pt)
            except (NoMediaPortError, ValueError) as exc:
                log.error("call %s refused: %s", dialog.call_id, exc)
                self.engine.reject(dialog, 503, "Service Unavailable")
                outcome = "no_media_port"
                return
            await asyncio.sleep(ANSWER_DELAY_S)
            if dialog.ended.is_set() or not self.engine.answer(dialog, media.local_port, pt):
                outcome = "cancelled"
                return
            await asyncio.to_thread(
                call_log.call_updated, self.db, call_db_id, answered_at=call_log.now()
            )
            info = CallInfo(
                caller=dialog.caller, called=dialog.called, clinic_id=clinic.id if clinic else ""
            )
            call = self._live_call(
                dialog,
                media,
                info,
                {
                    "call_db_id": call_db_id,
                    "sip_call_id": dialog.call_id,
                    "clinic_id": clinic.id if clinic else None,
                    "caller": dialog.caller,
                    "called": dialog.called,
                    "started_at": datetime.now(UTC).isoformat(),
                },
            )
            try:
                if clinic is None:
                    log.warning("call to unknown number %s: told so and hung up", dialog.called)
                    await call.play("unknown_number", interruptible=False)
                    outcome = "unknown_number"
                else:
                    outcome = await main_menu(call, self._menu_options(clinic, call_db_id))
            except CallEnded:
                outcome = "caller_hangup"
            if not dialog.ended.is_set():
                await asyncio.sleep(0.2)  # let the last prompt frames leave
        finally:
            if media is not None:
                media.close()
            self.engine.hangup(dialog)
            await asyncio.to_thread(
                call_log.call_updated, self.db, call_db_id, ended_at=call_log.now(),
                outcome=outcome,
            )  # fmt: skip

    def _menu_options(self, clinic: Clinic, call_db_id: int) -> MenuOptions:
        open_now = clinic.is_open(datetime.now(UTC))
        offers_callback = clinic.callback and clinic.callbacks is not None
        return MenuOptions(
            open_now=open_now,
            callback=offers_callback,
            switchboard=clinic.switchboard_number is not None,
            limits=self.limits,
            booking=ClinicBookings(self.db, clinic, call_db_id) if offers_callback else None,
            switchboard_number=clinic.switchboard_number,
        )

    def _live_call(
        self, dialog: Dialog, media: MediaSession, info: CallInfo, meta: dict
    ) -> LiveCall:
        return LiveCall(
            info=info,
            dialog=dialog,
            engine=self.engine,
            media=media,
            prompts=self.prompts,
            recordings_dir=self.settings.recordings_dir,
            recording=self.settings.recording,
            on_recording=self._store_recording,
            base_metadata=meta,
            transcriber_factory=self._transcriber,
            dialer=self.dialer,
            timezone=self.settings.clinics.timezone,
        )

    def _staff_call(self, leg: OutboundLeg, job: CallbackJob) -> LiveCall:
        info = CallInfo(caller=None, called=job.staff_number or "", clinic_id=job.clinic_id)
        return self._live_call(leg.dialog, leg.media, info, {"clinic_id": job.clinic_id})

    async def _open_media(self, dialog: Dialog, codec: str, pt: int) -> MediaSession:
        assert dialog.offer is not None
        return await MediaSession.open(
            self.pool,
            (dialog.offer.address, dialog.offer.port),
            codec=codec,
            payload_type=pt,
            dtmf_payload_type=dialog.offer.dtmf_payload_type,
            clock=self.clock,
        )

    async def _store_recording(
        self, result: RecordingResult, metadata: dict[str, Any], transcriber: Transcriber
    ) -> None:
        """Ticket first (nothing lost if recognition fails), transcript fields a moment later."""
        if metadata.get("purpose") == "callback_message":
            await self._store_callback_message(result, metadata, transcriber)
            return
        ticket_id = None
        if result.path is not None and metadata.get("clinic_id"):
            ticket_id = await asyncio.to_thread(
                call_log.store_recording,
                self.db,
                path=result.path,
                duration_s=result.duration_s,
                metadata=metadata,
                min_seconds=self.limits.min_s,
                partial=False,
            )
        keypad = metadata.get("personnummer") if metadata.get("personnummer_source") else None
        self._spawn(self._finish_transcript(ticket_id, transcriber.finish(), keypad))

    async def _store_callback_message(
        self, result: RecordingResult, metadata: dict[str, Any], transcriber: Transcriber
    ) -> None:
        callback_id = None
        if result.path is not None:
            callback_id = await asyncio.to_thread(
                call_log.store_callback_message, self.db, path=result.path,
                duration_s=result.duration_s, metadata=metadata,
            )  # fmt: skip
        self._spawn(self._finish_message_transcript(callback_id, transcriber.finish()))

    async def _finish_message_transcript(self, callback_id: int | None, pending: Any) -> None:
        try:
            transcript: Transcript = await pending
        except Exception:
            log.exception("transcription of the message for callback %s failed", callback_id)
            return
        if callback_id is not None and not transcript.missing_reason:
            await asyncio.to_thread(
                call_log.callback_message_transcribed, self.db, callback_id, transcript.text
            )

    async def _finish_transcript(
        self, ticket_id: int | None, pending: Any, keypad_pnr: str | None
    ) -> None:
        try:
            transcript: Transcript = await pending
        except Exception:
            log.exception("transcription failed for ticket %s", ticket_id)
            transcript = Transcript(text="", missing_reason="no transcript: recognition failed")
        if ticket_id is None:
            return
        extraction = await asyncio.to_thread(extract, transcript.text, transcript.alternatives)
        fields = call_log.transcript_fields(
            keypad_pnr, transcript.text, transcript.missing_reason, extraction
        )
        if not transcript.missing_reason:
            fields["transcript_json"] = json.dumps(transcript.to_json(), ensure_ascii=False)
        await asyncio.to_thread(call_log.ticket_updated, self.db, ticket_id, fields)
        log.info(
            "ticket %d transcribed: %s, speech personnummer %s",
            ticket_id, fields["transcript_status"], fields.get("speech_personnummer_status"),
        )  # fmt: skip

    async def _transcribe_file(self, ticket_id: int, path: Path, keypad_pnr: str | None) -> None:
        """Transcribe a recording recovered after a crash, from its WAV file."""
        model = self.speech_model

        def run() -> Transcript:
            if model is None:
                return Transcript(text="", missing_reason="no transcript: speech model missing")
            recognition = Recognition(model)
            recognition.feed(read_wav_8k(path))
            return recognition.finish()

        await self._finish_transcript(ticket_id, asyncio.to_thread(run), keypad_pnr)


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT; migrations must have run (`callserver migrate`)."""
    await asyncio.to_thread(migrate, settings.database_url)
    server = CallServer(settings)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"callserver ready: SIP {settings.sip.host}:{settings.sip.port}", flush=True)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
