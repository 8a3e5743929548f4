"""SDP (RFC 4566) offer/answer (RFC 3264) as far as a G.711 voice server needs it.

We parse the peer's SDP text ourselves (`parse`): every m= line with its media type, port,
transport, formats, rtpmap/fmtp and direction, and the connection address that applies to it
(media-level c= before session-level c=). pyVoIP's parser is not used for bodies: it dropped
whole INVITEs on RTP/AVPF, on a non-SDP body and on a body with a blank line, and it filed a
video line's rtpmap under the audio line that used the same number (DEFECT 14 in
docs/pyvoip-defects.md).

What we speak: one audio stream over RTP, PCMU or PCMA at 8 kHz in 20 ms packets, and RFC 4733
telephone-event for keys. Invariants of our answers:
- every m= line of the offer gets one in the answer, in the same order (RFC 3264 6): the audio
  line we take is accepted, every other line (video, a second audio line, an SRTP line next to
  a plain one) is rejected with port 0, the same media type and transport and one of its formats;
- the accepted line lists exactly one codec (the one we send: `MediaOffer.choose_codec`, the
  peer's order of preference, codecs found by their rtpmap name so a dynamic payload type keeps
  its meaning), plus telephone-event at 8000 Hz under the peer's own number;
- the accepted line keeps the offer's transport. RTP/AVPF (RFC 4585) is accepted as RTP/AVPF:
  RFC 3264 lets an answerer accept or reject an offered stream, never change its transport (that
  is why RFC 5939 capability negotiation exists for offerers who want "AVPF if you can, AVP
  otherwise"), so answering it as RTP/AVP would describe a stream nobody offered. Accepting it
  as AVPF is true for us: our answer has no a=rtcp-fb, so no feedback messages are negotiated
  (RFC 4585 4.2), and AVPF's rules are rules for sending RTCP, which we never send. SRTP
  profiles (RTP/SAVP, RTP/SAVPF, UDP/TLS/...) are refused with 488: we cannot encrypt, and
  answering one as plain RTP would be a lie the peer's SRTP stack would reject anyway;
- the direction mirrors the offer (sendonly -> recvonly, recvonly -> sendonly, inactive ->
  inactive); an offer whose address is c=0.0.0.0 (RFC 2543 hold) cannot receive, so we send
  nothing and answer as to sendonly;
- a dialog keeps one session id; the version in o= goes up with every answer that differs from
  the previous one and stays when nothing changed (RFC 3264 8).
Media is IPv4, or IPv6 when the server has an IPv6 media address (sip.media_host_ipv6): an
offer we cannot serve is refused with 488 and a reason that says why (`OfferRefused`).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from callserver.sip.sanity import ipv4_ok

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
DIRECTIONS: tuple[Direction, ...] = ("sendrecv", "sendonly", "recvonly", "inactive")
MIRROR: dict[Direction, Direction] = {
    "sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly",
    "inactive": "inactive",
}  # fmt: skip
AUDIO_CODECS = {"PCMU": 0, "PCMA": 8}
TELEPHONE_EVENT = "telephone-event"
OFFER_DTMF_PAYLOAD_TYPE = 101
PTIME_MS = 20
ANSWER_MAXPTIME_MS = 150  # what our answers have always said (pyVoIP's gen_answer wrote it)
RTP_PROFILES = ("RTP/AVP", "RTP/AVPF")
"""Transports we accept (answered as offered, see above)."""
SRTP_PROFILES = ("RTP/SAVP", "RTP/SAVPF", "UDP/TLS/RTP/SAVP", "UDP/TLS/RTP/SAVPF")
_STATIC_NAMES = {0: "PCMU", 8: "PCMA"}
_HELD = {"0.0.0.0", "::"}  # c= addresses that mean "send nothing" (RFC 2543 hold, RFC 3264 8.4)


class SdpError(ValueError):
    """The body is not SDP we can read (a line we cannot parse, no usable c= for a stream)."""


class OfferRefused(Exception):
    """An offer we cannot accept: `code` and `reason` are the SIP response (488 or 400)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class MediaDescription:
    """One m= line of an SDP, with what applies to it from the session level."""

    media: str  # audio, video, text, application, ...
    port: int
    proto: str
    formats: tuple[str, ...]
    rtpmap: Mapping[int, tuple[str, int, str]] = field(default_factory=dict)
    """payload type -> (encoding name, clock rate, channels or "")"""
    fmtp: Mapping[int, str] = field(default_factory=dict)
    direction: Direction = "sendrecv"
    address: str | None = None
    """Where to send: the c= address (media level, else session level); None for c=0.0.0.0."""
    address_type: str = "IP4"


