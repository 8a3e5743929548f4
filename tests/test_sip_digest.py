"""Digest answers to 401/407 (RFC 2617 without qop), checked against published values."""

from __future__ import annotations

import hashlib

from callserver.sip.digest import authorization, parse_challenge, response_digest

# RFC 2617 section 3.5's example. Its published intermediate values are HA1 =
# 939e7578ed9e3c518a452acee763bce9 and HA2 = 39aff3a2bab6126f332b942af96d3366 (its response,
# 6629fae4..., uses qop=auth, which we do not; without qop the response is MD5(HA1:nonce:HA2)).
RFC_EXAMPLE = {
    "username": "Mufasa",
    "realm": "testrealm@host.com",
    "password": "Circle Of Life",
    "method": "GET",
    "uri": "/dir/index.html",
    "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
}
HA1 = "939e7578ed9e3c518a452acee763bce9"
HA2 = "39aff3a2bab6126f332b942af96d3366"


def test_response_matches_the_rfc_2617_example_without_qop() -> None:
    expected = hashlib.md5(f"{HA1}:{RFC_EXAMPLE['nonce']}:{HA2}".encode()).hexdigest()
    assert response_digest(**RFC_EXAMPLE) == expected == "670fd8c2df070c60b045671b8b24ff02"


def test_401_is_answered_with_an_authorization_line() -> None:
    challenge = {"realm": "testrealm@host.com", "nonce": RFC_EXAMPLE["nonce"]}
    line = authorization(
        challenge, username="Mufasa", password="Circle Of Life", method="GET",
        uri="/dir/index.html", code=401,
    )  # fmt: skip
    assert line == (
        'Authorization: Digest username="Mufasa",realm="testrealm@host.com",'
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",uri="/dir/index.html",'
        'response="670fd8c2df070c60b045671b8b24ff02",algorithm=MD5'
    )


def test_407_is_answered_with_proxy_authorization_for_the_request_uri() -> None:
    challenge = parse_challenge('Digest realm="clinic.test", nonce="nonce4711", algorithm=MD5')
    uri = "sip:0701234567@127.0.0.1:5060"
    line = authorization(
        challenge, username="callserver", password="hemligt-4711", method="INVITE", uri=uri,
        code=407,
    )  # fmt: skip
    name, _, value = line.partition(": ")
    assert name == "Proxy-Authorization" and value.startswith("Digest ")
    fields = parse_challenge(value)
    expected = response_digest(
        username="callserver", realm="clinic.test", password="hemligt-4711", method="INVITE",
        uri=uri, nonce="nonce4711",
    )  # fmt: skip
    assert fields == {
        "username": "callserver",
        "realm": "clinic.test",
        "nonce": "nonce4711",
        "uri": uri,
        "response": expected,
        "algorithm": "MD5",
    }


def test_challenge_parameters_lose_their_quotes() -> None:
    params = parse_challenge('Digest realm="a b", nonce="x=y", opaque=abc, stale=FALSE')
    assert params == {"realm": "a b", "nonce": "x=y", "opaque": "abc", "stale": "FALSE"}


def test_missing_realm_or_nonce_is_answered_with_empty_values() -> None:
    line = authorization({}, username="u", password="p", method="REGISTER", uri="sip:x", code=401)
    assert 'realm="",nonce=""' in line
