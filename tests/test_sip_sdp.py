"""Offer/answer: which stream and codec we take, what our answers and offers say (unit level;
the real-peer proofs are in test_sip_offers.py and test_sip_reinvite.py)."""

from __future__ import annotations

import pytest

from callserver.sip import sdp
from callserver.sip.sdp import MediaOffer, OfferRefused, media_offer


def body(*media: str, connection: str = "IN IP4 10.0.0.7") -> str:
    lines = ["v=0", "o=x 1 1 IN IP4 10.0.0.7", "s=-", f"c={connection}", "t=0 0", *media]
    return "\r\n".join(lines) + "\r\n"


def offer_of(media: str, *attributes: str, connection: str = "IN IP4 10.0.0.7") -> MediaOffer:
    return media_offer(body(media, *attributes, connection=connection))


def refusal(text: str, *, ipv6: bool = False) -> OfferRefused:
    with pytest.raises(OfferRefused) as info:
        media_offer(text, ipv6=ipv6)
    return info.value


def test_peers_preference_decides_the_codec_and_dtmf_is_found_by_name() -> None:
    offer = offer_of(
        "m=audio 4000 RTP/AVP 9 8 0 96",
        "a=rtpmap:9 G722/8000", "a=rtpmap:8 PCMA/8000", "a=rtpmap:96 telephone-event/8000",
    )  # fmt: skip
    assert (offer.address, offer.port) == ("10.0.0.7", 4000)
    assert offer.codecs == {9: "G722", 8: "PCMA", 0: "PCMU"} and offer.dtmf_payload_type == 96
    assert offer.choose_codec() == ("PCMA", 8)
    assert offer.direction == "sendrecv" and offer.address_type == "IP4"


def test_static_payload_types_need_no_rtpmap_and_wideband_g711_is_not_ours() -> None:
    offer = offer_of("m=audio 4000 RTP/AVP 97 0", "a=rtpmap:97 PCMU/16000")
    assert offer.codecs == {0: "PCMU"} and offer.dtmf_payload_type is None


def test_dynamic_payload_type_is_known_by_its_rtpmap_name() -> None:
    """PCMU on 96 is PCMU: the answer and the wire must both say so."""
    offer = offer_of("m=audio 4000 RTP/AVP 96 101", "a=rtpmap:96 PCMU/8000",
                     "a=rtpmap:101 telephone-event/8000")  # fmt: skip
    assert offer.choose_codec() == ("PCMU", 96)
    assert offer.codec_name(96) == "PCMU"
    text = sdp.answer(offer, host="127.0.0.1", port=30000, codec=("PCMU", 96),
                      session_id="7", version=7)  # fmt: skip
    assert "m=audio 30000 RTP/AVP 96 101\r\na=rtpmap:96 PCMU/8000\r\n" in text


def test_telephone_event_at_8000_is_the_one_taken() -> None:
    """Linphone lists telephone-event at 48000, 16000 and 8000 Hz."""
    offer = offer_of(
        "m=audio 4000 RTP/AVP 96 0 8 99 100 101", "a=rtpmap:96 opus/48000/2",
        "a=rtpmap:99 telephone-event/48000", "a=rtpmap:100 telephone-event/16000",
        "a=rtpmap:101 telephone-event/8000",
    )  # fmt: skip
    assert offer.choose_codec() == ("PCMU", 0) and offer.dtmf_payload_type == 101


def test_offer_without_g711_says_so() -> None:
    refused = refusal(body("m=audio 4000 RTP/AVP 9", "a=rtpmap:9 G722/8000"))
    assert (refused.code, refused.reason) == (
        488, "Not Acceptable Here (PCMU or PCMA audio required)"
    )  # fmt: skip


def test_disabled_or_missing_audio_is_refused() -> None:
    assert "no audio stream" in refusal(body("m=audio 0 RTP/AVP 0")).reason
    assert "no audio stream" in refusal(body("m=video 4000 RTP/AVP 96")).reason