@dataclass(frozen=True)
class SessionDescription:
    timing: str  # the t= value: an answer repeats the offer's (RFC 3264 6)
    media: tuple[MediaDescription, ...]


@dataclass(frozen=True)
class MediaOffer:
    """The audio stream of the peer's SDP we take: where to send RTP, which payload types it
    understands, its direction; and every m= line of the offer, so the answer can name each."""

    address: str | None  # None: c=0.0.0.0 (hold), send nothing
    port: int
    codecs: dict[int, str]  # payload type -> encoding name, in the peer's order of preference
    dtmf_payload_type: int | None
    direction: Direction = "sendrecv"
    address_type: str = "IP4"  # "IP4" or "IP6"
    proto: str = "RTP/AVP"
    streams: tuple[MediaDescription, ...] = ()
    """Every m= line of the offer, in order (empty: answer with this stream alone)."""
    index: int = 0
    """Which of `streams` is this audio stream."""
    timing: str = "0 0"

    def choose_codec(self) -> tuple[str, int] | None:
        """Return the peer's most preferred codec we support (G.711 only)."""
        for pt, name in self.codecs.items():
            if name.upper() in AUDIO_CODECS:
                return name.upper(), pt
        return None

    def codec_name(self, payload_type: int) -> str:
        """The G.711 name the peer gave `payload_type` (one `choose_codec` returned)."""
        name = self.codecs.get(payload_type, "").upper()
        if name not in AUDIO_CODECS:
            raise ValueError(f"payload type {payload_type} is not G.711 in this offer")
        return name

    @property
    def remote(self) -> tuple[str, int] | None:
        """(address, port) to send RTP to, or None while the peer holds with c=0.0.0.0."""
        return None if self.address is None else (self.address, self.port)

    @property
    def receives(self) -> bool:
        """Whether the peer wants our audio (it has an address and is not sendonly/inactive)."""
        return self.address is not None and self.direction in ("sendrecv", "recvonly")

    def answer_direction(self) -> Direction:
        """Our direction in the answer (RFC 3264 6.1): the offer's mirrored, where a peer that
        cannot receive (c=0.0.0.0) counts as sendonly."""
        direction = self.direction
        if self.address is None and direction == "sendrecv":
            direction = "sendonly"
        elif self.address is None and direction == "recvonly":
            direction = "inactive"
        return MIRROR[direction]


