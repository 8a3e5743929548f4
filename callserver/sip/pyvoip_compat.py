"""pyVoIP 1.6.8, reduced to what we trust: its UDP socket and receive thread, and its parser.

This is the only module in the repository that imports pyVoIP (tests/test_architecture.py
checks it); every patch to it is here, each marked `DEFECT n` with the number used in
docs/pyvoip-defects.md, where the defect, the fix and the real-peer test that proves it are
listed. Keeping pyVoIP behind this one door means the engine deals in parsed messages and
bytes; replacing pyVoIP later means replacing this file and the parsed form it hands out.

What we take from pyVoIP and why:
- `SipTransport`: its socket and receive thread (with its registration switched off, DEFECT 1,
  and the sender's address kept, DEFECT 11). Every datagram goes to one callback.
- `parse_message`: its SIPMessage parser for the start line and headers, with the crashes that
  drop real peers' INVITEs removed (DEFECT 2) and every standard method accepted (DEFECT 7).
  Anything it still raises is turned into ValueError (DEFECT 13), so the engine counts one kind
  of failure. Bodies never reach it (DEFECT 14): `body_of` hands the engine the raw body, and
  callserver/sip/sdp.py parses SDP.
- A few readers of the parsed form (`response_vias`, `challenge_params`). The attributes listed
  at `SipMessage` below are all of pyVoIP's shape that the engine and sdp.py depend on.

What we do not take: its message generators (gen_ack, gen_bye, gen_answer, call(), register()),
which are wrong in ways listed in docs/pyvoip-defects.md: every request and response is built by
callserver/sip/messages.py, SDP by callserver/sip/sdp.py. Media is never pyVoIP's.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import pyVoIP

# DEFECT 12: pyVoIP.VoIP imports pyVoIP.RTP, which imports `audioop`, removed in Python 3.13.
# Our media never uses it (callserver/media/g711.py has its own tables); pyproject pulls in
# `audioop-lts` on 3.13+ so that this import keeps working. pyVoIP.VoIP must also be imported
# before pyVoIP.SIP: importing pyVoIP.SIP alone is circular.
import pyVoIP.VoIP  # noqa: F401
from pyVoIP import SIP

from callserver.sip.digest import parse_challenge

PYVOIP_VERSION: str = pyVoIP.__version__

# A parsed SIP message: `headers` (From/To/CSeq as dicts, Via as a list of dicts), `status`,
# `method` (requests only), `heading` and `raw` (the whole datagram; `body_of` reads its body).
SipMessage = SIP.SIPMessage

Datagram = Callable[[bytes, tuple[str, int]], None]

# DEFECT 7: pyVoIP only knows INVITE/ACK/BYE/CANCEL; anything else raises a parse error and is
# never answered, so OPTIONS health probes (Kamailio dispatcher) mark the node down.
KNOWN_METHODS = [
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE", "PRACK",
    "REGISTER", "SUBSCRIBE", "NOTIFY", "MESSAGE", "REFER", "PUBLISH",
]  # fmt: skip

_COMPACT = {
    "f": "From", "t": "To", "i": "Call-ID", "m": "Contact", "l": "Content-Length",
    "c": "Content-Type", "Call-Id": "Call-ID", "Cseq": "CSeq",
}  # fmt: skip


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


def parse_message(data: bytes) -> SipMessage:
    """Parse one datagram's start line and headers; raises ValueError (any parse failure) for
    the caller to count. The body is not parsed: read it with `body_of`."""
    # DEFECT 14: pyVoIP's SDP parser drops whole messages: RTP/AVPF is not in its RTPProtocol
    # enum (ValueError), a body line without "=" (Content-Type: text/plain) raises IndexError,
    # a body holding a blank line breaks its `headers, body = data.split(CRLFCRLF)`, and it
    # files a video line's `a=rtpmap:96` under the audio line that also lists 96. So pyVoIP
    # sees the head only; callserver/sip/sdp.py parses the SDP text itself.
    head, sep, _body = data.partition(b"\r\n\r\n")
    try:
        msg = _Message(head + (sep or b"\r\n\r\n"))
    except Exception as exc:  # DEFECT 13: pyVoIP raises many types on malformed input
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc
    msg.raw = data
    for required in ("From", "To", "Call-ID", "CSeq"):
        if required not in msg.headers:
            raise ValueError(f"missing {required} header")
    if not msg.headers["Via"]:
        raise ValueError("missing Via header")
    cseq = msg.headers["CSeq"]
    if not isinstance(cseq, dict) or not cseq["check"].isdigit():
        raise ValueError("malformed CSeq")
    return msg


def body_of(msg: SipMessage) -> bytes:
    """The message body as it arrived (everything after the blank line)."""
    return bytes(msg.raw).partition(b"\r\n\r\n")[2]


def content_type(msg: SipMessage) -> str:
    """The body's media type, lower case and without parameters ("" when not given)."""
    value = msg.headers.get("Content-Type", "")
    return str(value).split(";", 1)[0].strip().lower()


