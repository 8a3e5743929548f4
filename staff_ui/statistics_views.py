"""The statistics page and its CSV file: per clinic, per local day or ISO week, for managers.

Both take the same query (`by`=day|week, `from`, `to` as YYYY-MM-DD local dates, optional
`clinic`) and show the same figures (staff_ui.statistics_queries, in a worker thread). The
figures are counts, not patient data, so nothing is access-logged; who sees which clinic's
figures is `Viewer.sees_statistics_of`. A clinic the viewer may not see and one that does not
exist get the same 404. The CSV is one row per clinic and period under a header row, every cell
made safe for spreadsheets (a leading = + - @ is quoted away).
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from aiohttp import web
from yarl import URL

from staff_ui import statistics_queries
from staff_ui.charts import Series, bar_chart
from staff_ui.context import (
    CLOCK,
    MONTH_NAMES,
    SESSION_FACTORY,
    TIMEZONE,
    WEEKDAY_NAMES,
    render,
    viewer_of,
)
from staff_ui.statistics_queries import GRAINS, MAX_DAYS, Figures, Grain, Period, Statistics

DEFAULT_WEEKS = 4
"""Without dates: the current ISO week and the three before it, up to today."""
GRAIN_LABELS = {"day": "dag", "week": "vecka"}
NO_CLINIC = (
    "Statistiken visar era mottagningars siffror, men ditt konto hör inte till någon "
    "mottagning. Be en administratör koppla kontot till er mottagning."
)
NOT_FOUND = "Mottagningen finns inte eller så saknar du behörighet."
CSV_COLUMNS = (
    "mottagning",
    "mottagningsnamn",
    "period",
    "från",
    "till",
    "samtal",
    "utanför_telefontid",
    "röstmeddelanden",
    "bekräftade",
    "avvisade",
    "vidarebefordrade",
    "inom_tidsfrist",
    "andel_inom_tidsfrist",
    "median_handläggningstid_h",
    "återuppringningar_bokade",
    "återuppringningar_klara",
    "återuppringningar_missade",
)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a cell as a formula (CSV injection, OWASP)."""


@dataclass(frozen=True)
class StatisticsQuery:
    first: date
    last: date
    grain: Grain
    clinic_id: str | None

    def params(self) -> dict[str, str]:
        params = {"by": self.grain, "from": self.first.isoformat(), "to": self.last.isoformat()}
        if self.clinic_id:
            params["clinic"] = self.clinic_id
        return params


def default_range(today: date) -> tuple[date, date]:
    """Monday of the week three weeks before today's, to today."""
    monday = today - timedelta(days=today.weekday())
    return monday - timedelta(weeks=DEFAULT_WEEKS - 1), today


def parse_query(query: Mapping[str, str], today: date) -> StatisticsQuery | str:
    """The page's or the file's query, or what is wrong with it (Swedish, for the form)."""
    grain_text = query.get("by", "day")
    grain: Grain = "week" if grain_text == "week" else "day"
    default_first, default_last = default_range(today)
    dates: list[date] = []
    for name, fallback in (("from", default_first), ("to", default_last)):
        text = query.get(name, "").strip()
        if not text:
            dates.append(fallback)
            continue
        try:
            dates.append(date.fromisoformat(text))
        except ValueError:
            return f"Datumet ”{text[:20]}” går inte att tolka: skriv det som ÅÅÅÅ-MM-DD."
    first, last = dates
    if first > last:
        return "Från-datumet är efter till-datumet: byt plats på dem."
    if (last - first).days + 1 > MAX_DAYS:
        return f"Välj högst {MAX_DAYS} dagar åt gången."
    clinic = query.get("clinic", "").strip() or None
    return StatisticsQuery(first, last, grain, clinic)


def period_label(period: Period) -> str:
    """'mån 2 nov 2026' for a day, 'v. 45, 2–8 nov 2026' for an ISO week (the table's)."""
    first, last = period.first, period.last
    if period.grain == "day":
        weekday = WEEKDAY_NAMES[first.weekday()][:3]
        return f"{weekday} {first.day} {MONTH_NAMES[first.month - 1][:3]} {first.year}"
    week = first.isocalendar()[1]
    if first.month == last.month:
        days = f"{first.day}–{last.day} {MONTH_NAMES[last.month - 1][:3]}"
    else:
        days = (f"{first.day} {MONTH_NAMES[first.month - 1][:3]}–{last.day} "
                f"{MONTH_NAMES[last.month - 1][:3]}")  # fmt: skip
    return f"v. {week}, {days} {last.year}"


def short_label(period: Period) -> str:
    """'2/11' for a day, 'v. 45' for a week (under a chart's bars)."""
    if period.grain == "day":
        return f"{period.first.day}/{period.first.month}"
    return f"v. {period.first.isocalendar()[1]}"


def handle_time(seconds: int | None) -> str:
    """26 h 15 min as '26,3 h', under an hour as '45 min', none as '–'."""
    if seconds is None:
        return "–"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h".replace(".", ",")


def share(value: float | None) -> str:
    """0.75 as '75 %' (Swedish puts a space before the sign), none as '–'."""
    return "–" if value is None else f"{round(value * 100)} %"


