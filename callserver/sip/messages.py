"""The one place SIP messages are written: `build_request` for everything we send, and
`build_response` for every answer.

pyVoIP's generators were the source of several defects (a new To-tag in every ACK, DEFECT 4;
the peer's Via copied into our BYE; its own Allow list without OPTIONS, DEFECT 7), so none of
them is used. Invariants every message built here keeps:
- our requests carry exactly one Via, ours, with `rport` (RFC 3581), because responses must
  find their way back through NAT and proxies; the branch is the caller's choice since an ACK
  for a non-2xx and a CANCEL must reuse the INVITE's (RFC 3261 17.1.1.3, 9.1);
- the CSeq method is the request's method (RFC 3261 8.1.1.5);
- Route headers come right after Via, in route-set order (RFC 3261 12.2.1.1);
- Allow is advertised on INVITE and REGISTER and on every response, so peers and health probes
  know we take OPTIONS and INFO;
- User-Agent names us and pyVoIP; Content-Length is always computed from the body.
Header order is otherwise the same for every message, so captures are easy to compare.
"""

from __future__ import annotations

import random
import string
from collections.abc import Sequence

from callserver.sip.pyvoip_compat import PYVOIP_VERSION

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE"
USER_AGENT = f"callserver (pyVoIP {PYVOIP_VERSION})"
MAX_FORWARDS = 70
_ALLOW_ON = {"INVITE", "REGISTER"}  # requests that set something up (RFC 3261 20.5)


def random_token(n: int = 10) -> str:
    """A random tag/Call-ID part: lowercase letters and digits (a SIP token)."""
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=n))


def new_branch() -> str:
    """A branch for a new client transaction, with RFC 3261's magic cookie."""
    return "z9hG4bK" + random_token(16)


def build_request(
    method: str,
    uri: str,
    *,
    via: tuple[str, int, str],
    from_: str,
    to: str,
    call_id: str,
    cseq: int | str,
    routes: Sequence[str] = (),
    contact: str | None = None,
    expires: int | None = None,
    extra_headers: Sequence[str] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> bytes:
    """A request from us: `via` is (host, port, branch); `from_`/`to` are full header values
    (with their tags); `extra_headers` are whole lines such as an Authorization."""
    host, port, branch = via
    lines = [f"{method} {uri} SIP/2.0", f"Via: SIP/2.0/UDP {host}:{port};branch={branch};rport"]
    lines += [f"Route: {route}" for route in routes]
    lines += [
        f"Max-Forwards: {MAX_FORWARDS}",
        f"From: {from_}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
    ]
    if contact is not None:
        lines.append(f"Contact: {contact}")
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if method in _ALLOW_ON:
        lines.append(f"Allow: {ALLOW}")
    lines.append(f"User-Agent: {USER_AGENT}")
    lines += extra_headers
    return _with_body(lines, body, content_type)


def build_response(
    code: int,
    reason: str,
    *,
    vias: Sequence[str],
    from_: str,
    to: str,
    call_id: str,
    cseq: str,
    record_routes: Sequence[str] = (),
    contact: str | None = None,
    extra_headers: Sequence[str] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> bytes:
    """A response: `vias` and `cseq` ("1 INVITE") are the request's, echoed (RFC 3261 8.2.6.2);
    `record_routes` are echoed in dialog-creating responses so a proxy stays in the path."""
    lines = [f"SIP/2.0 {code} {reason}"]
    lines += [f"Via: {via}" for via in vias]
    lines += [f"Record-Route: {route}" for route in record_routes]
    lines += [f"From: {from_}", f"To: {to}", f"Call-ID: {call_id}", f"CSeq: {cseq}"]
    if contact is not None:
        lines.append(f"Contact: {contact}")
    lines += [f"User-Agent: {USER_AGENT}", f"Allow: {ALLOW}"]
    lines += extra_headers
    return _with_body(lines, body, content_type)


def _with_body(lines: list[str], body: bytes, content_type: str | None) -> bytes:
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
