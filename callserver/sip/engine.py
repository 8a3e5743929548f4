"""SIP signalling through pyVoIP 1.6.8: the one module that imports pyVoIP.

pyVoIP gives us its UDP socket and receive thread, its SIP message parser and its 200 OK/SDP
generator. It does not give us transactions, CANCEL, OPTIONS, a safe outbound call, a REGISTER
that shares the socket safely, input validation or usable media, and its parser drops real-world
messages. Every workaround lives here, each marked `DEFECT n` with the number used in
../shared/notes/pyvoip.md, so that the rest of the server (and the flows) never see SIP; each
has a real-peer test in tests/test_sip_*.py.

Threading: pyVoIP's receive thread hands each parsed message to the asyncio loop with
`call_soon_threadsafe`; every dialog decision is then made on the loop, so there is no locking
between calls. Media is not pyVoIP's: the SDP answer names the port of our own RTP session.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import re
import socket
import string
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pyVoIP
import pyVoIP.VoIP  # noqa: F401 - must come first: importing pyVoIP.SIP alone is circular

# DEFECT 12: pyVoIP.RTP imports `audioop`, removed in Python 3.13. Our media never uses it
# (callserver/media/g711.py has its own tables); pyproject pulls in `audioop-lts` on 3.13+ so
# that this import keeps working.
from pyVoIP import SIP
from pyVoIP.RTP import PayloadType, TransmitType

from callserver.sip.sanity import Malformed, check_request, headers_of, ipv4_ok

log = logging.getLogger(__name__)

# DEFECT 7: pyVoIP only knows INVITE/ACK/BYE/CANCEL; anything else raises a parse error and is
# never answered, so OPTIONS health probes (Kamailio dispatcher) mark the node down.
KNOWN_METHODS = [
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE", "PRACK",
    "REGISTER", "SUBSCRIBE", "NOTIFY", "MESSAGE", "REFER", "PUBLISH",
]  # fmt: skip
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"
USER_AGENT = f"callserver (pyVoIP {pyVoIP.__version__})"

T1 = 0.5  # RFC 3261 timer T1
T2 = 4.0
TIMER_H = 64 * T1  # give up on a 200 OK that is never ACKed
REGISTER_EXPIRES = 300  # asked for; refreshed at 80 % of what the registrar grants
REGISTER_RETRY_S = 30.0

AUDIO_CODECS = {"PCMU": 0, "PCMA": 8}


class SipError(RuntimeError):
    """A signalling failure the caller of the engine should handle (e.g. a dial that failed)."""


class _Message(SIP.SIPMessage):
    """pyVoIP's parser with the crashes that drop real peers' INVITEs removed."""

    def parse(self, data: bytes) -> None:
        # DEFECT 7: accept every standard method so OPTIONS/INFO can be answered.
        self.SIPCompatibleMethods = KNOWN_METHODS
        super().parse(data)

    @staticmethod
    def parse_raw_header(headers_raw: list[bytes], handle: Callable[[str, str], None]) -> None:
        # DEFECT 2: pyVoIP splits on ": " and indexes [1], so an empty header such as baresip's
        # `Supported:` raises IndexError and the INVITE is silently dropped. Split on the first
        # colon and strip instead; keep pyVoIP's rule of the first occurrence (all Vias).
        headers: dict[str, Any] = {"Via": []}
        for line in headers_raw:
            name, sep, value = line.decode("utf-8").partition(":")
            if not sep:
                raise SIP.SIPParseError(f"header line without a colon: {line[:40]!r}")
            name, value = name.strip(), value.strip()
            if name.lower() in {"v", "via"}:
                headers["Via"].extend(v.strip() for v in value.split(",") if v.strip())
            elif name not in headers:
                headers[_COMPACT.get(name, name)] = value
        for key, val in headers.items():
            handle(key, val)

    def parse_body(self, header: str, data: str) -> None:
        # DEFECT 2: an `a=rtpmap`/`a=fmtp` for a payload type that is not on the m= line makes
        # pyVoIP hit an unbound variable and drop the INVITE. Ignore such attributes.
        if header == "a" and (data.startswith("rtpmap:") or data.startswith("fmtp:")):
            pt = data.split(":", 1)[1].split(" ", 1)[0]
            if not any(pt in m["methods"] for m in self.body.get("m", [])):
                return
        super().parse_body(header, data)


_COMPACT = {
    "f": "From", "t": "To", "i": "Call-ID", "m": "Contact", "l": "Content-Length",
    "c": "Content-Type", "Call-Id": "Call-ID", "Cseq": "CSeq",
}  # fmt: skip


def parse_message(data: bytes) -> SIP.SIPMessage:
    """Parse one datagram; raises ValueError (any parse failure) for the caller to count."""
    try:
        msg = _Message(data)
    except Exception as exc:  # pyVoIP raises many types on malformed input (DEFECT 13)
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc
    for required in ("From", "To", "Call-ID", "CSeq"):
        if required not in msg.headers:
            raise ValueError(f"missing {required} header")
    if not msg.headers["Via"]:
        raise ValueError("missing Via header")
    cseq = msg.headers["CSeq"]
    if not isinstance(cseq, dict) or not cseq["check"].isdigit():
        raise ValueError("malformed CSeq")
    return msg


def record_routes(msg: SIP.SIPMessage) -> list[str]:
    """Every Record-Route entry in order; pyVoIP's parser keeps only the first header line."""
    head = msg.raw.partition(b"\r\n\r\n")[0].decode("utf-8", "replace")
    headers = headers_of(head)
    return [] if isinstance(headers, Malformed) else headers.get("Record-Route", [])


