#!/usr/bin/env python3
"""Per-stream RTP send-gap statistics from a loopback pcap (EN10MB): streams keyed by source port.

Usage: rtp_gaps.py FILE.pcap PORT_LOW PORT_HIGH  (capture e.g. with
  tcpdump -i lo -s 64 -w out.pcap "udp and src portrange 30000-31999"). Prints one JSON line.
Only packets from ports in [lo, hi] (the server's RTP range) are counted.

Copied from the team's /work/shared/tools/rtp_gaps.py; changes: laid out for ruff, importable
(`gap_stats`), and per-stream p99 figures added (`stream_p99_*`: the p99 send gap of each stream,
then the median and the worst of those), the moments when many streams were late together
(`stalls`), and where in its stream the largest gap ended
(`max_gap_at_s`, seconds after the stream's first packet), next to the original pooled
figures (all streams' gaps together), which are unchanged. The server gives each call its own
even RTP port and does not reuse a port while the range has unused ones, so one source port is
one call.
"""

from __future__ import annotations

import datetime as dt
import json
import struct
import sys
from collections import defaultdict
from typing import Any


def _pct(values: list[float], p: float) -> float | None:
    """The same nearest-rank style percentile as the original tool (values sorted)."""
    if not values:
        return None
    return round(values[min(len(values) - 1, int(p / 100 * len(values)))], 2)


def _stalls(times: dict[int, list[float]], over_ms: float = 40.0) -> list[dict[str, Any]]:
    """Moments when many streams were late together (the sending loop stalled, not one call):
    gaps over `over_ms` grouped by the 100 ms in which they ended; the 10 with most streams."""
    moments: dict[int, list[float]] = defaultdict(list)
    for stream in times.values():
        for a, b in zip(stream, stream[1:], strict=False):
            if (b - a) * 1000 > over_ms:
                moments[int(b * 10)].append((b - a) * 1000)
    top = sorted(moments.items(), key=lambda item: (-len(item[1]), item[0]))[:10]
    return [
        {
            "utc": dt.datetime.fromtimestamp(slot / 10, dt.UTC).strftime("%H:%M:%S.%f")[:-5],
            "streams": len(late),
            "max_ms": round(max(late), 1),
        }
        for slot, late in sorted(top)
    ]


def gap_stats(path: str, lo: int, hi: int) -> dict[str, Any]:
    times: dict[int, list[float]] = defaultdict(list)
    seqs: dict[int, list[int]] = defaultdict(list)
    with open(path, "rb") as f:
        gh = f.read(24)
        magic = struct.unpack("<I", gh[:4])[0]
        nano = magic == 0xA1B23C4D
        linktype = struct.unpack("<I", gh[20:24])[0]
        off = 14 if linktype == 1 else (16 if linktype == 113 else 4)
        while True:
            h = f.read(16)
            if len(h) < 16:
                break
            ts, tu, incl, _orig = struct.unpack("<IIII", h)
            data = f.read(incl)
            ip = data[off:]
            if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
                continue
            ihl = (ip[0] & 15) * 4
            sport, _dport = struct.unpack(">HH", ip[ihl : ihl + 4])
            if not (lo <= sport <= hi):
                continue
            rtp = ip[ihl + 8 :]
            if len(rtp) < 12:
                continue
            t = ts + tu / (1e9 if nano else 1e6)
            times[sport].append(t)
            seqs[sport].append(struct.unpack(">H", rtp[2:4])[0])
    gaps: list[float] = []
    worst: list[float] = []
    stream_p99: list[float] = []
    max_gap_at = (0.0, 0.0)  # (gap ms, s after its stream's first packet)
    for stream in times.values():
        g = [(b - a) * 1000 for a, b in zip(stream, stream[1:], strict=False)]
        gaps.extend(g)
        if g:
            worst.append(max(g))
            stream_p99.append(_pct(sorted(g), 99) or 0.0)
            i = g.index(worst[-1])
            if worst[-1] > max_gap_at[0]:
                max_gap_at = (worst[-1], stream[i + 1] - stream[0])
    stalls = _stalls(times)
    gaps.sort()
    stream_p99.sort()
    return {
        "streams": len(times),
        "packets": sum(len(v) for v in times.values()),
        "gap_p50_ms": _pct(gaps, 50),
        "gap_p99_ms": _pct(gaps, 99),
        "gap_p999_ms": _pct(gaps, 99.9),
        "gap_max_ms": round(gaps[-1], 2) if gaps else None,
        "gaps_over_40ms": sum(1 for x in gaps if x > 40),
        "streams_with_gap_over_100ms": sum(1 for w in worst if w > 100),
        "stream_p99_median_ms": _pct(stream_p99, 50),
        "stream_p99_worst_ms": round(stream_p99[-1], 2) if stream_p99 else None,
        "max_gap_at_s": round(max_gap_at[1], 2),
        "stalls": stalls,
    }


if __name__ == "__main__":
    print(json.dumps(gap_stats(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
