"""HTTP digest authentication as SIP uses it (RFC 3261 22.4, RFC 2617 without qop).

We answer a registrar's 401 (REGISTER) and a proxy's 401/407 (outbound INVITE) once; a second
challenge means the credentials are wrong, and the engine says so instead of retrying. Only
MD5 without qop is implemented (RFC 2069 style, which Kamailio's auth module accepts when it
challenges without qop, as in tests/test_sip_registered.py); `qop=auth`, `auth-int` and
SHA-256 (RFC 8760) are not. Pure functions, no sockets or parser, so the arithmetic is
unit-tested against known values.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

_PARAM_RE = re.compile(r'(\w+)=("[^"]*"|[^,\s]+)')


def parse_challenge(value: str) -> dict[str, str]:
    """The parameters of a `Digest realm="x", nonce="y", ...` challenge, quotes removed."""
    return {key: val.strip('"') for key, val in _PARAM_RE.findall(value)}


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def response_digest(
    *, username: str, realm: str, password: str, method: str, uri: str, nonce: str
) -> str:
    """MD5(HA1:nonce:HA2) with HA1 = MD5(username:realm:password), HA2 = MD5(method:uri)."""
    ha1 = _md5(f"{username}:{realm}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    return _md5(f"{ha1}:{nonce}:{ha2}")


def authorization(
    challenge: Mapping[str, str],
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    code: int,
) -> str:
    """The header line (without CRLF) that answers `challenge` from a `code` (401 or 407).

    A 401 (WWW-Authenticate) is answered with Authorization, a 407 (Proxy-Authenticate) with
    Proxy-Authorization; `uri` must be the Request-URI of the request that carries it."""
    realm, nonce = challenge.get("realm", ""), challenge.get("nonce", "")
    response = response_digest(
        username=username, realm=realm, password=password, method=method, uri=uri, nonce=nonce
    )
    name = "Authorization" if code == 401 else "Proxy-Authorization"
    return (
        f'{name}: Digest username="{username}",realm="{realm}",nonce="{nonce}",'
        f'uri="{uri}",response="{response}",algorithm=MD5'
    )