def is_response(msg: SipMessage) -> bool:
    return msg.type == SIP.SIPMessageType.RESPONSE


def response_vias(request: SipMessage) -> list[str]:
    """The request's Via values as a response repeats them (RFC 3261 8.2.6.2).

    Rebuilt from pyVoIP's parsed Via dicts exactly as its own responses wrote them (transport,
    sent-by, branch, rport, received; other parameters are not kept by its parser)."""
    vias = []
    for via in request.headers["Via"]:
        text = f"SIP/2.0/UDP {via['address'][0]}:{via['address'][1]}"
        if "branch" in via:
            text += f";branch={via['branch']}"
        if "rport" in via:
            text += ";rport" if via["rport"] is None else f";rport={via['rport']}"
        if "received" in via:
            text += f";received={via['received']}"
        vias.append(text)
    return vias


def challenge_params(response: SipMessage) -> dict[str, str]:
    """The digest challenge of a 401 or 407 as parameter -> value (quotes removed).

    pyVoIP's parser turns WWW-Authenticate (401) into such a dict but leaves Proxy-Authenticate
    (407) as the raw string, which its call() then could not answer (DEFECT 5)."""
    raw = response.headers.get("WWW-Authenticate") or response.headers.get("Proxy-Authenticate", "")
    return dict(raw) if isinstance(raw, dict) else parse_challenge(raw)


class _Client(SIP.SIPClient):
    """pyVoIP's SIPClient with its receive step and registration adapted to our engine."""

    def __init__(self, on_datagram: Datagram, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_datagram = on_datagram
        self._receiver: threading.Thread | None = None

    def recv(self) -> None:
        # DEFECT 11: pyVoIP reads with recv() and so loses the sender's address; we need it to
        # refuse requests from anyone but the trusted peer. BlockingIOError must propagate so
        # that pyVoIP's recv_loop releases its lock and polls again.
        raw, addr = self.s.recvfrom(65535)
        if raw.strip(b"\r\n\x00") == b"":
            return  # keep-alive
        self.on_datagram(raw, addr)

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
        receiver = self._receiver
        if receiver is not None and receiver is not threading.current_thread():
            receiver.join(timeout=2)
        self._close_sockets()


class _PhoneState:
    """The few attributes pyVoIP's registration touches on its VoIPPhone."""

    _status: Any = None


class SipTransport:
    """pyVoIP's UDP socket and its receive thread, and nothing else of its SIPClient.

    `on_datagram(raw, (host, port))` is called in the receive thread for every non-empty
    datagram; the engine hands it to its event loop. `start` and `stop` block (the engine runs
    them in a worker thread)."""

    def __init__(self, *, host: str, port: int, peer: tuple[str, int], on_datagram: Datagram):
        # username/password/peer only fill in pyVoIP's client; it never uses them, because its
        # registration is switched off (DEFECT 1) and it sends nothing itself.
        self._client = _Client(
            on_datagram,
            server=peer[0],
            port=peer[1],
            username="",
            password="",
            phone=_PhoneState(),
            myIP=host,
            myPort=port,
            callCallback=None,
            fatalCallback=None,
        )

    def start(self) -> None:
        """Bind the socket (OSError if the port is taken) and start receiving."""
        self._client.start()

    def stop(self) -> None:
        """Stop receiving (waits up to 2 s for the receive thread) and close the socket."""
        self._client.stop()

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send one datagram from the SIP port; OSError is the caller's to handle."""
        self._client.out.sendto(data, addr)
