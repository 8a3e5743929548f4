"""Prometheus metrics of the call server: on their own small HTTP listener (metrics.listen).

The call server's figures live where the work is done, as plain counters (the SIP engine's
`responses` and `stats`, InboundCalls' `outcomes`, the Voicemail's recorded seconds, the
MediaClock's lateness history); collectors here only read them at scrape time, so the hot paths
(the 20 ms media tick, datagram handling) never touch Prometheus. Figures held in the database
(the transcription queue, callbacks, the ticket backlog) are the same for every node and are
computed at scrape time by a few aggregate queries, in a thread and bounded in time: a slow
database makes a scrape fail (503), never the event loop wait.

`/metrics` is public to no one: only addresses in metrics.allow may read it (403 otherwise), as
the figures tell an outsider how busy each clinic is.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from config.settings import MetricsSettings
from storage.models import CALLBACK_STATES, Callback, Ticket, TranscriptionJob, utcnow
from storage.transcription_queue import SessionFactory, status

if TYPE_CHECKING:
    from callserver.inbound import InboundCalls
    from callserver.media.clock import MediaClock
    from callserver.sip.engine import SipEngine
    from callserver.spool import SpoolReplayer
    from callserver.voicemail import Voicemail

log = logging.getLogger(__name__)

Networks = Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
SCRAPE_TIMEOUT_S = 10.0
"""The longest a scrape may take (the database queries): Prometheus' default timeout."""
LATENCY_SAMPLE = 5000
"""At most this many transcriptions of the last hour go into the latency quantiles."""
QUANTILES = (0.5, 0.99, 1.0)


def quantiles(values: Sequence[float], qs: Iterable[float] = QUANTILES) -> dict[str, float]:
    """Nearest-rank quantiles of `values` (empty: none), keyed as Prometheus labels them."""
    ordered = sorted(values)
    if not ordered:
        return {}
    return {
        f"{q:g}": ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] for q in qs
    }


