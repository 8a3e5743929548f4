"""SIP transactions, dialogs and registration: the SipEngine the server places and takes calls with.

The engine is the only part of the server that sees SIP. The rest (server.py, the dialer, the
flows) sees a `Dialog` (who called whom, the media offer, an `ended` event) and four verbs:
`answer`, `reject`, `hangup` and `dial`. pyVoIP (through callserver/sip/pyvoip_compat.py) only
receives datagrams and parses them; transactions, dialogs, CANCEL, OPTIONS, registration and
every message we send are ours, because pyVoIP's are wrong in the ways docs/pyvoip-defects.md
lists (each workaround is marked `DEFECT n` where it lives and has a real-peer test in
tests/test_sip_*.py).

Invariants:
- One peer: every message goes to the configured peer (the PBX, SBC or Kamailio in front), and
  a datagram from anyone else is dropped before it is parsed (DEFECT 11).
- Nothing malformed rings, answers, records or raises (DEFECT 13): requests pass
  callserver/sip/sanity.py before the parser, and the parser's failures are counted.
- Threading: pyVoIP's receive thread hands each datagram to the asyncio loop with
  `call_soon_threadsafe`; every dialog decision is then made on the loop, so there is no
  locking between calls.
- Media is not pyVoIP's: the SDP answer names the port of our own RTP session
  (callserver/media/), and a re-INVITE or UPDATE is applied to it by the media's owner
  (`Dialog.on_reoffer`) before we answer, so the answer says what the media does (DEFECT 8).
- A request acts on a call only if it belongs to it: an in-dialog request must match the
  dialog (Call-ID and both tags), a CANCEL the INVITE's transaction (branch); anything else
  gets 481 and changes nothing (DEFECT 6).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from callserver.logs import CALL_ID, adopt_call
from callserver.sip import sdp
from callserver.sip.digest import authorization
from callserver.sip.messages import build_request, build_response, new_branch, random_token
from callserver.sip.pyvoip_compat import (
    SipMessage,
    SipTransport,
    body_of,
    challenge_params,
    content_type,
    is_response,
    parse_message,
    response_vias,
)
from callserver.sip.sanity import Malformed, check_request, headers_of
from callserver.sip.sdp import MediaOffer, OfferRefused

log = logging.getLogger(__name__)

T1 = 0.5  # RFC 3261 timer T1
T2 = 4.0
TIMER_H = 64 * T1  # give up on a 200 OK that is never ACKed
REGISTER_EXPIRES = 300  # asked for; refreshed at 80 % of what the registrar grants
REGISTER_RETRY_S = 30.0


NO_ACK = "no_ack"
"""Dialog.end_reason when our 200 OK was never acknowledged (Timer H ran out)."""

ReofferHandler = Callable[[MediaOffer], "int | None"]
"""Applies the peer's new offer (re-INVITE or UPDATE) to the call's media; returns the payload
type now sent (the answer names exactly that codec), or None to refuse it (488, call unchanged)."""


class SipError(RuntimeError):
    """A signalling failure the caller of the engine should handle (e.g. a dial that failed).

    `code` is the SIP status the attempt ended with: the peer's final response (486), or the
    status we give a failure we detected ourselves (488: answered without usable audio). It is
    None when no final response came at all (no answer before the timeout) or SIP never got
    that far (the socket could not be bound). `reason` says what happened in words."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(reason if code is None else f"{code} {reason}")
        self.code = code
        self.reason = reason


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
    invite: SipMessage | None = None
    local_tag: str = ""
    remote_target: str = ""  # Contact of the peer: request-URI of in-dialog requests
    route_set: list[str] = field(default_factory=list)  # Route headers for in-dialog requests
    record_route: list[str] = field(default_factory=list)  # echoed in our 18x/2xx (inbound)
    request_uri: str = ""  # of our INVITE (outbound): CANCEL and non-2xx ACK reuse it
    remote_from: str = ""  # peer's URI with tag, as it goes into our To header
    local_from: str = ""  # our URI with tag
    local_cseq: int = 0
    remote_tag: str = ""  # the peer's tag: the From-tag of every request it sends in the dialog
    remote_cseq: int = 0  # highest CSeq seen from the peer in the dialog (RFC 3261 12.2.2)
    acked_cseq: int = 0  # highest CSeq of the peer's INVITEs that it has ACKed
    last_response: bytes = b""
    answer_sdp_port: int | None = None
    answer_codec_pt: int | None = None
    answer_sess_id: str = ""
    answer_version: int = 0  # o= version of our last SDP: it goes up when the SDP changes
    answer_core: str = ""  # our last SDP without its o= line, to tell whether it changed
    on_reoffer: ReofferHandler | None = None
    """Set by the owner of the call's media once it runs (callserver/inbound.py, dialer.py):
    the engine calls it with the peer's new offer before answering a re-INVITE or UPDATE.
    Without it (no media yet) the engine answers from the offer alone."""
    last_reoffer: tuple[tuple[int, str], bytes] | None = None
    """((CSeq, method), our final response) of the peer's last re-INVITE/UPDATE, repeated when
    the request is retransmitted."""
    _retransmit: asyncio.Task[None] | None = None
    _reoffer_retransmit: asyncio.Task[None] | None = None

    def finish(self, reason: str) -> None:
        """Mark the call ended with `reason` (once; later calls keep the first reason).

        Only the state changes: whoever calls this has sent (or received) what ends the call."""
        if self.state != "ended":
            self.state = "ended"
            self.end_reason = reason
            self.ended.set()
            for task in (self._retransmit, self._reoffer_retransmit):
                if task is not None:
                    task.cancel()

    def matches(self, msg: SipMessage) -> bool:
        """Whether `msg` (a request from the peer) belongs to this dialog: Call-ID and both
        tags (RFC 3261 12.2.2). A request with the right Call-ID alone ends nothing."""
        h = msg.headers
        return (
            bool(self.remote_tag)
            and h["Call-ID"] == self.call_id
            and h["From"]["tag"] == self.remote_tag
            and h["To"]["tag"] == self.local_tag
        )


