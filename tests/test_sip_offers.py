"""Offers real phones and PBXs send get a proper answer: accepted where we can serve the audio,
every other m= line rejected in place (RFC 3264), 488 with a true reason or 415 otherwise; and
what we answer is what goes on the wire (DEFECT 14 in docs/pyvoip-defects.md: pyVoIP's body
parser dropped several of these INVITEs without any answer)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from callserver.prompts import PromptLibrary
from config.settings import SettingsError, load_settings
from tests.support.audio import xcorr_peak
from tests.support.database import call_rows
from tests.support.ports import free_port
from tests.support.rtp import decoded, rtp_ports
from tests.support.server import ServerProcess
from tests.support.sipp import Sipp, SippMessage, received_responses, scenario_copy, sipp_messages
from tests.support.tools import require

# One `sip_server` (tests/conftest.py) for the module: the callers take its trusted peer port
# one after another.
pytestmark = [pytest.mark.peer, require("sipp", package="sip-tester")]

RATE = 50  # RTP packets per second


def sdp(*media: str, connection: str = "IN IP4 127.0.0.1") -> str:
    return "\n".join(
        ["v=0", "o=patient 53655765 1 IN IP4 127.0.0.1", "s=-", f"c={connection}", "t=0 0", *media]
    )


def run(server: ServerProcess, scenario: Path) -> list[SippMessage]:
    sipp = Sipp(scenario, remote=f"127.0.0.1:{server.sip_port}", local_port=server.peer_port)
    code, output = sipp.start().wait(timeout=60)
    assert code == 0, f"sipp failed ({code}):\n{output[-4000:]}\n--- server\n{server.log()[-4000:]}"
    return sipp_messages(scenario.parent, scenario)


def answered(
    server: ServerProcess, tmp: Path, name: str, body: str, *, talk_s: float = 2.5
) -> SippMessage:
    """Place a call with this offer, expecting 200; returns the server's 200 OK."""
    scenario = scenario_copy(
        "offer_answered_uac.xml", tmp, offer_name=name, content_type="application/sdp",
        body=body, talk_ms=int(talk_s * 1000),
    )  # fmt: skip
    messages = run(server, scenario)
    return next(
        m for m in messages
        if m.direction == "received" and m.first_line.startswith("SIP/2.0 200")
        and m.header("CSeq") == "1 INVITE"
    )  # fmt: skip


def refused(
    server: ServerProcess, tmp: Path, name: str, body: str, expected: int,
    content_type: str = "application/sdp",
) -> SippMessage:  # fmt: skip
    """Place a call with this offer, expecting the final response `expected` at once."""
    scenario = scenario_copy(
        "offer_refused_uac.xml", tmp, offer_name=name, content_type=content_type, body=body,
        expected=expected,
    )  # fmt: skip
    calls_before = len(call_rows(server))
    messages = run(server, scenario)
    assert [r for r in received_responses(tmp, scenario) if r[0] >= 200] == [(expected, "INVITE")]
    assert len(call_rows(server)) == calls_before, "a refused offer started a call"
    return next(m for m in messages if m.first_line.startswith(f"SIP/2.0 {expected}"))


def m_lines(answer: SippMessage) -> list[str]:
    return re.findall(r"^m=.*?(?=\s*$)", answer.text, re.MULTILINE)


def test_avpf_audio_is_accepted_as_avpf_and_media_flows(
    sip_server: ServerProcess, tmp_path: Path
) -> None:
    """RTP/AVPF was dropped unanswered; it is answered in its own profile (see sdp.py for why
    not as RTP/AVP and not 488), without feedback, and RTP flows."""
    with rtp_ports(1) as (media,):
        body = sdp(f"m=audio {media.port} RTP/AVPF 0 8", "a=rtcp-fb:* nack")
        answer = answered(sip_server, tmp_path, "AVPF", body)
    assert m_lines(answer) == [f"m=audio {audio_port(answer)} RTP/AVPF 0"]
    assert "rtcp-fb" not in answer.text
    assert len(media.arrivals) >= RATE, f"{len(media.arrivals)} RTP packets in 2.5 s"