def _charts(stats: Statistics, grain: Grain) -> dict[str, list[Any]]:
    """Three charts per clinic: calls, decisions, callbacks, one bar group per period."""
    labels = [short_label(period) for period in stats.periods]
    per = "dag" if grain == "day" else "vecka"
    table = "Samma siffror finns i tabellen under diagrammen."
    charts: dict[str, list[Any]] = {}
    for clinic in stats.clinics:
        figures = clinic.periods

        def series(name: str, attribute: str, rows: list[Figures] = figures) -> Series:
            return Series(name, [getattr(row, attribute) for row in rows])

        charts[clinic.clinic_id] = [
            bar_chart(
                f"Samtal och röstmeddelanden per {per}, {clinic.name}",
                f"Staplar per {per}: samtal, samtal utanför telefontid och röstmeddelanden. "
                + table,
                labels,
                [
                    series("Samtal", "calls"),
                    series("Utanför telefontid", "outside_hours"),
                    series("Röstmeddelanden", "voicemails"),
                ],
            ),  # fmt: skip
            bar_chart(
                f"Hanterade avbokningar per {per}, {clinic.name}",
                f"Staplar per {per}: bekräftade, avvisade och vidarebefordrade avbokningar. "
                + table,
                labels,
                [
                    series("Bekräftade", "confirmed"),
                    series("Avvisade", "rejected"),
                    series("Vidarebefordrade", "forwarded"),
                ],
            ),  # fmt: skip
            bar_chart(
                f"Återuppringningar per {per} (efter bokad tid), {clinic.name}",
                f"Staplar per {per}: bokade, klara och missade återuppringningar. " + table,
                labels,
                [
                    series("Bokade", "callbacks_booked"),
                    series("Klara", "callbacks_done"),
                    series("Missade", "callbacks_missed"),
                ],
            ),  # fmt: skip
        ]
    return charts


def _today(request: web.Request) -> date:
    return request.app[CLOCK]().astimezone(request.app[TIMEZONE]).date()


async def _error(request: web.Request, message: str, status: int) -> web.Response:
    title = {403: "Åtkomst nekad", 404: "Hittades inte"}.get(status, "Felaktig begäran")
    return await render(
        request, "error.html", {"title": title, "message": message, "nav": "statistics"},
        status=status,
    )  # fmt: skip


async def _load(request: web.Request) -> tuple[StatisticsQuery, Statistics] | web.Response:
    """The query and its figures, or the error page that explains what is wrong."""
    viewer = viewer_of(request)
    if not viewer.sees_statistics:
        return await _error(request, NO_CLINIC, 403)
    parsed = parse_query(request.query, _today(request))
    if isinstance(parsed, str):
        return await _page(request, None, None, error=parsed, status=400)
    stats = await asyncio.to_thread(
        statistics_queries.statistics, request.app[SESSION_FACTORY], viewer, parsed.first,
        parsed.last, parsed.grain, request.app[TIMEZONE], parsed.clinic_id,
    )  # fmt: skip
    if stats is None:
        return await _error(request, NOT_FOUND, 404)
    return parsed, stats


async def _page(
    request: web.Request,
    parsed: StatisticsQuery | None,
    stats: Statistics | None,
    *,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    choices = await asyncio.to_thread(
        statistics_queries.visible_clinics, request.app[SESSION_FACTORY], viewer_of(request)
    )
    shown = parsed or StatisticsQuery(*default_range(_today(request)), "day", None)
    form = {
        "by": request.query.get("by", shown.grain),
        "from": request.query.get("from", shown.first.isoformat()),
        "to": request.query.get("to", shown.last.isoformat()),
        "clinic": request.query.get("clinic", shown.clinic_id or ""),
    }
    return await render(
        request,
        "statistics.html",
        {
            "nav": "statistics",
            "error": error,
            "form": form,
            "choices": choices,
            "grains": GRAINS,
            "grain_labels": GRAIN_LABELS,
            "stats": stats,
            "query": parsed,
            "charts": _charts(stats, shown.grain) if stats is not None else {},
            "csv_url": str(URL("/statistics.csv").with_query(shown.params())),
            "period_label": period_label,
            "handle_time": handle_time,
            "share": share,
        },
        status=status,
    )


async def statistics_page(request: web.Request) -> web.Response:
    loaded = await _load(request)
    if isinstance(loaded, web.Response):
        return loaded
    parsed, stats = loaded
    return await _page(request, parsed, stats)


def _safe_cell(value: object) -> str:
    """A cell a spreadsheet shows as text: a formula start gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_text(stats: Statistics) -> str:
    """One row per clinic and period, under a header row (UTF-8 with a BOM, added by the
    caller, so that Excel reads å, ä and ö)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for clinic in stats.clinics:
        for period, row in zip(stats.periods, clinic.periods, strict=True):
            ratio = row.share_within_deadline
            median = row.median_handle_s
            cells: list[object] = [
                clinic.clinic_id, clinic.name, period.key, period.first.isoformat(),
                period.last.isoformat(), row.calls, row.outside_hours, row.voicemails,
                row.confirmed, row.rejected, row.forwarded, row.within_deadline,
                "" if ratio is None else f"{ratio:.3f}",
                "" if median is None else f"{median / 3600:.2f}",
                row.callbacks_booked, row.callbacks_done, row.callbacks_missed,
            ]  # fmt: skip
            writer.writerow([_safe_cell(cell) for cell in cells])
    return out.getvalue()


def csv_filename(parsed: StatisticsQuery) -> str:
    """'statistik-dag-2026-11-02-2026-11-29.csv' (and the clinic id, letters and digits only)."""
    parts = ["statistik", GRAIN_LABELS[parsed.grain], parsed.first.isoformat(),
             parsed.last.isoformat()]  # fmt: skip
    if parsed.clinic_id:
        parts.insert(1, re.sub(r"[^A-Za-z0-9_-]", "_", parsed.clinic_id)[:40])
    return "-".join(parts) + ".csv"


async def statistics_csv(request: web.Request) -> web.Response:
    loaded = await _load(request)
    if isinstance(loaded, web.Response):
        return loaded
    parsed, stats = loaded
    return web.Response(
        body=("\ufeff" + csv_text(stats)).encode("utf-8"),
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{csv_filename(parsed)}"',
        },
    )
