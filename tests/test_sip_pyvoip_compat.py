"""The patches to pyVoIP's parser hold (unit level; the real-peer proofs are in
test_sip_malformed.py, test_sip_options.py and test_sip_dial.py). That nothing but
pyvoip_compat.py imports pyVoIP is checked in test_architecture.py."""

from __future__ import annotations

import pytest

from callserver.sip.pyvoip_compat import (
    body_of,
    challenge_params,
    content_type,
    is_response,
    parse_message,
    response_vias,
)
from callserver.sip.sdp import media_offer


def request(method: str, *headers: str, body: str = "") -> bytes:
    return (
        f"{method} sip:100@127.0.0.1:5070 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKp1;rport, "
        "SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKp0;received=10.0.0.2\r\n"
        "f: <sip:0701234567@127.0.0.1>;tag=a\r\nTo: <sip:100@127.0.0.1>\r\n"
        f"i: c1\r\nCSeq: 1 {method}\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n" + body
    ).encode()


def test_empty_header_does_not_break_the_parser() -> None:
    """DEFECT 2: `Supported:` (baresip 1.0) made pyVoIP drop the INVITE."""
    msg = parse_message(request("INVITE", "Supported:", "Contact: <sip:a@127.0.0.1>"))
    assert msg.headers["Supported"] == [""]
    assert msg.headers["From"]["tag"] == "a" and msg.headers["Call-ID"] == "c1"


def test_rtpmap_for_a_payload_type_not_offered_is_ignored() -> None:
    """DEFECT 2: an `a=rtpmap` for a payload type missing from m= made pyVoIP drop the INVITE."""
    sdp = (
        "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    msg = parse_message(
        request("INVITE", "Content-Type: application/sdp", f"Content-Length: {len(sdp)}", body=sdp)
    )
    offer = media_offer(body_of(msg).decode())
    assert offer.codecs == {0: "PCMU"} and offer.dtmf_payload_type is None


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("application/sdp", "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
         "t=0 0\r\nm=audio 4000 RTP/AVPF 0\r\n"),  # RTPProtocol("RTP/AVPF"): ValueError
        ("text/plain", "Hello\r\nthis is not SDP\r\n"),  # a line without "=": IndexError
        ("application/sdp", "v=0\r\n\r\n\r\no=x 1 1 IN IP4 127.0.0.1\r\n"),  # a blank line
    ],
)  # fmt: skip
def test_bodies_never_break_the_parser(kind: str, body: str) -> None:
    """DEFECT 14: pyVoIP's body parser dropped these messages; it sees no bodies now."""
    msg = parse_message(
        request("INVITE", f"Content-Type: {kind}", f"Content-Length: {len(body)}", body=body)
    )
    assert body_of(msg) == body.encode() and content_type(msg) == kind


@pytest.mark.parametrize("method", ["OPTIONS", "INFO", "SUBSCRIBE"])
def test_every_standard_method_is_parsed_so_it_can_be_answered(method: str) -> None:
    """DEFECT 7: pyVoIP refused to parse anything but INVITE/ACK/BYE/CANCEL."""
    msg = parse_message(request(method))
    assert msg.method == method and not is_response(msg)


@pytest.mark.parametrize(
    "junk",
    [b"", b"\xff\xfe garbage", b"INVITE sip:x SIP/2.0\r\n\r\n", request("BOGUS")],
)
def test_any_parse_failure_is_a_value_error(junk: bytes) -> None:
    """DEFECT 13: pyVoIP raises many kinds of exception on junk; we raise one."""
    with pytest.raises(ValueError):
        parse_message(junk)


def test_response_vias_repeat_the_requests_vias_in_order() -> None:
    msg = parse_message(request("OPTIONS"))
    assert response_vias(msg) == [
        "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKp1;rport",
        "SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKp0;received=10.0.0.2",
    ]


def response(code: int, *headers: str) -> bytes:
    return (
        f"SIP/2.0 {code} Auth\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKr\r\n"
        "From: <sip:callserver@127.0.0.1>;tag=a\r\nTo: <sip:0701@127.0.0.1>;tag=b\r\n"
        f"Call-ID: r1\r\nCSeq: 2 INVITE\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("code", "header"), [(401, "WWW-Authenticate"), (407, "Proxy-Authenticate")]
)
def test_challenge_is_read_from_401_and_407_alike(code: int, header: str) -> None:
    """DEFECT 5: pyVoIP parsed only WWW-Authenticate; a 407's challenge must be read too."""
    msg = parse_message(response(code, f'{header}: Digest realm="clinic.test", nonce="n47"'))
    assert is_response(msg)
    params = challenge_params(msg)
    assert params["realm"] == "clinic.test" and params["nonce"] == "n47"