@pytest.mark.parametrize("video_proto", ["RTP/AVP", "RTP/AVPF"])
def test_video_line_before_audio_is_rejected_in_place_and_audio_answered(
    sip_server: ServerProcess, tmp_path: Path, video_proto: str
) -> None:
    """The answer has one m= line per offered line, in order: video rejected with port 0 (at
    HEAD the answer had the audio line alone, or, with AVPF video, no answer at all)."""
    with rtp_ports(2) as (video, audio):
        body = sdp(
            f"m=video {video.port} {video_proto} 96", "a=rtpmap:96 VP8/90000",
            f"m=audio {audio.port} RTP/AVP 96 0 8", "a=rtpmap:96 opus/48000/2",
        )  # fmt: skip
        answer = answered(sip_server, tmp_path, "video first", body)
    assert m_lines(answer) == [
        f"m=video 0 {video_proto} 96", f"m=audio {audio_port(answer)} RTP/AVP 0"
    ]  # fmt: skip
    assert len(audio.arrivals) >= RATE and video.arrivals == []


def test_srtp_offer_gets_488_not_plain_rtp(sip_server: ServerProcess, tmp_path: Path) -> None:
    body = sdp(
        "m=audio 40000 RTP/SAVP 0",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
    )
    response = refused(sip_server, tmp_path, "SAVP", body, 488)
    assert "SRTP (RTP/SAVP) is not supported" in response.first_line


@pytest.mark.parametrize("video", [False, True], ids=["audio-only", "video-also-96"])
def test_pcmu_on_dynamic_payload_type_96_is_answered_and_sent_as_pcmu(
    sip_server: ServerProcess, tmp_path: Path, prompt_library: PromptLibrary, video: bool
) -> None:
    """The answer names PCMU on 96, the packets carry PT 96, and their payload is μ-law: it
    decodes (as μ-law) to the welcome prompt. Payload types are per m= line: a video line that
    also uses 96 (for VP8) does not change the audio's (pyVoIP filed VP8 under the audio line
    and the call was refused with 488)."""
    with rtp_ports(1) as (media,):
        body = sdp(
            f"m=audio {media.port} RTP/AVP 96 101", "a=rtpmap:96 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            *(["m=video 9078 RTP/AVP 96", "a=rtpmap:96 VP8/90000"] if video else []),
        )  # fmt: skip
        answer = answered(sip_server, tmp_path, "PCMU on 96", body, talk_s=3.0)
    assert "a=rtpmap:96 PCMU/8000" in answer.text and "PCMA" not in answer.text
    assert {a.payload_type for a in media.arrivals} == {96}
    welcome = decoded_prompt(prompt_library, "welcome")
    heard = media.arrivals[: 2 * RATE]
    as_ulaw, as_alaw = (
        xcorr_peak(welcome, decoded(heard, "PCMU")),
        xcorr_peak(welcome, decoded(heard, "PCMA")),
    )
    print(f"PCMU on 96: welcome prompt correlates {as_ulaw:.3f} decoded as PCMU, "
          f"{as_alaw:.3f} as PCMA")  # fmt: skip
    assert as_ulaw > 0.9, (as_ulaw, as_alaw)


def test_non_sdp_body_gets_415(sip_server: ServerProcess, tmp_path: Path) -> None:
    response = refused(
        sip_server, tmp_path, "text/plain", "Hello, this is not SDP", 415, "text/plain"
    )
    assert response.header("Accept") == "application/sdp"


