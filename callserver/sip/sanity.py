"""Is a SIP request well-formed enough to act on? (RFC 3261 / RFC 4566 grammar, the parts we use)

DEFECT 13 of pyVoIP (docs/pyvoip-defects.md): it rings, answers and records INVITEs that are
plainly malformed (PROTOS c07-sip: 2,515 rang, 305 were answered) and echoes the sender's junk
back in responses. Every request is checked here before the engine does anything with it, like
Kamailio's `sanity` module but as strict as a voicemail server can afford to be. Pure text
checks: no pyVoIP in here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
_HOST = rf"(?:\[[0-9A-Fa-f:.]+\]|{_LABEL}(?:\.{_LABEL})*\.?)"
_QUOTED = r'"(?:[^"\\\x00-\x1f\x7f]|\\[^\x00-\x1f\x7f])*"'
_PARAM = rf"[ \t]*;[ \t]*{_TOKEN}(?:[ \t]*=[ \t]*(?:{_TOKEN}|{_HOST}|{_QUOTED}))?"
_URI_RE = re.compile(
    rf"(?P<scheme>sips?):(?:(?P<user>[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+)(?::[^@\s]*)?@)?"
    rf"(?P<host>{_HOST})(?::(?P<port>\d{{1,5}}))?"
    r"(?P<params>(?:;[A-Za-z0-9\-_.!~*'()%\[\]/:&+$]+(?:=[A-Za-z0-9\-_.!~*'()%\[\]/:&+$]*)?)*)"
    r"(?:\?[A-Za-z0-9\-_.!~*'()%\[\]/:&+$=?]*)?",
)
# display-name: a quoted string or tokens; non-ASCII letters are allowed unquoted because phones
# send `From: Åsa Öberg <sip:...>` although the grammar wants quotes.
_DISPLAY = rf"(?:{_QUOTED}|(?:[A-Za-z0-9\-.!%*_+`'~ \t]|[^\x00-\x7f])*)"
_NAME_ADDR_RE = re.compile(rf"{_DISPLAY}[ \t]*<(?P<uri>[^<>\s]+)>(?P<params>(?:{_PARAM})*)[ \t]*")
_ADDR_SPEC_RE = re.compile(rf"(?P<uri>[^<>;\s\"]+)(?P<params>(?:{_PARAM})*)[ \t]*")
_VIA_RE = re.compile(
    rf"SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*(?:UDP|TCP|TLS|SCTP|WSS?)[ \t]+(?P<host>{_HOST})"
    rf"(?:[ \t]*:[ \t]*(?P<port>\d{{1,5}}))?(?P<params>(?:{_PARAM})*)[ \t]*",
    re.IGNORECASE,
)
_CALL_ID_RE = re.compile(rf"{_WORD}(?:@{_WORD})?")
_CSEQ_RE = re.compile(r"(\d{1,10})[ \t]+([A-Za-z]+)")
_HEADER_NAME_RE = re.compile(_TOKEN)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_IPV4_RE = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})")
_SDP_LINE_RE = re.compile(r"([a-z])=([^\x00-\x08\x0a-\x1f\x7f]*)")
_SDP_RES = {
    "v": re.compile(r"0"),
    "o": re.compile(r"\S+ \d{1,20} \d{1,20} IN IP[46] \S+"),
    "s": re.compile(r".*"),
    "c": re.compile(r"IN IP[46] \S+"),
    "t": re.compile(r"\d{1,20} \d{1,20}"),
    "m": re.compile(r"[a-z]+ (\d{1,5})(?:/\d{1,5})? [A-Za-z0-9/]+((?: \S+)+)"),
    "a": re.compile(r"[A-Za-z0-9\-_.]+(?::.*)?"),
}
_RTPMAP_RE = re.compile(r"rtpmap:(\d{1,3}) [A-Za-z0-9\-_.]+/(\d{1,6})(?:/\d{1,2})?")
MAX_CALL_ID = 255  # the call table's sip_call_id column
MAX_NUMBER = 64  # the call table's caller/called columns
SINGLE_HEADERS = ("From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length", "Expires")
_CANONICAL = {
    "v": "Via", "f": "From", "t": "To", "i": "Call-ID", "m": "Contact", "l": "Content-Length",
    "c": "Content-Type", "call-id": "Call-ID", "cseq": "CSeq", "via": "Via", "from": "From",
    "to": "To", "contact": "Contact", "content-length": "Content-Length",
    "content-type": "Content-Type", "max-forwards": "Max-Forwards", "expires": "Expires",
    "record-route": "Record-Route", "route": "Route",
}  # fmt: skip


@dataclass(frozen=True)
class Malformed:
    """Why a request was refused: `code` 0 means drop it silently (its headers are not safe to
    echo back in a response), otherwise answer with `code`."""

    code: int
    reason: str


def ipv4_ok(text: str) -> bool:
    match = _IPV4_RE.fullmatch(text)
    return match is not None and all(int(part) <= 255 for part in match.groups())


def _host_ok(host: str) -> bool:
    # A host made of digits and dots must be a real IPv4 address ("10.10.10.4095" is not).
    if re.fullmatch(r"[\d.]+", host):
        return ipv4_ok(host.rstrip("."))
    return len(host) <= 255


def _port_ok(port: str | None) -> bool:
    return port is None or 0 < int(port) <= 65535


def _sip_uri_ok(uri: str) -> re.Match[str] | None:
    match = _URI_RE.fullmatch(uri)
    if match and _host_ok(match["host"]) and _port_ok(match["port"]):
        return match
    return None


def _address_ok(value: str, *, need_tag: bool = False) -> bool:
    """A From/To/Contact value: name-addr or addr-spec with a sip(s) URI and sane parameters."""
    match = _NAME_ADDR_RE.fullmatch(value) or _ADDR_SPEC_RE.fullmatch(value)
    if not match or not _sip_uri_ok(match["uri"]):
        return False
    if need_tag:
        return bool(re.search(rf";[ \t]*tag[ \t]*=[ \t]*{_TOKEN}", match["params"]))
    return True


def headers_of(head: str) -> dict[str, list[str]] | Malformed:
    headers: dict[str, list[str]] = {}
    for line in head.split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not _HEADER_NAME_RE.fullmatch(name):
            return Malformed(0, f"bad header line {line[:30]!r}")
        name = _CANONICAL.get(name.lower(), name)
        values = headers.setdefault(name, [])
        if name in ("Via", "Contact", "Record-Route", "Route"):
            values.extend(v.strip() for v in value.split(","))
        else:
            values.append(value.strip())
    return headers


def check_request(raw: bytes) -> Malformed | None:
    """None if the request is well-formed enough to act on, else why not."""
    head_raw, _, body_raw = raw.partition(b"\r\n\r\n")
    try:
        head = head_raw.decode("utf-8")
    except UnicodeDecodeError:
        return Malformed(0, "header not UTF-8")
    if _CONTROL_RE.search(head.replace("\r\n", "")):
        return Malformed(0, "control character in header")
    request_line = head.split("\r\n", 1)[0]
    parts = request_line.split(" ")
    if len(parts) != 3 or not re.fullmatch(r"[A-Z]+", parts[0]) or parts[2] != "SIP/2.0":
        return Malformed(0, "bad request line")
    method, uri = parts[0], parts[1]
    uri_match = _sip_uri_ok(uri)
    if not uri_match:
        return Malformed(0, "bad Request-URI")
    headers = headers_of(head)
    if isinstance(headers, Malformed):
        return headers
    for name in SINGLE_HEADERS:
        if len(headers.get(name, [])) > 1:
            return Malformed(0, f"{name} header repeated")
    vias = headers.get("Via", [])
    for via in vias:
        match = _VIA_RE.fullmatch(via)
        if not match or not _host_ok(match["host"]) or not _port_ok(match["port"]):
            return Malformed(0, "bad Via")
    if not vias:
        return Malformed(0, "no Via")
    if not _address_ok(headers.get("From", [""])[0], need_tag=True):
        return Malformed(0, "bad From")
    if not _address_ok(headers.get("To", [""])[0]):
        return Malformed(0, "bad To")
    call_id = headers.get("Call-ID", [""])[0]
    if not _CALL_ID_RE.fullmatch(call_id) or len(call_id) > MAX_CALL_ID:
        return Malformed(0, "bad Call-ID")
    cseq = _CSEQ_RE.fullmatch(headers.get("CSeq", [""])[0])
    if not cseq or int(cseq[1]) >= 2**31 or cseq[2] != method:
        return Malformed(0, "bad CSeq")
    # From here on the headers we echo are sane: answer with an error instead of dropping.
    for name in ("Max-Forwards", "Content-Length", "Expires"):
        value = headers.get(name, ["0"])[0]
        if not re.fullmatch(r"\d{1,10}", value):
            return Malformed(400, f"Bad Request ({name})")
    if int(headers.get("Max-Forwards", ["70"])[0]) > 255:
        return Malformed(400, "Bad Request (Max-Forwards)")
    if "Content-Length" in headers and int(headers["Content-Length"][0]) != len(body_raw):
        return Malformed(400, "Bad Request (Content-Length)")
    if method != "INVITE":
        return None
    if headers.get("Max-Forwards", ["70"])[0] == "0":
        return Malformed(483, "Too Many Hops")
    contacts = headers.get("Contact", [])
    if len(contacts) != 1 or not _address_ok(contacts[0]):
        return Malformed(400, "Bad Request (Contact)")
    from_uri = _URI_RE.search(headers["From"][0])
    if len(uri_match["user"] or "") > MAX_NUMBER or (
        from_uri and len(from_uri["user"] or "") > MAX_NUMBER
    ):
        return Malformed(400, "Bad Request (number too long)")
    kind = headers.get("Content-Type", ["application/sdp"])[0].split(";")[0].strip().lower()
    # Another body type is not ours to check: the engine answers it 415.
    return _check_sdp(body_raw) if body_raw and kind == "application/sdp" else None


def _check_sdp(body_raw: bytes) -> Malformed | None:
    try:
        body = body_raw.decode("utf-8")
    except UnicodeDecodeError:
        return Malformed(400, "Bad Request (SDP not UTF-8)")
    lines = body.split("\r\n")
    if lines and lines[-1] == "":
        lines.pop()
    seen: set[str] = set()
    for number, line in enumerate(lines):
        match = _SDP_LINE_RE.fullmatch(line)
        if not match or (number == 0) != (match[1] == "v"):
            return Malformed(400, "Bad Request (SDP line)")
        kind, value = match[1], match[2]
        seen.add(kind)
        pattern = _SDP_RES.get(kind)
        fields = pattern.fullmatch(value) if pattern is not None else None
        if pattern is not None and fields is None:
            return Malformed(400, f"Bad Request (SDP {kind}=)")
        if kind == "c" and value.startswith("IN IP4 ") and not ipv4_ok(value[7:].split("/")[0]):
            return Malformed(400, "Bad Request (SDP c= address)")
        if kind == "m" and fields is not None:
            port, formats = fields.groups()
            if int(port) > 65535:
                return Malformed(400, "Bad Request (SDP m= port)")
            if "RTP/AVP" in value and not all(
                f.isdigit() and int(f) <= 127 for f in formats.split()
            ):
                return Malformed(400, "Bad Request (SDP m= formats)")
        if kind == "a" and value.startswith("rtpmap:"):
            rtpmap = _RTPMAP_RE.fullmatch(value)
            if not rtpmap or int(rtpmap[1]) > 127:
                return Malformed(400, "Bad Request (SDP rtpmap)")
    if not {"v", "o", "s", "t", "m"} <= seen:
        return Malformed(400, "Bad Request (SDP incomplete)")
    return None