# -------------------------------------------------------------------------------- parsing
def parse(text: str) -> SessionDescription:
    """Parse SDP text (CRLF or LF lines). Raises SdpError if it is not SDP we can read."""
    lines = [line.rstrip("\r") for line in text.split("\n")]
    lines = [line for line in lines if line.strip()]
    if not lines or lines[0].strip() != "v=0":
        raise SdpError("SDP must start with v=0")
    session_c: tuple[str, str | None] | None = None
    session_direction: Direction = "sendrecv"
    timing = "0 0"
    raw_media: list[dict] = []
    for line in lines[1:]:
        kind, sep, value = line.partition("=")
        if not sep or len(kind) != 1:
            raise SdpError(f"not an SDP line: {line[:40]!r}")
        current = raw_media[-1] if raw_media else None
        if kind == "m":
            parts = value.split()
            if len(parts) < 4:
                raise SdpError(f"m= line needs media, port, transport and a format: {value!r}")
            port_text = parts[1].split("/")[0]
            if not port_text.isdigit() or int(port_text) > 65535:
                raise SdpError(f"bad m= port {parts[1]!r}")
            raw_media.append({
                "media": parts[0].lower(), "port": int(port_text), "proto": parts[2].upper(),
                "formats": tuple(parts[3:]), "rtpmap": {}, "fmtp": {}, "direction": None,
                "c": None,
            })  # fmt: skip
        elif kind == "c":
            connection = _connection(value)
            if current is None:
                session_c = connection
            else:
                current["c"] = connection
        elif kind == "t" and current is None:
            timing = value.strip()
        elif kind == "a":
            name, _, attr_value = value.partition(":")
            name = name.strip().lower()
            if name in DIRECTIONS:
                direction: Direction = name
                if current is None:
                    session_direction = direction
                else:
                    current["direction"] = direction
            elif current is not None and name in ("rtpmap", "fmtp"):
                pt_text, _, rest = attr_value.strip().partition(" ")
                if not pt_text.isdigit():
                    continue  # e.g. a=fmtp for a non-RTP format: not ours to read
                if name == "rtpmap":
                    encoding = rest.strip().split("/")
                    if len(encoding) < 2 or not encoding[1].isdigit():
                        raise SdpError(f"bad rtpmap {attr_value!r}")
                    channels = encoding[2] if len(encoding) > 2 else ""
                    current["rtpmap"][int(pt_text)] = (encoding[0], int(encoding[1]), channels)
                else:
                    current["fmtp"][int(pt_text)] = rest.strip()
    media: list[MediaDescription] = []
    for m in raw_media:
        applies: tuple[str, str | None] | None = m["c"] or session_c
        if applies is None and m["port"] != 0:
            raise SdpError(f"no c= line for the {m['media']} stream")
        address_type, address = applies or ("IP4", None)
        media.append(
            MediaDescription(
                media=m["media"],
                port=m["port"],
                proto=m["proto"],
                formats=m["formats"],
                rtpmap=m["rtpmap"],
                fmtp=m["fmtp"],
                direction=m["direction"] or session_direction,
                address=address,
                address_type=address_type,
            )  # fmt: skip
        )
    return SessionDescription(timing=timing, media=tuple(media))


def _connection(value: str) -> tuple[str, str | None]:
    """(address type, address or None for hold) from a c= value; SdpError if unusable."""
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"bad c= line {value!r}")
    address_type, address = parts[1], parts[2].split("/")[0]
    if address in _HELD:
        return address_type, None
    if address_type == "IP4":
        if not ipv4_ok(address):
            raise SdpError(f"c= address {address!r} is not an IPv4 address")
        return address_type, address
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        raise SdpError(f"c= address {address!r} is not an IPv6 address") from None
    return address_type, ip.compressed


# -------------------------------------------------------------------------------- offers
def media_offer(text: str, *, ipv6: bool = False) -> MediaOffer:
    """The audio stream we take from an offer (or an answer to our offer).

    `ipv6`: whether this server has an IPv6 media address. Raises OfferRefused (488, or 400 for
    a body that is not SDP) with a reason that says what the peer would have to change."""
    try:
        session = parse(text)
    except SdpError as exc:
        raise OfferRefused(400, f"Bad Request (SDP: {exc})") from exc
    refusals: list[str] = []
    for index, stream in enumerate(session.media):
        if stream.media != "audio" or stream.port == 0:
            continue
        reason = _unusable(stream, ipv6)
        if reason is not None:
            refusals.append(reason)
            continue
        codecs, dtmf_pt = _codecs(stream)
        return MediaOffer(
            address=stream.address, port=stream.port, codecs=codecs, dtmf_payload_type=dtmf_pt,
            direction=stream.direction, address_type=stream.address_type, proto=stream.proto,
            streams=session.media, index=index, timing=session.timing,
        )  # fmt: skip
    if not refusals:
        raise OfferRefused(488, "Not Acceptable Here (no audio stream offered)")
    return_reason = refusals[0] if len(set(refusals)) == 1 else "; ".join(dict.fromkeys(refusals))
    raise OfferRefused(488, f"Not Acceptable Here ({return_reason})")


