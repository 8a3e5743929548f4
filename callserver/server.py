"""The running call server: wiring and lifecycle, nothing else.

One process holds the SIP engine (callserver/sip/), our RTP media (callserver/media/), the
flows (ivr_flows/) run by callserver/inbound.py, the voicemail pipeline (callserver/voicemail.py)
and the callback dispatcher (callbacks/) with its SIP side (callserver/callback_calls.py). The
staff UI (staff_ui/) is `callserver web`, another process sharing only the database and the
recordings directory (staff_ui/process.py); http.embedded serves it from here too, for a
one-process demo. Data flows one way: call -> flow -> recording -> ticket -> staff action.

Database work runs in bounded thread pools of its own (DB_THREADS_CALLS for the call path,
DB_THREADS_CALLBACKS for the dispatcher), apart from the default pool that file work and
anything else blocking uses, so neither can starve the other.

Start-up order is part of "nothing lost": what the local spool holds (writes the database
refused while it was down, callserver/spool.py) is replayed and recordings a crash left behind
are filed before the SIP socket opens, and callbacks that fell due while the server was down
are dialled (or escalated) before new calls are taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from callbacks.dispatcher import CallbackDispatcher, CallbackJob
from callserver import call_log
from callserver.callback_calls import CallbackCaller
from callserver.clinic_mailboxes import ClinicMailboxes
from callserver.cpu_priority import set_process_priority
from callserver.db_threads import in_db_thread
from callserver.dialer import Dialer, OutboundLeg
from callserver.inbound import CALL_SPOOL_KIND, InboundCalls
from callserver.live_call import LiveCall, LiveCalls
from callserver.media.clock import MediaClock
from callserver.media.ports import PortPool
from callserver.metrics import CallServerCollector, DatabaseCollector, MetricsListener, new_registry
from callserver.prompts import PromptLibrary, PromptVoice
from callserver.recording import CallFacts
from callserver.retention import RetentionJob
from callserver.runtime_tuning import tune_after_startup
from callserver.sip.engine import Dialog, SipEngine
from callserver.spool import SPOOL_DIR_NAME, Spool, SpoolReplayer
from callserver.transcribe_workers import TranscribeWorkers
from callserver.voicemail import RECORDING_SPOOL_KIND, Voicemail
from config import calendar, clock
from config.clinics import Clinic, load_clinics
from config.settings import Settings
from ivr_flows.call_api import CallInfo
from ivr_flows.cancellation import RecordingLimits
from staff_ui.app import load_or_create_secret
from staff_ui.process import build_app, start_site
from storage.clinics import upsert_clinic
from storage.db import make_engine, make_session_factory, migrate
from storage.mailbox import MAILBOX_DIR_NAME
from transcription.vosk_engine import SpeechModelError, load_model

log = logging.getLogger(__name__)

DB_THREADS_CALLS = 4
"""Threads for the call path's database work (a call's row, filing a recording, bookings)."""
DB_THREADS_CALLBACKS = 2
"""Threads for the callback dispatcher's rounds and leases."""
WEB_DB_THREADS = 2
"""Threads for a `callserver web` process's database work: one page's queries mostly hold the
GIL, so more threads only queue for it (6 threads: 84 pages/s, 2: 104-116, 1: 111-126 in
bench/README.md's Staff UI); two, so that one slow page (statistics) does not hold up all."""


class CallServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clinics: dict[str, Clinic] = load_clinics(
            Path(settings.clinics.dir), settings.clinics.timezone
        )
        self.prompts = PromptLibrary(settings.prompts_dir)
        for clinic in self.clinics.values():
            self.prompts.add_clinic_overrides(clinic.id, clinic.prompt_overrides)
        self.db_engine = make_engine(settings.database_url, timeout_s=settings.database.timeout_s)
        self.db = make_session_factory(self.db_engine)
        self.db_calls = ThreadPoolExecutor(DB_THREADS_CALLS, thread_name_prefix="db-calls")
        self.db_callbacks = ThreadPoolExecutor(
            DB_THREADS_CALLBACKS, thread_name_prefix="db-callbacks"
        )
        self.spool = Spool(settings.data_dir / SPOOL_DIR_NAME / settings.node_name)
        limits = RecordingLimits(
            settings.recording.max_seconds,
            settings.recording.silence_seconds,
            settings.recording.min_seconds,
        )
        self.voicemail = Voicemail(
            self.db,
            settings.recordings_dir,
            min_seconds=limits.min_s,
            speech_model=None,
            node_id=settings.node_name,
            max_live=settings.stt_max_live,
            live_lease=dt.timedelta(seconds=settings.stt.lease_s),
            clinics=self.clinics,
            node_lease=dt.timedelta(seconds=settings.recording.node_lease_s),
            db_executor=self.db_calls,
            spool=self.spool,
        )
        self.workers: TranscribeWorkers | None = None
        self.pool = PortPool(
            settings.sip.host, settings.sip.rtp_port_low, settings.sip.rtp_port_high
        )
        # IPv6 offers get RTP on sip.media_host_ipv6, from the same port range.
        self.pool6 = (
            PortPool(
                settings.sip.media_host_ipv6, settings.sip.rtp_port_low, settings.sip.rtp_port_high
            )
            if settings.sip.media_host_ipv6
            else None
        )
        self.media_clock = MediaClock(early_wake=settings.runtime.clock_early_wake_ms / 1000)
        self.engine = SipEngine(
            host=settings.sip.host,
            port=settings.sip.port,
            peer=settings.sip_peer,
            on_invite=self._on_invite,
            mode=settings.sip.mode,
            username=settings.sip.username,
            password=settings.sip.password,
            media_host_ipv6=settings.sip.media_host_ipv6,
        )
        self.dialer = Dialer(
            self.engine, self.pool, self.media_clock, rtp_timeout_s=settings.sip.rtp_timeout_s
        )
        self.calls = LiveCalls(
            engine=self.engine,
            prompts=self.prompts,
            recordings_dir=self.voicemail.own_dir,
            recording=settings.recording,
            on_recording=self.voicemail.file,
            transcriber_factory=self.voicemail.transcriber,
            dialer=self.dialer,
            timezone=settings.clinics.timezone,
            key_timeout_factor=settings.ivr.key_timeout_factor,
        )
        self.mailbox_dir = settings.data_dir / MAILBOX_DIR_NAME
        self.mailboxes = ClinicMailboxes(self.db, self.mailbox_dir)
        self.inbound = InboundCalls(
            db=self.db,
            engine=self.engine,
            pool=self.pool,
            media_clock=self.media_clock,
            clinics=self.clinics,
            calls=self.calls,
            limits=limits,
            rtp_timeout_s=settings.sip.rtp_timeout_s,
            pool6=self.pool6,
            mailboxes=self.mailboxes,
            db_executor=self.db_calls,
            spool=self.spool,
        )
        self.replayer = SpoolReplayer(
            self.spool,
            {
                CALL_SPOOL_KIND: self._replay_call,
                RECORDING_SPOOL_KIND: self.voicemail.replay_spooled,
            },
        )
        self.callback_caller = CallbackCaller(
            self.dialer, self._staff_call, timeout_s=settings.sip.outbound_timeout_s
        )
        self.dispatcher = CallbackDispatcher(
            self.db,
            self.clinics,
            self.callback_caller.place,
            node_id=settings.node_name,
            lease_s=settings.callbacks.lease_s,
            poll_interval_s=settings.callbacks.poll_interval_s,
            wake_poll_s=settings.callbacks.wake_poll_s,
            executor=self.db_callbacks,
        )
        self.retention = RetentionJob(self.db, settings.retention, settings.clinics.timezone)
        self.metrics_registry = new_registry(
            CallServerCollector(
                self.engine, self.inbound, self.voicemail, self.media_clock, self.replayer
            ),
            DatabaseCollector(self.db),
        )
        self.metrics = MetricsListener(settings.metrics, self.metrics_registry)
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await asyncio.to_thread(self._sync_clinics)
        await asyncio.to_thread(calendar.warm_up, clock.utcnow().date())
        await self._load_speech_model()
        await self.replayer.replay_now()  # before the sweep: it files with the call's own facts
        await self.voicemail.recover()
        self.workers = TranscribeWorkers(
            self.db,
            self.voicemail.speech_model,
            threads=self.settings.stt_workers,
            node_id=self.settings.node_name,
            lease_s=self.settings.stt.lease_s,
        )
        await asyncio.to_thread(self.workers.start)
        self.voicemail.on_queued = self.workers.wake
        self.voicemail.start_sweeping(self.settings.recording.sweep_interval_s)
        self.replayer.start()
        self.media_clock.start()
        await self.metrics.start()
        await self.engine.start()
        await self.dispatcher.start()
        self.retention.start()
        if self.settings.http.embedded:
            app = build_app(
                self.settings, self.db, on_callbacks_changed=self.dispatcher.wake,
                message_voice=PromptVoice(),
            )  # fmt: skip
            self._runner = await start_site(app, self.settings)
        log.info(
            "clinics: %s",
            ", ".join(f"{c.id} ({'/'.join(c.numbers)})" for c in self.clinics.values()),
        )

    async def stop(self) -> None:
        self.retention.stop()
        await self.dispatcher.stop()
        await self.engine.stop()  # waits (bounded) for calls to file their recordings
        await self.replayer.stop()  # what it still holds is replayed at the next start
        await self.voicemail.close()  # stops the periodic sweep too
        if self.workers is not None:
            await asyncio.to_thread(self.workers.stop)
        await self.media_clock.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.metrics.stop()
        self.db_calls.shutdown(wait=True)
        self.db_callbacks.shutdown(wait=True)
        self.db_engine.dispose()

    async def _replay_call(self, record: dict[str, Any]) -> None:
        await in_db_thread(self.db_calls, call_log.replay_call, self.db, record)

    async def _on_invite(self, dialog: Dialog) -> None:
        await self.inbound.handle(dialog)

    def _staff_call(self, leg: OutboundLeg, job: CallbackJob) -> LiveCall:
        info = CallInfo(caller=None, called=job.staff_number or "", clinic_id=job.clinic_id)
        facts = CallFacts(sip_call_id=leg.dialog.call_id, clinic_id=job.clinic_id)
        return self.calls.make(leg.dialog, leg.media, info, facts)

    async def _load_speech_model(self) -> None:
        path = self.settings.stt.model_path
        if not path:
            log.warning(
                "no speech model configured (stt.model_path): voicemails are recorded and "
                "ticketed, and wait for a transcript until a model is configured; run "
                "`callserver fetch-model` to enable it"
            )
            return
        try:
            self.voicemail.speech_model = await asyncio.to_thread(load_model, Path(path))
        except SpeechModelError as exc:
            log.error("%s; continuing without transcripts", exc)
            return
        log.info(
            "speech recognition: up to %d calls live, %d queue workers in this process",
            self.settings.stt_max_live, self.settings.stt_workers,
        )  # fmt: skip

    def _sync_clinics(self) -> None:
        with self.db() as session, session.begin():
            for clinic in self.clinics.values():
                upsert_clinic(session, clinic.id, clinic.name)


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT; migrations must have run (`callserver migrate`)."""
    # First, before any thread exists: the threads started below inherit it.
    priority = set_process_priority(
        realtime_priority=settings.runtime.realtime_priority,
        nice=settings.runtime.nice,
        what="callserver serve",
    )
    if settings.clock_start is not None:
        clock.start_at(settings.clock_start)
        log.warning(
            "clock.start is set: this server's calendar clock reads %s (phone hours, slots and "
            "callback times follow it); never set it in production",
            clock.utcnow().isoformat(timespec="seconds"),
        )
    await asyncio.to_thread(migrate, settings.database_url)
    server = CallServer(settings)
    await server.start()
    tuning = tune_after_startup(settings.runtime)
    log.info(
        "runtime: %d start-up objects frozen out of GC, GC thresholds %s, switch interval "
        "%.2f ms, CPU priority: %s, event loop: %s", tuning.frozen_objects, tuning.gc_threshold,
        tuning.switch_interval_s * 1000, priority,
        type(asyncio.get_running_loop()).__module__.partition(".")[0],
    )  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"callserver ready: SIP {settings.sip.host}:{settings.sip.port}", flush=True)
    await stop.wait()
    log.info("shutting down")
    await server.stop()


async def serve_web(settings: Settings) -> None:
    """`callserver web`: the staff UI and its API until SIGTERM/SIGINT (staff_ui/process.py)."""
    # Below the call server: a page's CPU must not delay an RTP send (bench/README.md).
    priority = set_process_priority(nice=settings.http.nice, what="callserver web")
    if settings.clock_start is not None:
        clock.start_at(settings.clock_start)
    await asyncio.to_thread(migrate, settings.database_url)
    # One page's queries take a few ms of CPU, mostly holding the GIL: more threads than
    # cores only make them queue for the GIL (and the event loop with them).
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=WEB_DB_THREADS, thread_name_prefix="web-db")
    )
    engine = make_engine(settings.database_url)
    runner = await start_site(
        build_app(settings, make_session_factory(engine), message_voice=PromptVoice()), settings
    )
    # The same interpreter tuning as the call server's: a page's tail is the event loop waiting
    # for the GIL (a thread reading a changed page) and the collector walking start-up objects.
    tuning = tune_after_startup(settings.runtime)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "staff UI: CPU priority: %s; %d start-up objects frozen out of GC, GC thresholds %s, "
        "switch interval %.2f ms", priority, tuning.frozen_objects, tuning.gc_threshold,
        tuning.switch_interval_s * 1000,
    )  # fmt: skip
    event_loop = type(loop).__module__.partition(".")[0]
    print(
        f"staff UI ready: http://{settings.http.host}:{settings.http.port}/ "
        f"(event loop: {event_loop})",
        flush=True,
    )
    await stop.wait()
    await runner.cleanup()
    engine.dispose()


def serve_web_processes(
    settings: Settings,
    processes: int,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> int:
    """`callserver web` with http.processes > 1: that many `serve_web` processes (forked)
    listening on one port with SO_REUSEPORT, so the UI uses more than one core.

    The schema is migrated and the session key created once here, before forking, so the
    children never race on them. A
    SIGTERM/SIGINT is passed on to every child; a child that dies on its own stops the rest
    and the exit status is 1, so that the service manager restarts the whole unit instead of
    it running on silently with fewer processes. Each child runs its own event loop from
    loop_factory (runtime.event_loop). Returns the exit status."""
    migrate(settings.database_url)
    load_or_create_secret(settings.data_dir)  # one key for all, not N racing to create it
    children: list[int] = []
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:  # the child: its own event loop, engine and connections
            status = 0
            try:
                with asyncio.Runner(loop_factory=loop_factory) as runner:
                    runner.run(serve_web(settings))
            except BaseException:
                log.exception("staff UI process failed")
                status = 1
            finally:
                logging.shutdown()
                os._exit(status)
        children.append(pid)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    while children:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        if pid not in children:
            continue
        children.remove(pid)
        if not stopping:
            log.error(
                "staff UI process %d ended (%s): stopping the other %d",
                pid, os.waitstatus_to_exitcode(wait_status), len(children),
            )  # fmt: skip
            status = 1
            stop(signal.SIGTERM, None)
    return status