def test_hold_address_in_the_first_offer_gets_no_rtp(
    sip_server: ServerProcess, tmp_path: Path
) -> None:
    """c=0.0.0.0 (RFC 2543 hold): answered (recvonly), and nothing is sent to it."""
    with rtp_ports(1) as (media,):
        body = sdp(f"m=audio {media.port} RTP/AVP 0", connection="IN IP4 0.0.0.0")
        answer = answered(sip_server, tmp_path, "c=0.0.0.0", body)
    print(f"c=0.0.0.0: {len(media.arrivals)} RTP packets at its port in 2.5 s")
    assert re.search(r"^a=recvonly\s*$", answer.text, re.MULTILINE), answer.text
    assert media.arrivals == [], f"{len(media.arrivals)} RTP packets sent to a held caller"


LINPHONE_IPV6 = (
    "m=audio {port} RTP/AVP 96 97 98 0 8 18 99 100 101", "a=rtpmap:96 opus/48000/2",
    "a=fmtp:96 useinbandfec=1", "a=rtpmap:97 speex/16000", "a=rtpmap:98 speex/8000",
    "a=fmtp:18 annexb=yes", "a=rtpmap:99 telephone-event/48000",
    "a=rtpmap:100 telephone-event/16000", "a=rtpmap:101 telephone-event/8000",
)  # fmt: skip
"""Linphone's audio offer on a dual-stack machine (the c= line is IPv6)."""


def test_ipv6_offer_without_ipv6_media_gets_488_with_the_true_reason(
    sip_server: ServerProcess, tmp_path: Path
) -> None:
    body = sdp(*LINPHONE_IPV6, connection="IN IP6 fd00::2").replace("{port}", "7078")
    response = refused(sip_server, tmp_path, "IPv6", body, 488)
    assert "IPv6 media is not enabled" in response.first_line, response.first_line
    assert "PCMU or PCMA" not in response.first_line


def test_ipv6_offer_is_answered_on_ipv6_media(tmp_path: Path, server_factory) -> None:
    """With sip.media_host_ipv6 the answer names it and RTP flows over IPv6."""
    with rtp_ports(1, host="::1") as (media,):
        server = server_factory(
            peer_port=free_port(), extra_env={"CALLSERVER_SIP_MEDIA_HOST_IPV6": "::1"}
        ).start()
        body = sdp(*LINPHONE_IPV6, connection="IN IP6 ::1").replace("{port}", str(media.port))
        answer = answered(server, tmp_path, "IPv6", body)
    assert re.search(r"^c=IN IP6 ::1\s*$", answer.text, re.MULTILINE), answer.text
    assert m_lines(answer) == [f"m=audio {audio_port(answer)} RTP/AVP 0 101"]
    sources = {a.source[0] for a in media.arrivals}
    print(f"IPv6: {len(media.arrivals)} RTP packets from {sources} in 2.5 s")
    assert len(media.arrivals) >= RATE and sources == {"::1"}


@pytest.mark.parametrize("value", ["fd42::1", "2001:db8::5", "::1", ""])
def test_media_host_ipv6_accepts_an_ipv6_address_or_nothing(tmp_path: Path, value: str) -> None:
    (tmp_path / "empty.toml").write_text("")
    environ = {"CALLSERVER_SIP_MEDIA_HOST_IPV6": value}
    settings = load_settings(tmp_path / "empty.toml", environ)
    assert settings.sip.media_host_ipv6 == value


@pytest.mark.parametrize("value", ["127.0.0.1", "fe80::1", "::", "ff02::1", "::ffff:10.0.0.1", "x"])
def test_media_host_ipv6_refuses_what_media_cannot_use(tmp_path: Path, value: str) -> None:
    (tmp_path / "empty.toml").write_text("")
    with pytest.raises(SettingsError, match="sip.media_host_ipv6"):
        load_settings(tmp_path / "empty.toml", {"CALLSERVER_SIP_MEDIA_HOST_IPV6": value})


def audio_port(answer: SippMessage) -> int:
    match = re.search(r"^m=audio (\d+) ", answer.text, re.MULTILINE)
    assert match, answer.text
    return int(match.group(1))


def decoded_prompt(prompts: PromptLibrary, name: str) -> np.ndarray:
    return np.frombuffer(prompts.get(name, "sv", "demo"), dtype="<i2").astype(np.float64)