def _unusable(stream: MediaDescription, ipv6: bool) -> str | None:
    if stream.proto in SRTP_PROFILES:
        return f"SRTP ({stream.proto}) is not supported, offer RTP/AVP"
    if stream.proto not in RTP_PROFILES:
        return f"transport {stream.proto} is not supported, offer RTP/AVP"
    if stream.address_type == "IP6" and not ipv6:
        return "IPv6 media is not enabled on this server, offer IPv4"
    codecs, _ = _codecs(stream)
    if not any(name.upper() in AUDIO_CODECS for name in codecs.values()):
        return "PCMU or PCMA audio required"
    return None


def _codecs(stream: MediaDescription) -> tuple[dict[int, str], int | None]:
    """Payload type -> encoding name in the peer's order (8 kHz mono only), and the
    telephone-event payload type at 8 kHz. A dynamic type is known by its rtpmap alone."""
    codecs: dict[int, str] = {}
    dtmf_pt = None
    for pt_text in stream.formats:
        if not pt_text.isdigit() or int(pt_text) > 127:
            continue
        pt = int(pt_text)
        rtpmap = stream.rtpmap.get(pt)
        if rtpmap is None:
            name = _STATIC_NAMES.get(pt, "")
        elif rtpmap[1] != 8000 or rtpmap[2] not in ("", "1"):
            continue  # e.g. "PCMU/16000" or a stereo stream is not the G.711 we speak
        else:
            name = rtpmap[0]
        if name.lower() == TELEPHONE_EVENT:
            if dtmf_pt is None:
                dtmf_pt = pt
        elif name:
            codecs[pt] = name
    return codecs, dtmf_pt


# -------------------------------------------------------------------------------- our SDP
def new_session_id() -> str:
    """An o= session id for a new dialog (RFC 4566 5.2: a number unique enough for us)."""
    return str(random.randint(1, 2**30))


def offer(host: str, port: int, session_id: str) -> str:
    """Our offer for an outbound call: PCMU, PCMA and telephone-event on `port` (IPv4)."""
    media = {0: "PCMU", 8: "PCMA", OFFER_DTMF_PAYLOAD_TYPE: TELEPHONE_EVENT}
    lines = _origin(host, session_id, int(session_id)) + ["t=0 0"]
    lines += _audio(port, "RTP/AVP", media, "sendrecv", maxptime=None)
    return "\r\n".join(lines) + "\r\n"


def answer(
    offer: MediaOffer,
    *,
    host: str,
    port: int,
    codec: tuple[str, int],
    session_id: str,
    version: int,
) -> str:
    """Our answer to `offer`: the chosen `codec` (name, payload type) and the peer's
    telephone-event on the audio line we take, every other m= line rejected, in order."""
    media = {codec[1]: codec[0]}
    if offer.dtmf_payload_type is not None:
        media[offer.dtmf_payload_type] = TELEPHONE_EVENT
    lines = _origin(host, session_id, version) + [f"t={offer.timing}"]
    streams = offer.streams or (None,)
    index = offer.index if offer.streams else 0
    for i, stream in enumerate(streams):
        if i == index:
            lines += _audio(
                port, offer.proto, media, offer.answer_direction(), maxptime=ANSWER_MAXPTIME_MS
            )
        else:
            assert stream is not None
            # RFC 3264 6: a rejected stream keeps its media type and transport, port 0 and
            # (as SDP requires) at least one format.
            lines.append(f"m={stream.media} 0 {stream.proto} {stream.formats[0]}")
    return "\r\n".join(lines) + "\r\n"


def _origin(host: str, session_id: str, version: int) -> list[str]:
    family = "IP6" if ":" in host else "IP4"
    return [
        "v=0", f"o=callserver {session_id} {version} IN {family} {host}", "s=callserver",
        f"c=IN {family} {host}",
    ]  # fmt: skip


def _audio(
    port: int, proto: str, media: Mapping[int, str], direction: Direction, *, maxptime: int | None
) -> list[str]:
    lines = [f"m=audio {port} {proto} " + " ".join(map(str, media))]
    for pt, name in media.items():
        lines.append(f"a=rtpmap:{pt} {name}/8000")
        if name == TELEPHONE_EVENT:
            lines.append(f"a=fmtp:{pt} 0-15")
    lines.append(f"a=ptime:{PTIME_MS}")
    if maxptime is not None:
        lines.append(f"a=maxptime:{maxptime}")
    lines.append(f"a={direction}")
    return lines