InviteHandler = Callable[[Dialog], Awaitable[None]]


def record_routes(msg: SipMessage) -> list[str]:
    """Every Record-Route entry in order; pyVoIP's parser keeps only the first header line."""
    head = msg.raw.partition(b"\r\n\r\n")[0].decode("utf-8", "replace")
    headers = headers_of(head)
    return [] if isinstance(headers, Malformed) else headers.get("Record-Route", [])


def contact_uri(value: str) -> str:
    """The URI in a Contact value (`"Bob" <sip:bob@host;transport=udp>;expires=60`)."""
    inner = re.search(r"<([^<>]+)>", value)
    return inner.group(1).strip() if inner else value.split(";")[0].strip()


def _user_of(uri_header: str) -> str | None:
    match = re.search(r"sips?:([^@;>]+)@", uri_header)
    return match.group(1) if match else None


def _tagged(address: dict[str, str]) -> str:
    """A From/To header value from pyVoIP's parsed form, with its tag (even an empty one)."""
    return f"{address['raw']};tag={address['tag']}"


def same_invite_transaction(invite: SipMessage, request: SipMessage) -> bool:
    """Whether `request` (a CANCEL, or the INVITE again) belongs to `invite`'s transaction:
    the top Via's branch and sent-by (RFC 3261 17.2.3), and, since a CANCEL must copy them
    (9.1), the From-tag and the CSeq number."""
    ours, theirs = invite.headers["Via"][0], request.headers["Via"][0]
    return (
        ours.get("branch") == theirs.get("branch")
        and ours.get("address") == theirs.get("address")
        and invite.headers["From"]["tag"] == request.headers["From"]["tag"]
        and invite.headers["CSeq"]["check"] == request.headers["CSeq"]["check"]
    )


def _without_origin(sdp_text: str) -> str:
    return "\n".join(line for line in sdp_text.splitlines() if not line.startswith("o="))


def _cseq(msg: SipMessage) -> int:
    return int(msg.headers["CSeq"]["check"])