class CallServerCollector(Collector):
    """What this process does: calls, SIP traffic, recordings, media pacing."""

    def __init__(
        self, engine: SipEngine, inbound: InboundCalls, voicemail: Voicemail, clock: MediaClock,
        replayer: SpoolReplayer | None = None,
    ) -> None:  # fmt: skip
        self.engine, self.inbound, self.voicemail, self.clock = engine, inbound, voicemail, clock
        self.replayer = replayer

    def collect(self) -> Iterator[Metric]:
        active = GaugeMetricFamily(
            "callserver_active_calls", "Calls in progress in this process", labels=["direction"]
        )
        outbound = sum(
            1 for d in list(self.engine.dialogs.values()) if not d.inbound and d.state != "ended"
        )
        active.add_metric(["inbound"], self.inbound.active)
        active.add_metric(["outbound"], outbound)
        yield active
        calls = CounterMetricFamily(
            "callserver_calls", "Inbound calls ended, by outcome (Call.outcome)", labels=["outcome"]
        )
        for outcome, count in sorted(self.inbound.outcomes.items()):
            calls.add_metric([outcome], count)
        yield calls
        yield CounterMetricFamily(
            "callserver_recordings",
            "Messages recorded by this process",
            value=self.voicemail.recordings,
        )
        yield CounterMetricFamily(
            "callserver_recording_seconds",
            "Seconds of messages recorded by this process",
            value=self.voicemail.recorded_seconds,
        )
        responses = CounterMetricFamily(
            "callserver_sip_responses",
            "SIP responses sent and received, by class (retransmissions included)",
            labels=["direction", "class"],
        )
        for (direction, klass), count in sorted(self.engine.responses.items()):
            responses.add_metric([direction, klass], count)
        yield responses
        dropped = CounterMetricFamily(
            "callserver_sip_dropped",
            "SIP datagrams dropped or refused before they could act on a call",
            labels=["reason"],
        )
        dropped.add_metric(["malformed"], self.engine.stats["malformed"])
        dropped.add_metric(["unparseable"], self.engine.stats["parse_errors"])
        dropped.add_metric(["foreign_peer"], self.engine.stats["foreign_dropped"])
        yield dropped
        yield from self._media_clock()
        if self.replayer is not None:
            yield from self._spool(self.replayer)

    def _spool(self, replayer: SpoolReplayer) -> Iterator[Metric]:
        """The local spool (callserver/spool.py): a depth above 0 means the database refused
        writes; quarantined records need an operator."""
        spool = replayer.spool
        yield GaugeMetricFamily(
            "callserver_spool_depth",
            "Call-log and ticket writes waiting in the local spool for the database",
            value=spool.depth(),
        )
        yield GaugeMetricFamily(
            "callserver_spool_quarantined",
            "Spool records that could not be read, moved to the spool's quarantine directory",
            value=spool.quarantined(),
        )
        yield CounterMetricFamily(
            "callserver_spool_replayed",
            "Spooled writes replayed into the database since start",
            value=replayer.replayed,
        )

    def _media_clock(self) -> Iterator[Metric]:
        stats = self.clock.stats
        for _ in range(3):  # the loop thread may append while we copy
            try:
                recent = list(self.clock.lateness)
                break
            except RuntimeError:
                continue
        else:
            recent = []
        lateness = GaugeMetricFamily(
            "callserver_media_clock_lateness_seconds",
            "How late the 20 ms send ticks woke, over the recent ticks (quantile 1: the worst)",
            labels=["quantile"],
        )
        for q, value in quantiles(recent).items():
            lateness.add_metric([q], value)
        yield lateness
        yield GaugeMetricFamily(
            "callserver_media_clock_max_lateness_seconds",
            "The latest tick since start",
            value=stats.max_lateness,
        )
        yield CounterMetricFamily(
            "callserver_media_clock_ticks", "Send ticks since start", value=stats.ticks
        )
        yield CounterMetricFamily(
            "callserver_media_clock_skipped_frames",
            "Frames skipped because the clock fell behind (audible gaps)",
            value=stats.skipped_frames,
        )
        yield GaugeMetricFamily(
            "callserver_media_sessions", "RTP sessions on the send clock", value=self.clock.sessions
        )


class DatabaseCollector(Collector):
    """What the database says, the same on every node: queue, callbacks, ticket backlog."""

    def __init__(self, db: SessionFactory, now: Callable[[], dt.datetime] = utcnow) -> None:
        self.db, self.now = db, now

    def collect(self) -> Iterator[Metric]:
        try:
            metrics = list(self._collect())
        except Exception as exc:  # any driver's failure: say so, keep the process figures
            log.warning("metrics: database figures unavailable: %s", str(exc).splitlines()[0])
            yield GaugeMetricFamily(
                "callserver_database_up", "Whether the database answered this scrape", value=0
            )
            return
        yield GaugeMetricFamily(
            "callserver_database_up", "Whether the database answered this scrape", value=1
        )
        yield from metrics

    def _collect(self) -> Iterator[Metric]:
        now = self.now()
        queue = status(self.db, now)
        jobs = GaugeMetricFamily(
            "callserver_transcription_jobs",
            "Transcription jobs waiting or running",
            labels=["state"],
        )
        jobs.add_metric(["pending"], queue.pending)
        jobs.add_metric(["running"], queue.running)
        jobs.add_metric(["model_missing"], queue.model_missing)
        yield jobs
        yield GaugeMetricFamily(
            "callserver_transcription_oldest_pending_seconds",
            "Age of the oldest job waiting for a worker (0: none waiting)",
            value=queue.oldest_pending_age_s or 0.0,
        )
        yield GaugeMetricFamily(
            "callserver_transcription_workers_alive",
            "Transcription worker threads seen alive, on every node",
            value=queue.worker_threads,
        )
        with self.db() as session:
            finished = session.execute(
                select(TranscriptionJob.queued_at, TranscriptionJob.finished_at)
                .where(
                    TranscriptionJob.state == "done",
                    TranscriptionJob.finished_at >= now - dt.timedelta(hours=1),
                )
                .order_by(TranscriptionJob.finished_at.desc())
                .limit(LATENCY_SAMPLE)
            ).all()
            callbacks = dict(
                session.execute(select(Callback.state, func.count()).group_by(Callback.state)).all()
            )
            open_tickets = session.execute(
                select(Ticket.clinic_id, func.count())
                .where(Ticket.status == "new")
                .group_by(Ticket.clinic_id)
            ).all()
            overdue = dict(
                session.execute(
                    select(Ticket.clinic_id, func.count())
                    .where(Ticket.status == "new", Ticket.due_at < now)
                    .group_by(Ticket.clinic_id)
                ).all()
            )
        latency = GaugeMetricFamily(
            "callserver_transcription_latency_seconds",
            "From hang-up to transcript, over the last hour's transcriptions (quantile 1: slowest)",
            labels=["quantile"],
        )
        seconds = [(done - queued).total_seconds() for queued, done in finished if done]
        for q, value in quantiles(seconds).items():
            latency.add_metric([q], value)
        yield latency
        yield GaugeMetricFamily(
            "callserver_transcriptions_last_hour",
            "Transcriptions finished in the last hour",
            value=len(seconds),
        )
        by_state = GaugeMetricFamily("callserver_callbacks", "Callbacks by state", labels=["state"])
        for state in CALLBACK_STATES:
            by_state.add_metric([state], callbacks.get(state, 0))
        yield by_state
        backlog = GaugeMetricFamily(
            "callserver_tickets_open", "Tickets waiting for a decision", labels=["clinic"]
        )
        late = GaugeMetricFamily(
            "callserver_tickets_overdue",
            "Tickets waiting for a decision past their answer deadline (due_at)",
            labels=["clinic"],
        )
        for clinic, count in sorted(open_tickets):
            backlog.add_metric([clinic], count)
            late.add_metric([clinic], overdue.get(clinic, 0))
        yield backlog
        yield late