def test_srtp_is_refused_not_answered_as_plain_rtp() -> None:
    refused = refusal(body("m=audio 4000 RTP/SAVP 0", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 x"))
    assert refused.code == 488 and "SRTP (RTP/SAVP) is not supported" in refused.reason


def test_plain_audio_next_to_an_srtp_line_is_taken() -> None:
    offer = offer_of("m=audio 4000 RTP/SAVP 0", "m=audio 4002 RTP/AVP 0")
    assert offer.index == 1 and offer.port == 4002
    text = sdp.answer(offer, host="127.0.0.1", port=30000, codec=("PCMU", 0),
                      session_id="1", version=1)  # fmt: skip
    media = [line for line in text.split("\r\n") if line.startswith("m=")]
    assert media == ["m=audio 0 RTP/SAVP 0", "m=audio 30000 RTP/AVP 0"]


def test_ipv6_media_is_refused_with_the_true_reason_unless_configured() -> None:
    text = body("m=audio 7078 RTP/AVP 96 0 8", "a=rtpmap:96 opus/48000/2",
                connection="IN IP6 fd00::2")  # fmt: skip
    refused = refusal(text)
    assert refused.code == 488 and "IPv6 media is not enabled" in refused.reason
    offer = media_offer(text, ipv6=True)
    assert (offer.address, offer.address_type, offer.choose_codec()) == (
        "fd00::2", "IP6", ("PCMU", 0)
    )  # fmt: skip
    answer = sdp.answer(offer, host="fd42::1", port=30000, codec=("PCMU", 0),
                        session_id="1", version=1)  # fmt: skip
    assert "o=callserver 1 1 IN IP6 fd42::1\r\n" in answer and "c=IN IP6 fd42::1\r\n" in answer


def test_video_line_first_is_rejected_in_place_and_audio_accepted() -> None:
    text = body(
        "m=video 9078 RTP/AVP 96", "a=rtpmap:96 VP8/90000",
        "m=audio 4000 RTP/AVP 96 0", "a=rtpmap:96 opus/48000/2",
    )  # fmt: skip
    offer = media_offer(text)
    assert offer.index == 1 and offer.codecs == {0: "PCMU"}, "VP8's rtpmap leaked into audio"
    answer = sdp.answer(offer, host="127.0.0.1", port=30000, codec=("PCMU", 0),
                        session_id="1", version=1)  # fmt: skip
    media = [line for line in answer.split("\r\n") if line.startswith("m=")]
    assert media == ["m=video 0 RTP/AVP 96", "m=audio 30000 RTP/AVP 0"]


def test_avpf_is_accepted_as_avpf_without_feedback() -> None:
    """RFC 3264 lets an answer accept or reject a stream, not change its transport."""
    offer = offer_of("m=audio 4000 RTP/AVPF 0", "a=rtcp-fb:* nack")
    answer = sdp.answer(offer, host="127.0.0.1", port=30000, codec=("PCMU", 0),
                        session_id="1", version=1)  # fmt: skip
    assert "m=audio 30000 RTP/AVPF 0\r\n" in answer and "rtcp-fb" not in answer


@pytest.mark.parametrize(
    ("attribute", "connection", "peer", "ours"),
    [
        ("", "IN IP4 10.0.0.7", "sendrecv", "sendrecv"),
        ("a=sendonly", "IN IP4 10.0.0.7", "sendonly", "recvonly"),
        ("a=recvonly", "IN IP4 10.0.0.7", "recvonly", "sendonly"),
        ("a=inactive", "IN IP4 10.0.0.7", "inactive", "inactive"),
        ("", "IN IP4 0.0.0.0", "sendrecv", "recvonly"),  # RFC 2543 hold
    ],
)
def test_direction_is_read_and_mirrored(
    attribute: str, connection: str, peer: str, ours: str
) -> None:
    attributes = (attribute,) if attribute else ()
    offer = offer_of("m=audio 4000 RTP/AVP 0", *attributes, connection=connection)
    assert offer.direction == peer
    assert offer.answer_direction() == ours
    if connection.endswith("0.0.0.0"):
        assert offer.address is None and offer.remote is None and not offer.receives


def test_session_level_direction_and_media_level_connection_apply() -> None:
    text = "\r\n".join([
        "v=0", "o=x 1 1 IN IP4 10.0.0.7", "s=-", "c=IN IP4 10.0.0.7", "t=0 0", "a=sendonly",
        "m=audio 4000 RTP/AVP 8", "c=IN IP4 10.0.0.9",
    ]) + "\r\n"  # fmt: skip
    offer = media_offer(text)
    assert (offer.address, offer.direction) == ("10.0.0.9", "sendonly")


def test_answer_has_one_codec_and_echoes_the_peers_telephone_event_number() -> None:
    offer = offer_of("m=audio 4000 RTP/AVP 8 96", "a=rtpmap:96 telephone-event/8000")
    text = sdp.answer(offer, host="127.0.0.1", port=30000, codec=("PCMA", 8),
                      session_id="4711", version=4711)  # fmt: skip
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


def test_offer_lists_pcmu_pcma_and_telephone_event_101() -> None:
    text = sdp.offer("127.0.0.1", 30002, "5")
    assert "m=audio 30002 RTP/AVP 0 8 101\r\n" in text
    assert "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n" in text
    assert text.endswith("a=ptime:20\r\na=sendrecv\r\n")


def test_not_sdp_is_a_400() -> None:
    assert refusal("hello, this is not SDP\r\n").code == 400
    assert refusal(body("m=audio 4000 RTP/AVP 0", connection="IN IP4 host.invalid")).code == 400