def refused_headers(refused: OfferRefused) -> list[str]:
    """A 415 says what we take (RFC 3261 21.4.13)."""
    return ["Accept: application/sdp"] if refused.code == 415 else []


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
        media_host_ipv6: str = "",
    ) -> None:
        self.host, self.port, self.peer, self.mode = host, port, peer, mode
        self.media_host_ipv6 = media_host_ipv6
        """Where our RTP listens for IPv6 offers (sip.media_host_ipv6); empty: IPv4 only."""
        self.username = username
        self._password = password
        self.on_invite = on_invite
        self.dialogs: dict[str, Dialog] = {}
        self.stats = {"parse_errors": 0, "malformed": 0, "foreign_dropped": 0, "options": 0}
        self.responses: collections.Counter[tuple[str, str]] = collections.Counter()
        """SIP responses by (direction "sent"/"received", class "2xx"), retransmissions too:
        what went over the wire (callserver/metrics.py exports them)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: dict[str, asyncio.Queue[SipMessage]] = {}
        self._cseq = random.randint(1, 10000)
        self.registered = 0  # seconds granted by the registrar (registered mode)
        self._registrar: asyncio.Task[None] | None = None
        self._register_call_id = f"{random_token(20)}@{host}"
        self._register_tag = random_token(12)
        self._contact = f"<sip:{username}@{host}:{port}>"
        self._transport = SipTransport(
            host=host, port=port, peer=peer, on_datagram=self._from_thread
        )

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            await asyncio.to_thread(self._transport.start)
        except OSError as exc:
            raise SipError(
                None,
                f"cannot bind SIP socket on {self.host}:{self.port} ({exc}): "
                "choose a free sip.port / CALLSERVER_SIP_PORT",
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
        await asyncio.to_thread(self._transport.stop)

    # ----------------------------------------------------------------- registration
    async def _keep_registered(self) -> None:
        while True:
            granted = self.registered
            await asyncio.sleep(max(granted * 0.8, 5.0) if granted else REGISTER_RETRY_S)
            self.registered = await self._register(REGISTER_EXPIRES)

    async def _register(self, expires: int, *, give_up_after: float = 32.0) -> int:
        """One REGISTER (with a digest answer to 401/407); returns the granted seconds, 0 on
        failure (logged with what the operator should check).

        DEFECT 1: pyVoIP's own registration reads "the next datagram" as the answer and gives
        up for good after 3 failures; this one is a transaction on the loop and retries."""
        uri = f"sip:{self.peer[0]}:{self.peer[1]}"
        aor = f"<sip:{self.username}@{self.peer[0]}>"
        auth: list[str] = []
        deadline = asyncio.get_running_loop().time() + give_up_after
        for _attempt in range(2):
            cseq = self._next_cseq()
            data = build_request(
                "REGISTER", uri, via=self._via(), from_=f"{aor};tag={self._register_tag}",
                to=aor, call_id=self._register_call_id, cseq=cseq, contact=self._contact,
                expires=expires, extra_headers=auth,
            )  # fmt: skip
            final = await self._transaction(data, f"{self._register_call_id} {cseq}", deadline)
            if final is None:
                log.error(
                    "REGISTER to %s:%d: no answer: check sip.peer and that the registrar runs; "
                    "no calls will arrive until it succeeds (retrying)", *self.peer,
                )  # fmt: skip
                return 0
            code = int(final.status)
            if code in (401, 407) and not auth:
                auth = [self._authorization(final, "REGISTER", uri, code)]
                continue
            if 200 <= code < 300:
                granted = _granted_expires(final, f"{self.host}:{self.port}", expires)
                if expires:
                    log.info("registered as %s at %s:%d for %d s", self.username, *self.peer,
                             granted)  # fmt: skip
                return granted
            refusal = f"{code} {final.status.phrase}"
            break
        log.error(
            "REGISTER to %s:%d refused (%s): check sip.username and sip.password; no calls "
            "will arrive until it succeeds (retrying)", *self.peer, refusal,
        )  # fmt: skip
        return 0

    async def _transaction(self, data: bytes, key: str, deadline: float) -> SipMessage | None:
        """A non-INVITE client transaction: resend (Timer E) until a final response or
        `deadline`; the response arrives through the one receive path."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[SipMessage] = asyncio.Queue()
        self._pending[key] = queue
        interval = T1
        try:
            self._send(data)
            while loop.time() < deadline:
                try:
                    msg = await asyncio.wait_for(
                        queue.get(), timeout=max(min(interval, deadline - loop.time()), 0.01)
                    )
                except TimeoutError:
                    self._send(data)
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
        # Every line logged while handling the message, and the task of a call it starts,
        # names its Call-ID (callserver/logs.py); the handle's context is its own copy.
        token = CALL_ID.set(msg.headers.get("Call-ID") or None)
        try:
            if is_response(msg):
                self.responses[("received", f"{int(msg.status) // 100}xx")] += 1
                self._on_response(msg)
            else:
                self._on_request(msg)
        except Exception:
            self.stats["parse_errors"] += 1
            log.exception("error handling SIP %s", msg.heading[:60])
        finally:
            CALL_ID.reset(token)

    def _on_request(self, msg: SipMessage) -> None:
        method = msg.method
        dialog = self.dialogs.get(msg.headers["Call-ID"])
        in_dialog = bool(msg.headers["To"]["tag"])
        if method == "ACK":
            self._on_ack(msg, dialog)
        elif method == "CANCEL":
            self._on_cancel(msg, dialog)
        elif method == "INVITE" and not in_dialog:
            self._on_invite(msg, dialog)
        elif in_dialog or method in {"BYE", "UPDATE"}:
            # DEFECT 6: pyVoIP (and this engine until the tags were checked) matched in-dialog
            # requests by Call-ID alone, so a BYE with a guessed Call-ID ended a real call.
            if dialog is None or not dialog.matches(msg):
                log.warning(
                    "%s for call %s does not match a dialog (tags): 481, nothing changed",
                    method, msg.headers["Call-ID"],
                )  # fmt: skip
                self._respond(msg, 481, "Call/Transaction Does Not Exist")
                return
            self._on_in_dialog(msg, dialog)
        elif method in {"OPTIONS", "INFO"}:
            self._answer_probe(msg)
        else:
            self._respond(msg, 501, "Not Implemented")

    def _answer_probe(self, msg: SipMessage) -> None:
        # DEFECT 7: health probes and INFO get a 200 instead of silence.
        self.stats["options"] += msg.method == "OPTIONS"
        extra = ["Accept: application/sdp"] if msg.method == "OPTIONS" else []
        self._respond(msg, 200, "OK", extra_headers=extra)

    def _on_in_dialog(self, msg: SipMessage, dialog: Dialog) -> None:
        """A request from the peer that matches `dialog` (Call-ID and both tags)."""
        method, cseq = msg.method, _cseq(msg)
        if dialog.last_reoffer is not None and dialog.last_reoffer[0] == (cseq, method):
            self._send(dialog.last_reoffer[1])  # an answered re-offer, retransmitted
            return
        if cseq < dialog.remote_cseq:
            # RFC 3261 12.2.2: a lower CSeq than one already seen is out of order.
            self._respond(msg, 500, "Server Internal Error (CSeq out of order)")
            return
        dialog.remote_cseq = cseq
        if dialog.state == "ended" and method != "BYE":
            self._respond(msg, 481, "Call/Transaction Does Not Exist")  # the call is over
            return
        if method == "BYE":
            self._respond(msg, 200, "OK")
            if dialog.state == "early" and dialog.inbound and dialog.invite is not None:
                # RFC 3261 15.1.2: the caller may end an early dialog with BYE: the INVITE
                # gets 487, as for a CANCEL.
                dialog.last_response = self._respond(
                    dialog.invite, 487, "Request Terminated", dialog.local_tag
                )
            dialog.finish("remote_bye")
        elif method in {"INVITE", "UPDATE"}:
            self._on_reoffer(msg, dialog)
        elif method in {"OPTIONS", "INFO"}:
            self._answer_probe(msg)
        else:
            self._respond(msg, 501, "Not Implemented")

    def _on_ack(self, msg: SipMessage, dialog: Dialog | None) -> None:
        if dialog is None or not dialog.matches(msg):
            return  # an ACK is never answered; one that matches no dialog changes nothing
        dialog.acked_cseq = max(dialog.acked_cseq, _cseq(msg))
        if dialog.state == "answered":
            dialog.state = "confirmed"
            dialog.confirmed.set()
            if dialog._retransmit:
                dialog._retransmit.cancel()

    def _on_invite(self, msg: SipMessage, dialog: Dialog | None) -> None:
        """A new INVITE (no To-tag)."""
        if dialog is not None:
            if dialog.invite is not None and same_invite_transaction(dialog.invite, msg):
                # A retransmitted INVITE: repeat our last response, do not start a second call.
                if dialog.last_response:
                    self._send(dialog.last_response)
            else:
                # Same Call-ID, another transaction: a merged or forged request (8.2.2.2).
                self._respond(msg, 482, "Loop Detected")
            return
        if "Contact" not in msg.headers:
            self._respond(msg, 400, "Bad Request (no Contact)")
            return
        try:
            offer = self._offer_of(msg)
        except OfferRefused as refused:
            log.info("INVITE %s refused: %d %s", msg.headers["Call-ID"], refused.code,
                     refused.reason)  # fmt: skip
            self._respond(msg, refused.code, refused.reason, extra_headers=refused_headers(refused))
            return
        if offer is None:
            self._respond(msg, 488, "Not Acceptable Here (no SDP offer in the INVITE)")
            return
        called = _user_of(msg.heading.decode("utf-8", "replace")) or msg.headers["To"]["number"]
        dialog = Dialog(
            call_id=msg.headers["Call-ID"],
            caller=msg.headers["From"]["number"],
            called=called or "",
            offer=offer,
            invite=msg,
            local_tag=random_token(12),
            remote_tag=msg.headers["From"]["tag"],
            remote_cseq=_cseq(msg),
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

    def _offer_of(self, msg: SipMessage) -> MediaOffer | None:
        """The SDP offer in a request (None: no body); OfferRefused if we cannot take it."""
        body = body_of(msg)
        if not body.strip():
            return None
        kind = content_type(msg)
        if kind not in ("application/sdp", ""):
            raise OfferRefused(415, "Unsupported Media Type")
        return sdp.media_offer(body.decode("utf-8", "replace"), ipv6=bool(self.media_host_ipv6))

    def _on_reoffer(self, msg: SipMessage, dialog: Dialog) -> None:
        """A re-INVITE or UPDATE in the dialog: follow the peer's new SDP or refuse it.

        DEFECT 8: pyVoIP answered 200 and restarted its media; before this, the engine kept the
        media as it was and repeated its answer, so a PBX that moved the call (transfer, hold,
        codec change) talked to a port nobody listened on. Now the media's owner applies the
        offer (`Dialog.on_reoffer`) and the answer says what it does."""
        method, cseq = msg.method, _cseq(msg)
        tag = dialog.local_tag
        if dialog.state not in {"answered", "confirmed"} or dialog.answer_sdp_port is None:
            self._respond(msg, 491, "Request Pending", tag)
            return
        try:
            offer = self._offer_of(msg)
        except OfferRefused as refused:
            log.info("call %s: %s refused: %d %s (call unchanged)", dialog.call_id, method,
                     refused.code, refused.reason)  # fmt: skip
            response = self._respond(
                msg, refused.code, refused.reason, tag, extra_headers=refused_headers(refused)
            )
            dialog.last_reoffer = ((cseq, method), response)
            return
        if offer is not None:
            pt = self._apply_offer(dialog, offer)
            if pt is None:
                response = self._respond(
                    msg, 488, "Not Acceptable Here (cannot move this call's media there)", tag
                )
                dialog.last_reoffer = ((cseq, method), response)
                return
            dialog.offer, dialog.answer_codec_pt = offer, pt
            log.info(
                "call %s: %s: media to %s:%s, %s/%d, peer %s", dialog.call_id, method,
                offer.address or "(held)", offer.port, offer.codec_name(pt), pt, offer.direction,
            )  # fmt: skip
        if offer is None and method == "UPDATE":
            response = self._respond(msg, 200, "OK", tag)  # a session refresh without SDP
        else:
            # With an offer: our answer. Without (a re-INVITE asking for our offer): our SDP
            # as it stands, same version.
            response = self._answer_text(dialog, msg)
            self._send(response)
        dialog.last_reoffer = ((cseq, method), response)
        if method == "INVITE":
            if dialog._reoffer_retransmit is not None:
                dialog._reoffer_retransmit.cancel()
            dialog._reoffer_retransmit = self._spawn(
                self._retransmit_ok(dialog, response, cseq, initial=False)
            )

    def _apply_offer(self, dialog: Dialog, offer: MediaOffer) -> int | None:
        if dialog.on_reoffer is None:
            chosen = offer.choose_codec()  # no media to move yet: the answer is all there is
            return chosen[1] if chosen else None
        try:
            pt = dialog.on_reoffer(offer)
        except Exception:
            log.exception("call %s: applying the new offer failed", dialog.call_id)
            return None
        if pt is not None and offer.codecs.get(pt, "").upper() not in sdp.AUDIO_CODECS:
            log.error("call %s: media chose payload type %s, not G.711 in the offer",
                      dialog.call_id, pt)  # fmt: skip
            return None
        return pt

    async def _run_inbound(self, dialog: Dialog) -> None:
        try:
            await self.on_invite(dialog)
        except Exception:
            log.exception("call %s: handler failed", dialog.call_id)
            if dialog.state == "early" and dialog.invite:
                self._respond(dialog.invite, 500, "Server Internal Error", dialog.local_tag)
                dialog.finish("error")
            elif dialog.state != "ended":
                self.hangup(dialog)
        finally:
            if dialog.state == "early" and dialog.invite:
                self._respond(dialog.invite, 480, "Temporarily Unavailable", dialog.local_tag)
                dialog.finish("not_answered")
            self._forget_later(dialog)

    def _on_cancel(self, msg: SipMessage, dialog: Dialog | None) -> None:
        if (
            dialog is None
            or not dialog.inbound
            or dialog.invite is None
            or not same_invite_transaction(dialog.invite, msg)
        ):
            # DEFECT 6: a CANCEL must match the INVITE's transaction (RFC 3261 9.2); one that
            # matched the Call-ID alone (forged branch and From-tag) cancelled a ringing call.
            log.warning("CANCEL for call %s matches no INVITE transaction: 481",
                        msg.headers["Call-ID"])  # fmt: skip
            self._respond(msg, 481, "Call/Transaction Does Not Exist")
            return
        # DEFECT 6: pyVoIP answers CANCEL with 200 and then answers the call anyway. RFC 3261
        # 9.2: 200 to the CANCEL, 487 to the INVITE, and the call never starts.
        self._respond(msg, 200, "OK", dialog.local_tag)
        if dialog.state == "early":
            dialog.last_response = self._respond(
                dialog.invite, 487, "Request Terminated", dialog.local_tag
            )
            dialog.finish("cancelled")

    def _on_response(self, msg: SipMessage) -> None:
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
                self._send(self._ack_non2xx(dialog, msg))
            elif dialog.confirmed.is_set():
                # A retransmitted 200 for an INVITE we already ACKed: ACK it again.
                self._send(self._ack_for(dialog, msg))
            else:
                # A 200 that crossed our CANCEL: the callee is connected; ACK and hang up.
                dialog.remote_target = contact_uri(msg.headers.get("Contact", dialog.request_uri))
                dialog.remote_from = _tagged(msg.headers["To"])
                dialog.remote_tag = msg.headers["To"]["tag"]
                dialog.route_set = list(reversed(record_routes(msg)))
                self._send(self._ack_for(dialog, msg))
                self._send_in_dialog(dialog, "BYE")

    # ----------------------------------------------------------------- inbound API
    def answer(self, dialog: Dialog, rtp_port: int, codec_pt: int) -> bool:
        """Send 200 OK with our SDP; retransmit until ACK. False if the call is already gone.

        `rtp_port` is our media's port on the address family of the offer (sip.host for IPv4,
        `media_host_ipv6` for IPv6); `codec_pt` the payload type it sends."""
        if dialog.state != "early" or dialog.invite is None or dialog.offer is None:
            return False
        dialog.answer_sdp_port = rtp_port
        dialog.answer_codec_pt = codec_pt
        dialog.state = "answered"
        dialog.last_response = self._answer_text(dialog, dialog.invite)
        self._send(dialog.last_response)
        dialog._retransmit = self._spawn(
            self._retransmit_ok(dialog, dialog.last_response, _cseq(dialog.invite), initial=True)
        )
        return True

    async def _retransmit_ok(
        self, dialog: Dialog, response: bytes, cseq: int, *, initial: bool
    ) -> None:
        """Resend a 200 to an INVITE (Timer G) until its ACK; after 64*T1 (Timer H) without one,
        hang up if it answered the call (RFC 3261 13.3.1.4).

        The resends and the deadline are absolute times from the first send: sleeping the
        intervals one after another overshot Timer H by up to T2 (35.5 s instead of 32 s)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline, interval = start + TIMER_H, T1
        next_send = start + interval

        def acked() -> bool:
            if initial:
                return dialog.state != "answered"
            return dialog.state == "ended" or dialog.acked_cseq >= cseq

        while True:
            await asyncio.sleep(max(min(next_send, deadline) - loop.time(), 0.0))
            if acked():
                return
            if loop.time() >= deadline:
                break
            self._send(response)
            interval = min(interval * 2, T2)
            next_send += interval
        waited = loop.time() - start
        if initial:
            # pyVoIP sends 200 OK once; a lost 200 or ACK would leave the caller hanging.
            log.warning("call %s: no ACK for 200 OK after %.1f s, hanging up", dialog.call_id,
                        waited)  # fmt: skip
            self.hangup(dialog, reason=NO_ACK)
        else:
            log.warning("call %s: no ACK for the 200 to re-INVITE %d after %.1f s",
                        dialog.call_id, cseq, waited)  # fmt: skip

    def reject(self, dialog: Dialog, code: int = 486, reason: str = "Busy Here") -> None:
        if dialog.state == "early" and dialog.invite is not None:
            dialog.last_response = self._respond(dialog.invite, code, reason, dialog.local_tag)
            dialog.finish(f"rejected_{code}")

    def hangup(self, dialog: Dialog, reason: str = "local_bye") -> None:
        """End the call from our side (BYE in a dialog, CANCEL/487 before answer)."""
        if dialog.state == "ended":
            return
        if dialog.state == "early":
            if dialog.inbound and dialog.invite is not None:
                self._respond(dialog.invite, 480, "Temporarily Unavailable", dialog.local_tag)
            dialog.finish(reason)
            return
        self._send_in_dialog(dialog, "BYE")
        dialog.finish(reason)

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
        call_id = f"{random_token(20)}@{self.host}"
        adopt_call(call_id)  # the rest of the dialling task is about this call
        local_tag = random_token(12)
        user = caller_id or self.username
        uri = f"sip:{number}@{self.peer[0]}:{self.peer[1]}"
        dialog = Dialog(
            call_id=call_id, caller=user, called=number, offer=None, inbound=False,
            local_tag=local_tag, remote_target=uri, request_uri=uri,
            local_from=f"<sip:{user}@{self.host}>;tag={local_tag}",
        )  # fmt: skip
        self.dialogs[call_id] = dialog
        # Our offer starts the dialog's SDP session: answers to the callee's re-INVITEs keep
        # its id and raise its version (RFC 3264 8).
        dialog.answer_sess_id = sdp.new_session_id()
        dialog.answer_version = int(dialog.answer_sess_id)
        offer_text = sdp.offer(self.host, rtp_port, dialog.answer_sess_id)
        dialog.answer_core = _without_origin(offer_text)
        body = offer_text.encode()
        to = f"<sip:{number}@{self.peer[0]}>"
        auth: list[str] = []
        cseq = self._next_cseq()
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            for _attempt in range(2):
                branch = new_branch()
                invite = build_request(
                    "INVITE", uri, via=self._via(branch), from_=dialog.local_from, to=to,
                    call_id=call_id, cseq=cseq, contact=self._contact, extra_headers=auth,
                    body=body, content_type="application/sdp",
                )  # fmt: skip
                key = f"{call_id} {cseq}"
                queue: asyncio.Queue[SipMessage] = asyncio.Queue()
                self._pending[key] = queue
                try:
                    final = await self._invite_transaction(invite, queue, deadline)
                finally:
                    self._pending.pop(key, None)
                if final is None:
                    self._send(
                        build_request(
                            "CANCEL",
                            uri,
                            via=self._via(branch),
                            from_=dialog.local_from,
                            to=to,
                            call_id=call_id,
                            cseq=cseq,
                        )  # fmt: skip
                    )
                    dialog.finish("timeout")
                    raise SipError(None, f"no answer from {number} within {timeout:.0f} s")
                code = int(final.status)
                if code in (401, 407) and not auth:
                    self._send(self._ack_non2xx(dialog, final))
                    auth = [self._authorization(final, "INVITE", dialog.request_uri, code)]
                    cseq = self._next_cseq()
                    continue
                if 200 <= code < 300:
                    self._establish(dialog, final)
                    try:
                        # Our offer is IPv4 (our socket is): an IPv6 answer is not usable.
                        answer = self._offer_of(final)
                        if answer is not None and answer.address_type != "IP4":
                            raise OfferRefused(488, "IPv6 media in answer to an IPv4 offer")
                    except OfferRefused as refused:
                        answer, why = None, f": {refused.reason}"
                    else:
                        why = ""
                    if answer is None:
                        self.hangup(dialog, reason="no_common_codec")
                        raise SipError(488, f"{number} answered without usable G.711 audio{why}")
                    dialog.offer = answer
                    chosen = answer.choose_codec()
                    assert chosen is not None  # sdp.media_offer refuses offers without G.711
                    # What a re-INVITE from the callee is answered with, until the media
                    # follows it (Dialog.on_reoffer).
                    dialog.answer_sdp_port, dialog.answer_codec_pt = rtp_port, chosen[1]
                    return dialog
                self._send(self._ack_non2xx(dialog, final))
                dialog.finish(f"failed_{code}")
                raise SipError(code, final.status.phrase)
            dialog.finish("auth_failed")
            raise SipError(code, f"authentication for {number} rejected by the peer")
        finally:
            # Dropped 32 s after it ends, whether it failed here or is hung up later.
            self._forget_later(dialog)

    def _establish(self, dialog: Dialog, ok: SipMessage) -> None:
        """Take the dialog's target, route set and remote tag from a 2xx and ACK it."""
        dialog.remote_target = contact_uri(ok.headers.get("Contact", dialog.remote_target))
        dialog.remote_from = _tagged(ok.headers["To"])
        dialog.remote_tag = ok.headers["To"]["tag"]
        dialog.route_set = list(reversed(record_routes(ok)))
        self._send(self._ack_for(dialog, ok))
        dialog.state = "confirmed"
        dialog.confirmed.set()

    async def _invite_transaction(
        self, invite: bytes, queue: asyncio.Queue[SipMessage], deadline: float
    ) -> SipMessage | None:
        loop = asyncio.get_running_loop()
        interval, provisional = T1, False
        self._send(invite)
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
                    self._send(invite)  # Timer A
                    interval = min(interval * 2, T2)
                    next_resend = loop.time() + interval
                continue
            if int(msg.status) < 200:
                provisional = True
                continue
            return msg

    def _authorization(self, challenge: SipMessage, method: str, uri: str, code: int) -> str:
        # pyVoIP's gen_authorization only reads WWW-Authenticate (401); a 407 carries
        # Proxy-Authenticate (DEFECT 5). Digest MD5 without qop.
        return authorization(
            challenge_params(challenge), username=self.username, password=self._password,
            method=method, uri=uri, code=code,
        )  # fmt: skip

    # ----------------------------------------------------------------- message building
    def _via(self, branch: str | None = None) -> tuple[str, int, str]:
        return self.host, self.port, branch or new_branch()

    def _answer_text(self, dialog: Dialog, request: SipMessage) -> bytes:
        """200 OK with our SDP answer, for the INVITE and for any re-INVITE or UPDATE."""
        body = self._sdp_answer(dialog)
        return self._response(
            request, 200, "OK", to_tag=dialog.local_tag, record_route=dialog.record_route,
            body=body.encode(), content_type="application/sdp",
        )  # fmt: skip

    def media_host(self, offer: MediaOffer) -> str:
        """Our media address for `offer`'s address family."""
        return self.media_host_ipv6 if offer.address_type == "IP6" else self.host

    def _sdp_answer(self, dialog: Dialog) -> str:
        """Our SDP for the dialog's current offer: one session id for the dialog, and a new
        o= version whenever the SDP differs from the last one we sent (RFC 3264 8); the
        same o= line when nothing changed (a session refresh)."""
        offer, pt = dialog.offer, dialog.answer_codec_pt
        assert offer is not None and pt is not None and dialog.answer_sdp_port is not None
        if not dialog.answer_sess_id:
            dialog.answer_sess_id = sdp.new_session_id()
            dialog.answer_version = int(dialog.answer_sess_id)

        def build() -> str:
            return sdp.answer(
                offer, host=self.media_host(offer), port=dialog.answer_sdp_port or 0,
                codec=(offer.codec_name(pt), pt), session_id=dialog.answer_sess_id,
                version=dialog.answer_version,
            )  # fmt: skip

        body = build()
        core = _without_origin(body)
        if dialog.answer_core and core != dialog.answer_core:
            dialog.answer_version += 1
            body = build()
        dialog.answer_core = core
        return body

    def _respond(
        self,
        request: SipMessage,
        code: int,
        reason: str,
        to_tag: str | None = None,
        *,
        extra_headers: Sequence[str] = (),
        record_route: Sequence[str] = (),
    ) -> bytes:
        """Build and send a response; returns it so it can be repeated for a retransmission.

        pyVoIP's gen_ok invents a new To-tag on every call and has no 100/487/481/501, so
        responses are built from pyVoIP's parsed headers. The request's own To-tag wins over
        `to_tag` (an in-dialog request already carries ours)."""
        # RFC 3261 8.2.6.2: every response but 100 carries a To-tag.
        tag = request.headers["To"]["tag"] or to_tag or (random_token(12) if code > 100 else None)
        data = self._response(
            request, code, reason, to_tag=tag, extra_headers=extra_headers,
            record_route=record_route,
        )  # fmt: skip
        self._send(data)
        return data

    def _response(
        self,
        request: SipMessage,
        code: int,
        reason: str,
        *,
        to_tag: str | None,
        extra_headers: Sequence[str] = (),
        record_route: Sequence[str] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> bytes:
        h = request.headers
        to = h["To"]["raw"]
        return build_response(
            code,
            reason,
            vias=response_vias(request),
            record_routes=record_route,
            from_=_tagged(h["From"]),
            to=f"{to};tag={to_tag}" if to_tag and code != 100 else to,
            call_id=h["Call-ID"],
            cseq=f"{h['CSeq']['check']} {h['CSeq']['method']}",
            contact=self._contact if 200 <= code < 300 or code == 180 else None,
            extra_headers=extra_headers,
            body=body,
            content_type=content_type,
        )

    def _send(self, data: bytes) -> None:
        # Every message goes to the one peer, as pyVoIP does (and as our trust model requires).
        if data.startswith(b"SIP/2.0 "):
            self.responses[("sent", f"{data[8:9].decode('ascii', 'replace')}xx")] += 1
        try:
            self._transport.send(data, self.peer)
        except OSError as exc:
            log.warning("SIP send to %s:%d failed: %s", *self.peer, exc)

    def _next_cseq(self) -> int:
        self._cseq += 1
        return self._cseq

    def _send_in_dialog(self, dialog: Dialog, method: str) -> None:
        if dialog.inbound:
            assert dialog.invite is not None
            h = dialog.invite.headers
            to = _tagged(h["From"])
            frm = f"{h['To']['raw']};tag={dialog.local_tag}"
        else:
            to, frm = dialog.remote_from, dialog.local_from
        # pyVoIP's gen_bye copies the INVITE's Via (the peer's branch) into our request and
        # sends it to the server: a proper in-dialog request has our own Via.
        self._send(
            build_request(
                method,
                dialog.remote_target,
                via=self._via(),
                routes=dialog.route_set,
                from_=frm,
                to=to,
                call_id=dialog.call_id,
                cseq=self._next_cseq(),
                contact=self._contact,
            )  # fmt: skip
        )

    def _ack_for(self, dialog: Dialog, response: SipMessage) -> bytes:
        """ACK for a 2xx: a new transaction in the dialog.

        DEFECT 4: pyVoIP's gen_ack invents a new To-tag, so the callee never matches the ACK,
        resends 200 OK and hangs up after 32 s. Reuse the response's To-tag, send the ACK to
        the Contact with the route set and a new branch (RFC 3261 13.2.2.4)."""
        h = response.headers
        return build_request(
            "ACK", dialog.remote_target, via=self._via(), routes=dialog.route_set,
            from_=dialog.local_from, to=_tagged(h["To"]), call_id=dialog.call_id,
            cseq=h["CSeq"]["check"],
        )  # fmt: skip

    def _ack_non2xx(self, dialog: Dialog, response: SipMessage) -> bytes:
        """ACK for a 3xx-6xx: part of the INVITE transaction, so the INVITE's Request-URI and
        branch (RFC 3261 17.1.1.3); a stateful proxy matches it by that branch."""
        h = response.headers
        branch = h["Via"][0].get("branch", new_branch()) if h["Via"] else new_branch()
        to = _tagged(h["To"]) if h["To"]["tag"] else h["To"]["raw"]
        return build_request(
            "ACK", dialog.request_uri, via=self._via(branch), from_=dialog.local_from, to=to,
            call_id=dialog.call_id, cseq=h["CSeq"]["check"],
        )  # fmt: skip

    # ----------------------------------------------------------------- housekeeping
    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
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

        self._spawn(forget())


def _granted_expires(ok: SipMessage, contact: str, asked: int) -> int:
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