def contact_uri(value: str) -> str:
    """The URI in a Contact value (`"Bob" <sip:bob@host;transport=udp>;expires=60`)."""
    inner = re.search(r"<([^<>]+)>", value)
    return inner.group(1).strip() if inner else value.split(";")[0].strip()


@dataclass(frozen=True)
class MediaOffer:
    """What the peer's SDP offers: where to send RTP and which payload types it understands."""

    address: str
    port: int
    codecs: dict[int, str]  # payload type -> encoding name, in the peer's order of preference
    dtmf_payload_type: int | None

    def choose_codec(self) -> tuple[str, int] | None:
        """Return the peer's most preferred codec we support (G.711 only)."""
        for pt, name in self.codecs.items():
            if name.upper() in AUDIO_CODECS:
                return name.upper(), pt
        return None


def media_offer_from(msg: SIP.SIPMessage) -> MediaOffer | None:
    """Extract the audio offer from a parsed SDP body, or None if there is no usable one."""
    body = msg.body
    audio = [m for m in body.get("m", []) if m.get("type") == "audio" and m.get("port")]
    if not audio or not body.get("c"):
        return None
    m = audio[0]
    connection = body["c"][0]
    if connection.get("address_type") != "IP4" or not ipv4_ok(connection["address"]):
        return None  # media is IPv4 only
    codecs: dict[int, str] = {}
    dtmf_pt = None
    for pt_text in m["methods"]:
        if not pt_text.isdigit():
            continue
        pt = int(pt_text)
        rtpmap = m["attributes"].get(pt_text, {}).get("rtpmap")
        name = rtpmap["name"] if rtpmap else {0: "PCMU", 8: "PCMA"}.get(pt, "")
        if rtpmap and rtpmap["frequency"] != "8000":
            continue  # e.g. "PCMU/16000" is not the G.711 we speak
        if name.lower() == "telephone-event":
            dtmf_pt = pt
        else:
            codecs[pt] = name
    return MediaOffer(connection["address"], int(m["port"]), codecs, dtmf_pt)


@dataclass(eq=False)
class Dialog:
    """One SIP dialog (an inbound or outbound call) as the rest of the server sees it."""

    call_id: str
    caller: str | None
    called: str
    offer: MediaOffer | None
    inbound: bool = True
    state: str = "early"  # early -> answered -> confirmed -> ended
    end_reason: str | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)
    invite: SIP.SIPMessage | None = None
    local_tag: str = ""
    remote_target: str = ""  # Contact of the peer: request-URI of in-dialog requests
    route_set: list[str] = field(default_factory=list)  # Route headers for in-dialog requests
    record_route: list[str] = field(default_factory=list)  # echoed in our 18x/2xx (inbound)
    request_uri: str = ""  # of our INVITE (outbound): CANCEL and non-2xx ACK reuse it
    remote_from: str = ""  # peer's URI with tag, as it goes into our To header
    local_from: str = ""  # our URI with tag
    local_cseq: int = 0
    last_response: bytes = b""
    answer_sdp_port: int | None = None
    answer_codec_pt: int | None = None
    answer_sess_id: str = ""
    _retransmit: asyncio.Task | None = None

    def _finish(self, reason: str) -> None:
        if self.state != "ended":
            self.state = "ended"
            self.end_reason = reason
            self.ended.set()
            if self._retransmit:
                self._retransmit.cancel()


InviteHandler = Callable[[Dialog], Awaitable[None]]


def _rand(n: int = 10) -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=n))


def _branch() -> str:
    return "z9hG4bK" + _rand(16)


def _user_of(uri_header: str) -> str | None:
    match = re.search(r"sips?:([^@;>]+)@", uri_header)
    return match.group(1) if match else None