def new_registry(*collectors: Collector) -> CollectorRegistry:
    """A registry of its own (not prometheus_client's global one) with the process figures."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    for collector in collectors:
        registry.register(collector)
    return registry


def allowed(remote: str | None, networks: Networks) -> bool:
    """Whether the client at `remote` may read the metrics."""
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class Exposition:
    """The `/metrics` handler: the allowlist, then one scrape at a time in a thread."""

    def __init__(
        self, registry: CollectorRegistry, allow: Networks, timeout_s: float = SCRAPE_TIMEOUT_S
    ) -> None:
        self.registry, self.allow, self.timeout_s = registry, tuple(allow), timeout_s
        self._running: asyncio.Future[bytes] | None = None

    async def handle(self, request: web.Request) -> web.Response:
        if not allowed(request.remote, self.allow):
            raise web.HTTPForbidden(text="metrics are not served to this address (metrics.allow)")
        if self._running is not None and not self._running.done():
            # A scrape still held up by the database: do not pile threads on it.
            raise web.HTTPServiceUnavailable(text="the previous scrape has not finished")
        self._running = asyncio.ensure_future(asyncio.to_thread(generate_latest, self.registry))
        try:
            body = await asyncio.wait_for(asyncio.shield(self._running), self.timeout_s)
        except TimeoutError:
            raise web.HTTPServiceUnavailable(
                text=f"the metrics took longer than {self.timeout_s:.0f} s (database slow?)"
            ) from None
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class MetricsListener:
    """`GET /metrics` on metrics.listen, apart from the staff UI (which may run elsewhere)."""

    def __init__(self, settings: MetricsSettings, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.exposition = Exposition(registry, settings.allowed_networks)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        address = self.settings.address
        if address is None:
            return
        app = web.Application()
        app.router.add_get("/metrics", self.exposition.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, *address).start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise OSError(
                f"cannot listen for metrics on {self.settings.listen} ({exc}): choose a free "
                "metrics.listen (CALLSERVER_METRICS_LISTEN) or set it empty"
            ) from exc
        log.info("metrics on http://%s/metrics for %s", self.settings.listen, self.settings.allow)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
