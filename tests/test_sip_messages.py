"""Every request we send comes from one builder; these pin its bytes (the order and content the
hand-written templates had) and check that our own messages pass our own grammar check."""

from __future__ import annotations

import pytest

from callserver.sip.messages import ALLOW, USER_AGENT, build_request, build_response, new_branch
from callserver.sip.pyvoip_compat import parse_message
from callserver.sip.sanity import check_request

VIA = ("127.0.0.1", 5070, "z9hG4bKtest")
OURS = "<sip:100@127.0.0.1>;tag=ours"
THEIRS = "<sip:0701234567@127.0.0.1>;tag=theirs"
CONTACT = "<sip:callserver@127.0.0.1:5070>"
ROUTES = ["<sip:near.invalid;lr>", "<sip:far.invalid;lr>"]


def text(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_in_dialog_bye_has_our_via_the_route_set_and_our_contact() -> None:
    bye = build_request(
        "BYE", "sip:0701234567@127.0.0.1:5062", via=VIA, routes=ROUTES, from_=OURS, to=THEIRS,
        call_id="c1@host", cseq=12, contact=CONTACT,
    )  # fmt: skip
    assert bye == text(
        "BYE sip:0701234567@127.0.0.1:5062 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKtest;rport",
        "Route: <sip:near.invalid;lr>",
        "Route: <sip:far.invalid;lr>",
        "Max-Forwards: 70",
        f"From: {OURS}",
        f"To: {THEIRS}",
        "Call-ID: c1@host",
        "CSeq: 12 BYE",
        f"Contact: {CONTACT}",
        f"User-Agent: {USER_AGENT}",
        "Content-Length: 0",
    )


def test_ack_carries_the_responses_cseq_number_and_no_contact() -> None:
    ack = build_request(
        "ACK", "sip:callee@127.0.0.1:5062", via=VIA, routes=ROUTES[:1], from_=OURS, to=THEIRS,
        call_id="c1@host", cseq="7",
    )  # fmt: skip
    assert ack == text(
        "ACK sip:callee@127.0.0.1:5062 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKtest;rport",
        "Route: <sip:near.invalid;lr>",
        "Max-Forwards: 70",
        f"From: {OURS}",
        f"To: {THEIRS}",
        "Call-ID: c1@host",
        "CSeq: 7 ACK",
        f"User-Agent: {USER_AGENT}",
        "Content-Length: 0",
    )


def test_invite_has_allow_credentials_and_a_counted_sdp_body() -> None:
    body = "v=0\r\ns=å\r\n".encode()  # a non-ASCII byte: Content-Length counts bytes
    auth = 'Proxy-Authorization: Digest username="callserver"'
    invite = build_request(
        "INVITE", "sip:0701234567@127.0.0.1:5060", via=VIA, from_=OURS,
        to="<sip:0701234567@127.0.0.1>", call_id="c2@host", cseq=3, contact=CONTACT,
        extra_headers=[auth], body=body, content_type="application/sdp",
    )  # fmt: skip
    assert (
        invite
        == text(
            "INVITE sip:0701234567@127.0.0.1:5060 SIP/2.0",
            "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKtest;rport",
            "Max-Forwards: 70",
            f"From: {OURS}",
            "To: <sip:0701234567@127.0.0.1>",
            "Call-ID: c2@host",
            "CSeq: 3 INVITE",
            f"Contact: {CONTACT}",
            f"Allow: {ALLOW}",
            f"User-Agent: {USER_AGENT}",
            auth,
            "Content-Type: application/sdp",
            f"Content-Length: {len(body)}",
        )
        + body
    )
    assert len(body) == len("v=0\r\ns=å\r\n") + 1


def test_cancel_repeats_the_invites_uri_branch_and_cseq_number() -> None:
    cancel = build_request(
        "CANCEL", "sip:0701234567@127.0.0.1:5060", via=VIA, from_=OURS,
        to="<sip:0701234567@127.0.0.1>", call_id="c2@host", cseq=3,
    )  # fmt: skip
    assert cancel == text(
        "CANCEL sip:0701234567@127.0.0.1:5060 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKtest;rport",
        "Max-Forwards: 70",
        f"From: {OURS}",
        "To: <sip:0701234567@127.0.0.1>",
        "Call-ID: c2@host",
        "CSeq: 3 CANCEL",
        f"User-Agent: {USER_AGENT}",
        "Content-Length: 0",
    )


def test_register_asks_for_expires_before_allow_and_carries_credentials_last() -> None:
    aor = "<sip:callserver@127.0.0.1>"
    register = build_request(
        "REGISTER", "sip:127.0.0.1:5060", via=VIA, from_=f"{aor};tag=reg", to=aor,
        call_id="r1@host", cseq=42, contact=CONTACT, expires=300,
        extra_headers=['Authorization: Digest username="callserver"'],
    )  # fmt: skip
    assert register == text(
        "REGISTER sip:127.0.0.1:5060 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKtest;rport",
        "Max-Forwards: 70",
        f"From: {aor};tag=reg",
        f"To: {aor}",
        "Call-ID: r1@host",
        "CSeq: 42 REGISTER",
        f"Contact: {CONTACT}",
        "Expires: 300",
        f"Allow: {ALLOW}",
        f"User-Agent: {USER_AGENT}",
        'Authorization: Digest username="callserver"',
        "Content-Length: 0",
    )


def test_response_echoes_vias_record_routes_and_cseq_then_describes_us() -> None:
    vias = ["SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKp1;rport=5060", "SIP/2.0/UDP 10.0.0.9:5062"]
    ok = build_response(
        200, "OK", vias=vias, record_routes=ROUTES, from_=THEIRS, to=OURS, call_id="c3",
        cseq="1 INVITE", contact=CONTACT, body=b"v=0\r\n", content_type="application/sdp",
    )  # fmt: skip
    assert (
        ok
        == text(
            "SIP/2.0 200 OK",
            f"Via: {vias[0]}",
            f"Via: {vias[1]}",
            "Record-Route: <sip:near.invalid;lr>",
            "Record-Route: <sip:far.invalid;lr>",
            f"From: {THEIRS}",
            f"To: {OURS}",
            "Call-ID: c3",
            "CSeq: 1 INVITE",
            f"Contact: {CONTACT}",
            f"User-Agent: {USER_AGENT}",
            f"Allow: {ALLOW}",
            "Content-Type: application/sdp",
            "Content-Length: 5",
        )
        + b"v=0\r\n"
    )


def test_options_answer_lists_extra_headers_after_allow() -> None:
    ok = build_response(
        200, "OK", vias=["SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKo"], from_=THEIRS, to=OURS,
        call_id="o1", cseq="5 OPTIONS", extra_headers=["Accept: application/sdp"],
    )  # fmt: skip
    lines = ok.decode().split("\r\n")
    assert lines[-5:] == [f"Allow: {ALLOW}", "Accept: application/sdp", "Content-Length: 0", "", ""]
    assert not any(line.startswith("Contact:") for line in lines)


@pytest.mark.parametrize("method", ["INVITE", "BYE", "ACK", "CANCEL", "REGISTER", "OPTIONS"])
def test_our_requests_pass_our_own_grammar_check_and_parser(method: str) -> None:
    body = b""
    if method == "INVITE":
        body = b"v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    data = build_request(
        method, "sip:0701234567@127.0.0.1:5060", via=("127.0.0.1", 5070, new_branch()),
        routes=ROUTES, from_=OURS, to=THEIRS, call_id="c4@host", cseq=9, contact=CONTACT,
        body=body, content_type="application/sdp" if body else None,
    )  # fmt: skip
    assert check_request(data) is None
    msg = parse_message(data)
    assert msg.method == method
    assert msg.headers["CSeq"] == {"check": "9", "method": method}
    assert msg.headers["Via"][0]["branch"].startswith("z9hG4bK")