class _Client(SIP.SIPClient):
    """pyVoIP's SIPClient with its receive step and registration adapted to our engine."""

    def __init__(self, engine: SipEngine, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine

    def recv(self) -> None:
        # pyVoIP reads with recv() and so loses the sender's address; we need it to refuse
        # requests from anyone but the trusted peer (DEFECT 11). BlockingIOError must propagate
        # so that recv_loop releases its lock (registration shares the socket).
        raw, addr = self.s.recvfrom(65535)
        if raw.strip(b"\r\n\x00") == b"":
            return  # keep-alive
        self.engine._from_thread(raw, addr)

    def register(self) -> bool:
        # DEFECT 1: pyVoIP always REGISTERs and gives up after 30 s without a registrar. In
        # registered mode its REGISTER is no better: it reads "the next datagram" as the answer
        # under the receive lock, so a refresh can swallow an INVITE, and after 3 such failures
        # it stops the client for good. The engine registers on the event loop instead.
        return True

    def start(self) -> None:
        # pyVoIP's start() begins receiving in a Timer thread one second later, so a server that
        # says "ready" would leave the first INVITE (and its retransmission) waiting for a
        # second and then answer both. Same steps, but the receive thread starts at once and
        # is kept so stop() can wait for it before the socket is closed under it.
        if self.NSD:
            raise RuntimeError("SIP client already started")
        self.NSD = True
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind((self.myIP, self.myPort))
        self.out = self.s
        self.register()
        self._receiver = threading.Thread(target=self.recv_loop, name="SIP receive", daemon=True)
        self._receiver.start()

    def stop(self) -> None:
        if not self.NSD:
            return
        self.NSD = False
        receiver = getattr(self, "_receiver", None)
        if receiver is not None and receiver is not threading.current_thread():
            receiver.join(timeout=2)
        self._close_sockets()


class _PhoneState:
    """The few attributes pyVoIP's registration touches on its VoIPPhone."""

    _status: Any = None


class SipEngine:
    """SIP user agent for the call server: answers inbound calls from the peer, places calls.

    `on_invite` is awaited as a task for every new inbound call, with a Dialog in state
    "early" (180 Ringing already sent); it decides to `answer` or `reject`.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        peer: tuple[str, int],
        on_invite: InviteHandler,
        mode: str = "trusted_peer",
        username: str = "callserver",
        password: str = "",
    ) -> None:
        self.host, self.port, self.peer, self.mode = host, port, peer, mode
        self.username = username
        self.on_invite = on_invite
        self.dialogs: dict[str, Dialog] = {}
        self.stats = {"parse_errors": 0, "malformed": 0, "foreign_dropped": 0, "options": 0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task] = set()
        self._pending: dict[str, asyncio.Queue[SIP.SIPMessage]] = {}
        self._cseq = random.randint(1, 10000)
        self.registered = 0  # seconds granted by the registrar (registered mode)
        self._registrar: asyncio.Task | None = None
        self._register_call_id = f"{_rand(20)}@{host}"
        self._register_tag = _rand(12)
        self._client = _Client(
            self,
            server=peer[0],
            port=peer[1],
            username=username,
            password=password,
            phone=_PhoneState(),
            myIP=host,
            myPort=port,
            callCallback=None,
            fatalCallback=self._registration_failed,
        )

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            await asyncio.to_thread(self._client.start)
        except OSError as exc:
            raise SipError(
                f"cannot bind SIP socket on {self.host}:{self.port} ({exc}): "
                "choose a free sip.port / CALLSERVER_SIP_PORT"
            ) from exc
        log.info(
            "SIP listening on %s:%d (%s, peer %s:%d)", self.host, self.port, self.mode, *self.peer
        )
        if self.mode == "registered":
            # The first REGISTER is awaited so "ready" means reachable; failures are retried.
            self.registered = await self._register(REGISTER_EXPIRES, give_up_after=10.0)
            self._registrar = self._spawn(self._keep_registered())

    async def stop(self) -> None:
        for dialog in list(self.dialogs.values()):
            if dialog.state in {"answered", "confirmed"}:
                self.hangup(dialog)
            elif dialog.state == "early" and dialog.inbound and dialog.invite:
                self._respond(dialog.invite, 503, "Service Unavailable", dialog.local_tag)
        if self._registrar is not None:
            self._registrar.cancel()
            if self.registered:
                with contextlib.suppress(Exception):
                    await self._register(0, give_up_after=2.0)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            # Let the calls' clean-up run (finish the recording, write its ticket) before the
            # process exits; bounded so a stuck task cannot block a shutdown.
            await asyncio.wait(tasks, timeout=10)
        await asyncio.to_thread(self._client.stop)

    def _registration_failed(self) -> None:
        """pyVoIP's fatal callback; unused since the engine registers itself (DEFECT 1)."""

    # ----------------------------------------------------------------- registration
    async def _keep_registered(self) -> None:
        while True:
            granted = self.registered
            await asyncio.sleep(max(granted * 0.8, 5.0) if granted else REGISTER_RETRY_S)
            self.registered = await self._register(REGISTER_EXPIRES)

    async def _register(self, expires: int, *, give_up_after: float = 32.0) -> int:
        """One REGISTER (with a digest answer to 401/407); returns the granted seconds, 0 on
        failure (logged with what the operator should check)."""
        uri = f"sip:{self.peer[0]}:{self.peer[1]}"
        aor = f"<sip:{self.username}@{self.peer[0]}>"
        auth = ""
        deadline = asyncio.get_running_loop().time() + give_up_after
        for _attempt in range(2):
            cseq = self._next_cseq()
            text = (
                f"REGISTER {uri} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={_branch()};rport\r\n"
                f"Max-Forwards: 70\r\nFrom: {aor};tag={self._register_tag}\r\nTo: {aor}\r\n"
                f"Call-ID: {self._register_call_id}\r\nCSeq: {cseq} REGISTER\r\n"
                f"Contact: <sip:{self.username}@{self.host}:{self.port}>\r\n"
                f"Expires: {expires}\r\nAllow: {ALLOW}\r\nUser-Agent: {USER_AGENT}\r\n"
                f"{auth}Content-Length: 0\r\n\r\n"
            )
            final = await self._transaction(text, f"{self._register_call_id} {cseq}", deadline)
            if final is None:
                log.error(
                    "REGISTER to %s:%d: no answer: check sip.peer and that the registrar runs; "
                    "no calls will arrive until it succeeds (retrying)", *self.peer,
                )  # fmt: skip
                return 0
            code = int(final.status)
            if code in (401, 407) and not auth:
                auth = self._auth_header(final, uri, code, "REGISTER")
                continue
            if 200 <= code < 300:
                granted = _granted_expires(final, f"{self.host}:{self.port}", expires)
                if expires:
                    log.info("registered as %s at %s:%d for %d s", self.username, *self.peer,
                             granted)  # fmt: skip
                return granted
            break
        log.error(
            "REGISTER to %s:%d refused (%d %s): check sip.username and sip.password; no calls "
            "will arrive until it succeeds (retrying)", *self.peer, code, final.status.phrase,
        )  # fmt: skip
        return 0

    async def _transaction(self, text: str, key: str, deadline: float) -> SIP.SIPMessage | None:
        """A non-INVITE client transaction: resend (Timer E) until a final response or
        `deadline`; the response arrives through the one receive path."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[SIP.SIPMessage] = asyncio.Queue()
        self._pending[key] = queue
        interval = T1
        try:
            self._send(text.encode())
            while loop.time() < deadline:
                try:
                    msg = await asyncio.wait_for(
                        queue.get(), timeout=max(min(interval, deadline - loop.time()), 0.01)
                    )
                except TimeoutError:
                    self._send(text.encode())
                    interval = min(interval * 2, T2)
                    continue
                if int(msg.status) >= 200:
                    return msg
                interval = T2  # provisional: keep resending, but slowly
            return None
        finally:
            self._pending.pop(key, None)

    # ----------------------------------------------------------------- receive path
    def _from_thread(self, raw: bytes, addr: tuple[str, int]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._receive, raw, addr)

    def _receive(self, raw: bytes, addr: tuple[str, int]) -> None:
        if addr[0] != self.peer[0] or addr[1] != self.peer[1]:
            # DEFECT 11: pyVoIP takes INVITEs from anyone and answers to the peer anyway.
            self.stats["foreign_dropped"] += 1
            log.warning("dropped SIP datagram from %s:%d (not the trusted peer)", *addr)
            return
        # DEFECT 13: malformed input must never ring, answer, record or crash anything.
        malformed = None if raw.startswith(b"SIP/2.0 ") else check_request(raw)
        if malformed is not None and malformed.code == 0:
            self.stats["malformed"] += 1
            log.info("dropped malformed SIP request from %s:%d: %s", *addr, malformed.reason)
            return
        try:
            msg = parse_message(raw)
        except ValueError as exc:
            self.stats["parse_errors"] += 1
            log.info("ignored malformed SIP message from %s:%d: %s", *addr, exc)
            return
        if malformed is not None:
            self.stats["malformed"] += 1
            log.info("refused malformed SIP request from %s:%d: %d %s", *addr, malformed.code,
                     malformed.reason)  # fmt: skip
            if msg.method != "ACK":
                self._respond(msg, malformed.code, malformed.reason)
            return
        try:
            if msg.type == SIP.SIPMessageType.RESPONSE:
                self._on_response(msg)
            else:
                self._on_request(msg)
        except Exception:
            self.stats["parse_errors"] += 1
            log.exception("error handling SIP %s", msg.heading[:60])

    def _on_request(self, msg: SIP.SIPMessage) -> None:
        method = msg.method
        call_id = msg.headers["Call-ID"]
        dialog = self.dialogs.get(call_id)
        if method == "INVITE":
            self._on_invite(msg, dialog)
        elif method == "ACK":
            if dialog and dialog.state == "answered":
                dialog.state = "confirmed"
                dialog.confirmed.set()
                if dialog._retransmit:
                    dialog._retransmit.cancel()
        elif method == "CANCEL":
            self._on_cancel(msg, dialog)
        elif method == "BYE":
            if dialog is None:
                self._respond(msg, 481, "Call/Transaction Does Not Exist")
                return
            self._respond(msg, 200, "OK")
            dialog._finish("remote_bye")
        elif method in {"OPTIONS", "INFO"}:
            # DEFECT 7: health probes and INFO get a 200 instead of silence.
            self.stats["options"] += method == "OPTIONS"
            extra = {"Accept": "application/sdp"} if method == "OPTIONS" else {}
            self._respond(msg, 200, "OK", extra=extra)
        else:
            self._respond(msg, 501, "Not Implemented")

    def _on_invite(self, msg: SIP.SIPMessage, dialog: Dialog | None) -> None:
        if dialog is not None:
            if not msg.headers["To"]["tag"]:
                # A retransmitted INVITE: repeat our last response, do not start a second call.
                if dialog.last_response:
                    self._send(dialog.last_response)
                return
            # DEFECT 8: pyVoIP answers a re-INVITE by restarting RTP. We keep the media as it
            # is and repeat our SDP (hold/codec changes are not supported).
            if dialog.state in {"answered", "confirmed"} and dialog.answer_sdp_port:
                self._send(self._answer_text(dialog, msg))
            else:
                self._respond(msg, 491, "Request Pending", dialog.local_tag)
            return
        if "Contact" not in msg.headers:
            self._respond(msg, 400, "Bad Request (no Contact)")
            return
        if msg.headers.get("Content-Type", "application/sdp") != "application/sdp":
            self._respond(msg, 415, "Unsupported Media Type")
            return
        offer = media_offer_from(msg)
        if offer is None or offer.choose_codec() is None:
            self._respond(msg, 488, "Not Acceptable Here (PCMU or PCMA audio required)")
            return
        called = _user_of(msg.heading.decode("utf-8", "replace")) or msg.headers["To"]["number"]
        dialog = Dialog(
            call_id=msg.headers["Call-ID"],
            caller=msg.headers["From"]["number"],
            called=called or "",
            offer=offer,
            invite=msg,
            local_tag=_rand(12),
            remote_target=contact_uri(msg.headers["Contact"]),
        )
        # A proxy in front (Kamailio with record_route) stays in the path of in-dialog requests
        # only if our responses carry its Record-Route and our BYE its Route (RFC 3261 12.1.1).
        dialog.record_route = record_routes(msg)
        dialog.route_set = list(dialog.record_route)
        self.dialogs[dialog.call_id] = dialog
        self._respond(msg, 100, "Trying")
        dialog.last_response = self._respond(
            msg, 180, "Ringing", dialog.local_tag, record_route=dialog.record_route
        )
        self._spawn(self._run_inbound(dialog))

    async def _run_inbound(self, dialog: Dialog) -> None:
        try:
            await self.on_invite(dialog)
        except Exception:
            log.exception("call %s: handler failed", dialog.call_id)
            if dialog.state == "early" and dialog.invite:
                self._respond(dialog.invite, 500, "Server Internal Error", dialog.local_tag)
                dialog._finish("error")
            elif dialog.state != "ended":
                self.hangup(dialog)
        finally:
            if dialog.state == "early" and dialog.invite:
                self._respond(dialog.invite, 480, "Temporarily Unavailable", dialog.local_tag)
                dialog._finish("not_answered")
            self._forget_later(dialog)

    def _on_cancel(self, msg: SIP.SIPMessage, dialog: Dialog | None) -> None:
        if dialog is None or dialog.invite is None:
            self._respond(msg, 481, "Call/Transaction Does Not Exist")
            return
        # DEFECT 6: pyVoIP answers CANCEL with 200 and then answers the call anyway. RFC 3261
        # 9.2: 200 to the CANCEL, 487 to the INVITE, and the call never starts.
        self._respond(msg, 200, "OK", dialog.local_tag)
        if dialog.state == "early":
            dialog.last_response = self._respond(
                dialog.invite, 487, "Request Terminated", dialog.local_tag
            )
            dialog._finish("cancelled")

    def _on_response(self, msg: SIP.SIPMessage) -> None:
        key = f"{msg.headers['Call-ID']} {msg.headers['CSeq']['check']}"
        queue = self._pending.get(key)
        if queue is not None:
            queue.put_nowait(msg)
        elif msg.headers["CSeq"]["method"] == "INVITE":
            dialog = self.dialogs.get(msg.headers["Call-ID"])
            code = int(msg.status)
            if dialog is None or dialog.inbound or code < 200:
                return
            if code >= 300:
                # The 487 after our CANCEL (or a retransmitted final response): ACK it, or the
                # callee resends it for 32 s.
                self._send(self._ack_non2xx(dialog, msg).encode())
            elif dialog.confirmed.is_set():
                # A retransmitted 200 for an INVITE we already ACKed: ACK it again.
                self._send(self._ack_for(dialog, msg).encode())
            else:
                # A 200 that crossed our CANCEL: the callee is connected; ACK and hang up.
                dialog.remote_target = contact_uri(msg.headers.get("Contact", dialog.request_uri))
                dialog.remote_from = f"{msg.headers['To']['raw']};tag={msg.headers['To']['tag']}"
                dialog.route_set = list(reversed(record_routes(msg)))
                self._send(self._ack_for(dialog, msg).encode())
                self._send_in_dialog(dialog, "BYE")

    # ----------------------------------------------------------------- inbound API
    def answer(self, dialog: Dialog, rtp_port: int, codec_pt: int) -> bool:
        """Send 200 OK with our SDP; retransmit until ACK. False if the call is already gone."""
        if dialog.state != "early" or dialog.invite is None or dialog.offer is None:
            return False
        dialog.answer_sdp_port = rtp_port
        dialog.answer_codec_pt = codec_pt
        dialog.state = "answered"
        dialog.last_response = self._answer_text(dialog, dialog.invite)
        self._send(dialog.last_response)
        dialog._retransmit = self._spawn(self._retransmit_ok(dialog))
        return True

    async def _retransmit_ok(self, dialog: Dialog) -> None:
        # pyVoIP sends 200 OK once; a lost 200 or ACK would leave the caller hanging.
        interval, waited = T1, 0.0
        while waited < TIMER_H:
            await asyncio.sleep(interval)
            waited += interval
            if dialog.state != "answered":
                return
            self._send(dialog.last_response)
            interval = min(interval * 2, T2)
        log.warning("call %s: no ACK for 200 OK after %.0f s, hanging up", dialog.call_id, waited)
        self.hangup(dialog, reason="no_ack")

    def reject(self, dialog: Dialog, code: int = 486, reason: str = "Busy Here") -> None:
        if dialog.state == "early" and dialog.invite is not None:
            dialog.last_response = self._respond(dialog.invite, code, reason, dialog.local_tag)
            dialog._finish(f"rejected_{code}")

    def hangup(self, dialog: Dialog, reason: str = "local_bye") -> None:
        """End the call from our side (BYE in a dialog, CANCEL/487 before answer)."""
        if dialog.state == "ended":
            return
        if dialog.state == "early":
            if dialog.inbound and dialog.invite is not None:
                self._respond(dialog.invite, 480, "Temporarily Unavailable", dialog.local_tag)
            dialog._finish(reason)
            return
        self._send_in_dialog(dialog, "BYE")
        dialog._finish(reason)

    # ----------------------------------------------------------------- message building
    def _answer_text(self, dialog: Dialog, request: SIP.SIPMessage) -> bytes:
        """200 OK with our SDP, from pyVoIP's gen_answer (it reads our tag from tagLibrary)."""
        assert dialog.offer is not None and dialog.answer_codec_pt is not None
        codec = PayloadType.PCMU if dialog.answer_codec_pt == 0 else PayloadType.PCMA
        media: dict[int, PayloadType] = {dialog.answer_codec_pt: codec}
        if dialog.offer.dtmf_payload_type is not None:
            # Echo the peer's telephone-event number (sipp uses 96, most phones 101).
            media[dialog.offer.dtmf_payload_type] = PayloadType.EVENT
        self._client.tagLibrary[dialog.call_id] = dialog.local_tag
        if not dialog.answer_sess_id:
            dialog.answer_sess_id = str(random.randint(1, 2**30))
        # DEFECT 8: the same session id (so the same o= line) in the answer to a re-INVITE: it
        # tells the peer nothing changed (RFC 3264 8).
        text = self._client.gen_answer(
            request, dialog.answer_sess_id, {dialog.answer_sdp_port: media}, TransmitType.SENDRECV
        )
        # gen_answer advertises pyVoIP's own Allow list (no OPTIONS/INFO) and User-Agent.
        text = re.sub(r"\r\nAllow: [^\r]*", f"\r\nAllow: {ALLOW}", text, count=1)
        text = re.sub(r"\r\nUser-Agent: [^\r]*", f"\r\nUser-Agent: {USER_AGENT}", text, count=1)
        if dialog.record_route:
            routes = "".join(f"Record-Route: {route}\r\n" for route in dialog.record_route)
            text = text.replace("\r\nFrom: ", f"\r\n{routes}From: ", 1)
        return text.encode()

    def _respond(
        self,
        request: SIP.SIPMessage,
        code: int,
        reason: str,
        to_tag: str | None = None,
        *,
        extra: dict[str, str] | None = None,
        record_route: list[str] | None = None,
    ) -> bytes:
        """Build and send a response. pyVoIP's gen_ok invents a new To-tag on every call and
        has no 100/487/481/501, so responses are built here from pyVoIP's parsed headers."""
        h = request.headers
        to = h["To"]["raw"]
        # RFC 3261 8.2.6.2: every response but 100 carries a To-tag.
        tag = h["To"]["tag"] or to_tag or (_rand(12) if code > 100 else None)
        lines = [f"SIP/2.0 {code} {reason}"]
        lines += self._client._gen_response_via_header(request).rstrip("\r\n").split("\r\n")
        lines += [f"Record-Route: {route}" for route in record_route or []]
        lines.append(f"From: {h['From']['raw']};tag={h['From']['tag']}")
        lines.append(f"To: {to};tag={tag}" if tag and code != 100 else f"To: {to}")
        lines.append(f"Call-ID: {h['Call-ID']}")
        lines.append(f"CSeq: {h['CSeq']['check']} {h['CSeq']['method']}")
        if 200 <= code < 300 or code == 180:
            lines.append(f"Contact: <sip:{self.username}@{self.host}:{self.port}>")
        lines.append(f"User-Agent: {USER_AGENT}")
        lines.append(f"Allow: {ALLOW}")
        for key, value in (extra or {}).items():
            lines.append(f"{key}: {value}")
        lines.append("Content-Length: 0")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self._send(data)
        return data

    def _send(self, data: bytes) -> None:
        # Every message goes to the one peer, as pyVoIP does (and as our trust model requires).
        try:
            self._client.out.sendto(data, self.peer)
        except OSError as exc:
            log.warning("SIP send to %s:%d failed: %s", *self.peer, exc)

    def _next_cseq(self) -> int:
        self._cseq += 1
        return self._cseq

    def _send_in_dialog(self, dialog: Dialog, method: str) -> None:
        if dialog.inbound:
            assert dialog.invite is not None
            h = dialog.invite.headers
            to = f"{h['From']['raw']};tag={h['From']['tag']}"
            frm = f"{h['To']['raw']};tag={dialog.local_tag}"
        else:
            to, frm = dialog.remote_from, dialog.local_from
        # pyVoIP's gen_bye copies the INVITE's Via (the peer's branch) into our request and
        # sends it to the server: build a proper in-dialog request with our own Via.
        data = (
            f"{method} {dialog.remote_target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={_branch()};rport\r\n"
            f"{_route_lines(dialog)}"
            f"Max-Forwards: 70\r\nFrom: {frm}\r\nTo: {to}\r\nCall-ID: {dialog.call_id}\r\n"
            f"CSeq: {self._next_cseq()} {method}\r\n"
            f"Contact: <sip:{self.username}@{self.host}:{self.port}>\r\n"
            f"User-Agent: {USER_AGENT}\r\nContent-Length: 0\r\n\r\n"
        )
        self._send(data.encode())

    def _ack_for(self, dialog: Dialog, response: SIP.SIPMessage) -> str:
        """ACK for a 2xx: a new transaction in the dialog.

        DEFECT 4: pyVoIP's gen_ack invents a new To-tag, so the callee never matches the ACK,
        resends 200 OK and hangs up after 32 s. Reuse the response's To-tag, send the ACK to
        the Contact with the route set and a new branch (RFC 3261 13.2.2.4)."""
        h = response.headers
        return (
            f"ACK {dialog.remote_target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={_branch()};rport\r\n"
            f"{_route_lines(dialog)}"
            f"Max-Forwards: 70\r\nFrom: {dialog.local_from}\r\n"
            f"To: {h['To']['raw']};tag={h['To']['tag']}\r\nCall-ID: {dialog.call_id}\r\n"
            f"CSeq: {h['CSeq']['check']} ACK\r\nUser-Agent: {USER_AGENT}\r\n"
            "Content-Length: 0\r\n\r\n"
        )

    def _ack_non2xx(self, dialog: Dialog, response: SIP.SIPMessage) -> str:
        """ACK for a 3xx-6xx: part of the INVITE transaction, so the INVITE's Request-URI and
        branch (RFC 3261 17.1.1.3); a stateful proxy matches it by that branch."""
        h = response.headers
        branch = h["Via"][0].get("branch", _branch()) if h["Via"] else _branch()
        tag = f";tag={h['To']['tag']}" if h["To"]["tag"] else ""
        return (
            f"ACK {dialog.request_uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: {dialog.local_from}\r\n"
            f"To: {h['To']['raw']}{tag}\r\nCall-ID: {dialog.call_id}\r\n"
            f"CSeq: {h['CSeq']['check']} ACK\r\nUser-Agent: {USER_AGENT}\r\n"
            "Content-Length: 0\r\n\r\n"
        )

    # ----------------------------------------------------------------- outbound calls
    async def dial(
        self,
        number: str,
        rtp_port: int,
        *,
        caller_id: str | None = None,
        timeout: float = 45.0,
    ) -> Dialog:
        """Place a call through the peer; return the confirmed Dialog or raise SipError.

        DEFECT 5: pyVoIP's call() holds the receive lock until 100/180/401 and blocks forever
        on 407, 486, 503 or an immediate 200. Here the INVITE is a transaction on the loop:
        every final response is handled, 401/407 are answered once with digest credentials,
        and after `timeout` seconds the INVITE is CANCELled and SipError raised.
        """
        call_id = f"{_rand(20)}@{self.host}"
        local_tag = _rand(12)
        user = caller_id or self.username
        uri = f"sip:{number}@{self.peer[0]}:{self.peer[1]}"
        dialog = Dialog(
            call_id=call_id, caller=user, called=number, offer=None, inbound=False,
            local_tag=local_tag, remote_target=uri, request_uri=uri,
            local_from=f"<sip:{user}@{self.host}>;tag={local_tag}",
        )  # fmt: skip
        self.dialogs[call_id] = dialog
        media = {0: PayloadType.PCMU, 8: PayloadType.PCMA, 101: PayloadType.EVENT}
        sdp = _sdp_body(self.host, rtp_port, media)
        auth_header = ""
        cseq = self._next_cseq()
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            for _attempt in range(2):
                branch = _branch()
                invite = self._invite_text(dialog, number, cseq, branch, sdp, auth_header)
                key = f"{call_id} {cseq}"
                queue: asyncio.Queue[SIP.SIPMessage] = asyncio.Queue()
                self._pending[key] = queue
                try:
                    final = await self._invite_transaction(invite, queue, deadline)
                finally:
                    self._pending.pop(key, None)
                if final is None:
                    self._send(self._cancel_text(dialog, number, cseq, branch).encode())
                    dialog._finish("timeout")
                    raise SipError(f"no answer from {number} within {timeout:.0f} s")
                code = int(final.status)
                if code in (401, 407) and not auth_header:
                    self._send(self._ack_non2xx(dialog, final).encode())
                    auth_header = self._auth_header(final, dialog.request_uri, code)
                    cseq = self._next_cseq()
                    continue
                if 200 <= code < 300:
                    self._establish(dialog, final)
                    dialog.offer = media_offer_from(final)
                    chosen = dialog.offer.choose_codec() if dialog.offer else None
                    if chosen is None:
                        self.hangup(dialog, reason="no_common_codec")
                        raise SipError(f"{number} answered without usable G.711 audio")
                    # What a re-INVITE from the callee is answered with (DEFECT 8).
                    dialog.answer_sdp_port, dialog.answer_codec_pt = rtp_port, chosen[1]
                    return dialog
                self._send(self._ack_non2xx(dialog, final).encode())
                dialog._finish(f"failed_{code}")
                raise SipError(
                    f"{number}: {code} {final.status.phrase}",
                )
            dialog._finish("auth_failed")
            raise SipError(f"{number}: authentication rejected by the peer")
        finally:
            if dialog.state == "ended":
                self._forget_later(dialog)

    def _establish(self, dialog: Dialog, ok: SIP.SIPMessage) -> None:
        """Take the dialog's target, route set and remote tag from a 2xx and ACK it."""
        dialog.remote_target = contact_uri(ok.headers.get("Contact", dialog.remote_target))
        dialog.remote_from = f"{ok.headers['To']['raw']};tag={ok.headers['To']['tag']}"
        dialog.route_set = list(reversed(record_routes(ok)))
        self._send(self._ack_for(dialog, ok).encode())
        dialog.state = "confirmed"
        dialog.confirmed.set()

    async def _invite_transaction(
        self, invite: str, queue: asyncio.Queue[SIP.SIPMessage], deadline: float
    ) -> SIP.SIPMessage | None:
        loop = asyncio.get_running_loop()
        interval, provisional = T1, False
        self._send(invite.encode())
        next_resend = loop.time() + interval
        while True:
            now = loop.time()
            if now >= deadline:
                return None
            wait = min(deadline, next_resend if not provisional else deadline) - now
            try:
                msg = await asyncio.wait_for(queue.get(), timeout=max(wait, 0.01))
            except TimeoutError:
                if not provisional and loop.time() >= next_resend:
                    self._send(invite.encode())  # Timer A
                    interval = min(interval * 2, T2)
                    next_resend = loop.time() + interval
                continue
            if int(msg.status) < 200:
                provisional = True
                continue
            return msg

    def _invite_text(
        self, dialog: Dialog, number: str, cseq: int, branch: str, sdp: str, auth: str
    ) -> str:
        return (
            f"INVITE sip:{number}@{self.peer[0]}:{self.peer[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: {dialog.local_from}\r\n"
            f"To: <sip:{number}@{self.peer[0]}>\r\nCall-ID: {dialog.call_id}\r\n"
            f"CSeq: {cseq} INVITE\r\nContact: <sip:{self.username}@{self.host}:{self.port}>\r\n"
            f"Allow: {ALLOW}\r\nUser-Agent: {USER_AGENT}\r\n{auth}"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
        )

    def _cancel_text(self, dialog: Dialog, number: str, cseq: int, branch: str) -> str:
        return (
            f"CANCEL {dialog.request_uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: {dialog.local_from}\r\n"
            f"To: <sip:{number}@{self.peer[0]}>\r\nCall-ID: {dialog.call_id}\r\n"
            f"CSeq: {cseq} CANCEL\r\nContent-Length: 0\r\n\r\n"
        )

    def _auth_header(
        self, challenge: SIP.SIPMessage, uri: str, code: int, method: str = "INVITE"
    ) -> str:
        # pyVoIP's gen_authorization only reads WWW-Authenticate (401); a 407 carries
        # Proxy-Authenticate, which its parser leaves as a raw string. Digest MD5 without qop.
        raw = challenge.headers.get("WWW-Authenticate") or challenge.headers.get(
            "Proxy-Authenticate", ""
        )
        params = (
            raw if isinstance(raw, dict)
            else {k: v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', raw)}
        )  # fmt: skip
        realm, nonce = params.get("realm", ""), params.get("nonce", "")
        password = self._client.password
        ha1 = hashlib.md5(f"{self.username}:{realm}:{password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
        response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
        name = "Authorization" if code == 401 else "Proxy-Authorization"
        return (
            f'{name}: Digest username="{self.username}",realm="{realm}",nonce="{nonce}",'
            f'uri="{uri}",response="{response}",algorithm=MD5\r\n'
        )

    # ----------------------------------------------------------------- housekeeping
    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _forget_later(self, dialog: Dialog) -> None:
        """Keep an ended dialog for 32 s to absorb retransmissions, then drop it."""

        async def forget() -> None:
            await dialog.ended.wait()
            await asyncio.sleep(TIMER_H)
            if self.dialogs.get(dialog.call_id) is dialog:
                del self.dialogs[dialog.call_id]
                self._client.tagLibrary.pop(dialog.call_id, None)

        self._spawn(forget())


def _granted_expires(ok: SIP.SIPMessage, contact: str, asked: int) -> int:
    """Seconds the registrar granted our `contact` (host:port): its expires= parameter among
    all the AOR's bindings, else the Expires header, else what we asked for."""
    head = ok.raw.partition(b"\r\n\r\n")[0].decode("utf-8", "replace")
    headers = headers_of(head)
    if isinstance(headers, Malformed):
        return asked
    for binding in headers.get("Contact", []):
        match = re.search(r";\s*expires\s*=\s*(\d+)", binding)
        if contact in binding and match:
            return int(match.group(1))
    match = re.fullmatch(r"\d+", headers.get("Expires", [""])[0])
    return int(match.group(0)) if match else asked


def _route_lines(dialog: Dialog) -> str:
    return "".join(f"Route: {route}\r\n" for route in dialog.route_set)


def _sdp_body(host: str, port: int, media: dict[int, PayloadType]) -> str:
    sess = random.randint(1, 2**31)
    lines = [
        "v=0", f"o=callserver {sess} {sess} IN IP4 {host}", "s=callserver",
        f"c=IN IP4 {host}", "t=0 0", f"m=audio {port} RTP/AVP " + " ".join(map(str, media)),
    ]  # fmt: skip
    for pt, codec in media.items():
        lines.append(f"a=rtpmap:{pt} {codec}/{codec.rate}")
        if codec is PayloadType.EVENT:
            lines.append(f"a=fmtp:{pt} 0-15")
    lines += ["a=ptime:20", "a=sendrecv"]
    return "\r\n".join(lines) + "\r\n"


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (tests and the CLI use it to pick SIP ports)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
