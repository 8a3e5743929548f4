"""Offer/answer: which codec we take, what our answers and offers say."""

from __future__ import annotations

from callserver.sip import sdp
from callserver.sip.pyvoip_compat import parse_message
from callserver.sip.sdp import MediaOffer, media_offer_from


def invite_with(body: str) -> bytes:
    return (
        "INVITE sip:100@127.0.0.1:5070 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKs1\r\n"
        "From: <sip:0701234567@127.0.0.1>;tag=a\r\nTo: <sip:100@127.0.0.1>\r\n"
        "Call-ID: sdp1\r\nCSeq: 1 INVITE\r\nContact: <sip:0701234567@127.0.0.1:5060>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def offer_of(
    media: str, *attributes: str, connection: str = "IN IP4 10.0.0.7"
) -> MediaOffer | None:
    body = "\r\n".join(
        ["v=0", "o=x 1 1 IN IP4 10.0.0.7", "s=-", f"c={connection}", "t=0 0", media, *attributes]
    )
    return media_offer_from(parse_message(invite_with(body + "\r\n")).body)


def test_peers_preference_decides_the_codec_and_dtmf_is_found_by_name() -> None:
    offer = offer_of(
        "m=audio 4000 RTP/AVP 9 8 0 96",
        "a=rtpmap:9 G722/8000", "a=rtpmap:8 PCMA/8000", "a=rtpmap:96 telephone-event/8000",
    )  # fmt: skip
    assert offer == MediaOffer("10.0.0.7", 4000, {9: "G722", 8: "PCMA", 0: "PCMU"}, 96)
    assert offer.choose_codec() == ("PCMA", 8)


def test_static_payload_types_need_no_rtpmap_and_wideband_g711_is_not_ours() -> None:
    offer = offer_of("m=audio 4000 RTP/AVP 97 0", "a=rtpmap:97 PCMU/16000")
    assert offer is not None and offer.codecs == {0: "PCMU"} and offer.dtmf_payload_type is None


def test_offer_without_g711_or_ipv4_is_not_usable() -> None:
    no_g711 = offer_of("m=audio 4000 RTP/AVP 9", "a=rtpmap:9 G722/8000")
    assert no_g711 is not None and no_g711.choose_codec() is None
    assert offer_of("m=audio 4000 RTP/AVP 0", connection="IN IP6 ::1") is None
    assert offer_of("m=audio 0 RTP/AVP 0") is None  # a disabled stream


def test_answer_has_one_codec_and_echoes_the_peers_telephone_event_number() -> None:
    text = sdp.answer("127.0.0.1", 30000, ("PCMA", 8), 96, "4711")
    assert text.split("\r\n") == [
        "v=0",
        "o=callserver 4711 4711 IN IP4 127.0.0.1",
        "s=callserver",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        "m=audio 30000 RTP/AVP 8 96",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:96 telephone-event/8000",
        "a=fmtp:96 0-15",
        "a=ptime:20",
        "a=maxptime:150",
        "a=sendrecv",
        "",
    ]


def test_answer_to_a_reinvite_repeats_the_session_unchanged() -> None:
    """DEFECT 8: the same session id gives the same o= line: nothing changed (RFC 3264 8)."""
    first = sdp.answer("127.0.0.1", 30000, ("PCMU", 0), None, "99")
    assert sdp.answer("127.0.0.1", 30000, ("PCMU", 0), None, "99") == first
    assert "telephone-event" not in first


def test_offer_lists_pcmu_pcma_and_telephone_event_101() -> None:
    text = sdp.offer("127.0.0.1", 30002, "5")
    assert "m=audio 30002 RTP/AVP 0 8 101\r\n" in text
    assert "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n" in text
    assert text.endswith("a=ptime:20\r\na=sendrecv\r\n")


def test_dynamic_payload_type_keeps_its_g711_name_in_the_answer() -> None:
    offer = offer_of("m=audio 4000 RTP/AVP 110", "a=rtpmap:110 PCMU/8000")
    assert offer is not None and offer.choose_codec() == ("PCMU", 110)
    assert offer.codec_name(110) == "PCMU"
