"""Bar charts drawn on the server as inline SVG: no script, no external resource (the CSP allows
neither), readable without colour.

Invariants: every chart is an `<svg role="img">` named by its `<title>` and described by its
`<desc>` (which says that the table beside it holds the same numbers), every bar carries its own
`<title>` ("v. 48: 12 samtal") for a pointer or a screen reader, and every text is escaped here,
so a clinic name cannot inject markup. Colours come from presentation attributes (fill), since
the CSP forbids inline styles; series differ by pattern position and legend too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from itertools import count

from markupsafe import Markup

WIDTH = 560
HEIGHT = 250
LEFT = 40
"""Room for the y-axis numbers."""
BOTTOM = 30
"""Room for the period labels."""
TOP = 34
"""Room for the legend."""
RIGHT = 8
FONT_SIZE = 14
"""In viewBox units: about 12 px where two charts share a row of the page."""
MAX_LABELS = 10
"""At most this many period labels under the axis (every n-th when there are more periods)."""
COLOURS = ("#0b5cad", "#b42318", "#1a7f37", "#9a6700")
"""The UI's accent, bad, ok and warn colours, in series order."""

_ids = count(1)


@dataclass(frozen=True)
class Series:
    name: str
    """The legend's word, also the unit in each bar's title ('samtal')."""
    values: Sequence[int]


def nice_ceiling(value: int) -> int:
    """The y-axis top: 1, 2 or 5 times a power of ten, at least `value` (and at least 1)."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude  # not reached: 10 * magnitude > value always


def _text(x: float, y: float, text: str, anchor: str = "middle") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{FONT_SIZE}"'
            f' fill="#1b1f23">{escape(text)}</text>')  # fmt: skip


def bar_chart(title: str, description: str, labels: Sequence[str], series: Sequence[Series]
              ) -> Markup:  # fmt: skip
    """Grouped bars: one group per period (`labels`), one bar per series in each group."""
    for one in series:
        if len(one.values) != len(labels):
            raise ValueError(f"series {one.name!r} has {len(one.values)} values for "
                             f"{len(labels)} periods")  # fmt: skip
    chart_id = f"chart-{next(_ids)}"
    top = nice_ceiling(max((v for one in series for v in one.values), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    base = TOP + plot_h
    group_w = plot_w / max(len(labels), 1)
    bar_w = max(group_w * 0.8 / max(len(series), 1), 1.0)
    every = max(1, math.ceil(len(labels) / MAX_LABELS))
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%"'
        f' preserveAspectRatio="xMidYMid meet" aria-labelledby="{chart_id}-t"'
        f' aria-describedby="{chart_id}-d"'
        f' xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-t">{escape(title)}</title>',
        f'<desc id="{chart_id}-d">{escape(description)}</desc>',
    ]
    for tick in (0, top // 2, top) if top % 2 == 0 else (0, top):
        y = base - plot_h * tick / top
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"'
                     f' stroke="#d0d7de" stroke-width="1"/>')  # fmt: skip
        parts.append(_text(LEFT - 6, y + 5, str(tick), anchor="end"))
    x: float = LEFT
    for index, one in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        parts.append(f'<rect x="{x}" y="8" width="14" height="14" fill="{colour}"/>')
        parts.append(_text(x + 19, 20, one.name, anchor="start"))
        x += 19 + len(one.name) * FONT_SIZE * 0.6 + 16
    for slot, label in enumerate(labels):
        group_x = LEFT + slot * group_w + group_w * 0.1
        for index, one in enumerate(series):
            value = one.values[slot]
            height = plot_h * value / top
            parts.append(
                f'<rect class="bar" data-series="{index}" data-value="{value}"'
                f' x="{group_x + index * bar_w:.1f}" y="{base - height:.1f}"'
                f' width="{bar_w:.1f}" height="{height:.1f}"'
                f' fill="{COLOURS[index % len(COLOURS)]}">'
                f"<title>{escape(label)}: {value} {escape(one.name.lower())}</title></rect>"
            )
        if slot % every == 0:
            parts.append(_text(LEFT + slot * group_w + group_w / 2, base + 20, label))
    parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{base}" y2="{base}"'
                 ' stroke="#57606a" stroke-width="1"/>')  # fmt: skip
    parts.append("</svg>")
    return Markup("".join(parts))
