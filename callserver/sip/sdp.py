"""SDP (RFC 4566) offer/answer (RFC 3264) as far as a G.711 voice server needs it.

What we speak: one audio stream over RTP/AVP, IPv4, PCMU or PCMA at 8 kHz in 20 ms packets, and
RFC 4733 telephone-event for keys. Invariants:
- an offer we accept names an IPv4 address we can send to and at least one G.711 codec; the
  peer's order of preference decides the codec (`MediaOffer.choose_codec`);
- our answer lists exactly one audio codec (the chosen one), plus telephone-event under the
  peer's own payload type number (sipp uses 96, most phones 101), so both sides agree on it;
- a dialog keeps one session id: the answer to a re-INVITE repeats our o= line unchanged, which
  tells the peer nothing changed (RFC 3264 8; DEFECT 8 in docs/pyvoip-defects.md: pyVoIP
  restarted its media on a re-INVITE);
- our offer (outbound calls) lists PCMU, PCMA and telephone-event 101.
The parsed form read by `media_offer_from` is what callserver/sip/pyvoip_compat.py's parser
produces (`msg.body`); this module builds SDP text itself.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from callserver.sip.sanity import ipv4_ok

AUDIO_CODECS = {"PCMU": 0, "PCMA": 8}
TELEPHONE_EVENT = "telephone-event"
OFFER_DTMF_PAYLOAD_TYPE = 101
PTIME_MS = 20
ANSWER_MAXPTIME_MS = 150  # what our answers have always said (pyVoIP's gen_answer wrote it)
_STATIC_NAMES = {0: "PCMU", 8: "PCMA"}


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

    def codec_name(self, payload_type: int) -> str:
        """The G.711 name the peer gave `payload_type` (one `choose_codec` returned)."""
        name = self.codecs.get(payload_type, "").upper()
        if name in AUDIO_CODECS:
            return name
        return "PCMU" if payload_type == 0 else "PCMA"


def media_offer_from(body: Mapping[str, Any]) -> MediaOffer | None:
    """Extract the audio offer from a parsed SDP body, or None if there is no usable one."""
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
        name = rtpmap["name"] if rtpmap else _STATIC_NAMES.get(pt, "")
        if rtpmap and rtpmap["frequency"] != "8000":
            continue  # e.g. "PCMU/16000" is not the G.711 we speak
        if name.lower() == TELEPHONE_EVENT:
            dtmf_pt = pt
        else:
            codecs[pt] = name
    return MediaOffer(connection["address"], int(m["port"]), codecs, dtmf_pt)


def new_session_id() -> str:
    """An o= session id for a new dialog (RFC 4566 5.2: a number unique enough for us)."""
    return str(random.randint(1, 2**30))


def offer(host: str, port: int, session_id: str) -> str:
    """Our offer for an outbound call: PCMU, PCMA and telephone-event on `port`."""
    media = {0: "PCMU", 8: "PCMA", OFFER_DTMF_PAYLOAD_TYPE: TELEPHONE_EVENT}
    return _session(host, port, media, session_id=session_id)


def answer(
    host: str, port: int, codec: tuple[str, int], dtmf_payload_type: int | None, session_id: str
) -> str:
    """Our answer: the chosen `codec` (name, payload type) and the peer's telephone-event."""
    media = {codec[1]: codec[0]}
    if dtmf_payload_type is not None:
        media[dtmf_payload_type] = TELEPHONE_EVENT
    return _session(host, port, media, session_id=session_id, maxptime=ANSWER_MAXPTIME_MS)


def _session(
    host: str,
    port: int,
    media: Mapping[int, str],
    *,
    session_id: str,
    maxptime: int | None = None,
) -> str:
    # The session version stays the id: the session never changes within a dialog.
    lines = [
        "v=0", f"o=callserver {session_id} {session_id} IN IP4 {host}", "s=callserver",
        f"c=IN IP4 {host}", "t=0 0", f"m=audio {port} RTP/AVP " + " ".join(map(str, media)),
    ]  # fmt: skip
    for pt, name in media.items():
        lines.append(f"a=rtpmap:{pt} {name}/8000")
        if name == TELEPHONE_EVENT:
            lines.append(f"a=fmtp:{pt} 0-15")
    lines.append(f"a=ptime:{PTIME_MS}")
    if maxptime is not None:
        lines.append(f"a=maxptime:{maxptime}")
    lines.append("a=sendrecv")
    return "\r\n".join(lines) + "\r\n"
