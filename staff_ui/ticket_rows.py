"""The work queue's table rows as HTML, built in Python, and how long that HTML stays true.

The rows were a Jinja loop with a dozen calls per cell (2–2.7 ms for 50 rows, the largest part
of a page's CPU); the same markup built here with markupsafe.escape costs a fraction of that,
and the result can be kept with the page (staff_ui/page_cache.py) because it depends on the
rows and on the clock only.

Invariants, and why:
- Every text from the database is escaped (markupsafe.escape): a caller's name or a forwarding
  note with markup in it renders as text, exactly as the template's autoescape did.
- The markup is the template's (tickets.html had it inline): the same classes, data attributes
  and Swedish labels, so the browser tests and the page's stylesheet see no difference.
- `valid_until` is the first moment at which any row's marks change by the clock alone (a
  deadline day starts, a deadline passes, a claim runs out); from `rendered_at` to then, the
  HTML is what rendering afresh would give. Changes of the data are the page cache's business.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from config.calendar import deadline_day, deadline_state
from staff_ui.context import (
    INTENT_LABELS,
    STATUS_LABELS,
    WEEKDAY_NAMES,
    duration,
    local_time,
    queue_place,
)
from staff_ui.ticket_claims import Claim
from staff_ui.ticket_queries import TicketRow

FAR_FUTURE = dt.datetime.max.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class RenderedRows:
    html: Markup
    rendered_at: dt.datetime
    valid_until: dt.datetime

    def holds_at(self, now: dt.datetime) -> bool:
        return self.rendered_at <= now < self.valid_until


def _day_start(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)


def marks_change_at(
    rows: Sequence[TicketRow], now: dt.datetime, zone: ZoneInfo, claim_expiry: dt.timedelta
) -> dt.datetime:
    """The first moment after `now` at which what the list shows of `rows` changes by the clock
    alone: an open ticket's deadline day starts or its deadline passes, a live claim runs out
    (FAR_FUTURE when none will). The HTML rows and the API's list both keep what they built
    until then (the data's changes are the page cache's business)."""
    changes: list[dt.datetime] = []
    for row in rows:
        if row.status == "new":
            starts = _day_start(deadline_day(row.due_at, zone), zone)
            if now < starts:
                changes.append(starts)
            elif now < row.due_at:
                changes.append(row.due_at)
        if row.claim is not None and row.claim.is_live(now, claim_expiry):
            changes.append(row.claim.active_at + claim_expiry)
    return min(changes, default=FAR_FUTURE)


def render_rows(
    rows: Sequence[TicketRow],
    now: dt.datetime,
    zone: ZoneInfo,
    claim_expiry: dt.timedelta,
    deadline_labels: Mapping[str, str],
) -> RenderedRows:
    """The <tr> elements of the queue's table for `rows` as of `now`."""
    parts: list[str] = []
    day_names: dict[dt.date, str] = {}
    for row in rows:
        state = deadline_state(row.due_at, now, zone) if row.status == "new" else None
        last_day = deadline_day(row.due_at, zone)
        due_text = day_names.get(last_day)
        if due_text is None:
            due_text = day_names[last_day] = (
                f"{WEEKDAY_NAMES[last_day.weekday()][:3]} {last_day.isoformat()}"
            )
        claim = row.claim
        if claim is not None and not claim.is_live(now, claim_expiry):
            claim = None
        parts.append(_row(row, state, due_text, claim, zone, deadline_labels))
    return RenderedRows(Markup("".join(parts)), now, marks_change_at(rows, now, zone, claim_expiry))


def _row(
    row: TicketRow,
    state: str | None,
    due_text: str,
    claim: Claim | None,
    zone: ZoneInfo,
    deadline_labels: Mapping[str, str],
) -> str:
    classes = (["needs-check"] if row.needs_check else []) + (
        [f"deadline-{state}"] if state else []
    )
    class_attr = f' class="{" ".join(classes)}"' if classes else ""
    marker = (
        f'<span class="deadline-marker deadline-{state}">{escape(deadline_labels[state])}</span>'
        if state
        else ""
    )
    check = (
        '<span class="check-marker" title="Personnumret måste kontrolleras mot inspelningen">'
        '<span aria-hidden="true">⚠ </span>Kontrollera personnummer</span>'
        if row.needs_check
        else ""
    )
    if row.intent:
        intent = str(escape(INTENT_LABELS.get(row.intent, row.intent)))
    elif row.transcript_ahead is not None:
        intent = (
            '<span class="transcript-pending">utskrift väntar, '
            f"{escape(queue_place(row.transcript_ahead))}</span>"
        )
    else:
        intent = "–"
    if row.forwarded_from:
        intent += (
            f' <span class="forwarded">Vidarebefordrad från {escape(row.forwarded_from)}: '
            f'<span class="forward-note">{escape(row.forward_note)}</span></span>'
        )
    if claim is not None:
        intent += (
            f' <span class="claimed">Hanteras av {escape(claim.by)} sedan '
            f"{claim.since.astimezone(zone):%H:%M}</span>"
        )
    partial = (
        ' <span class="tag" title="Inspelningen avbröts">avbruten</span>' if row.partial else ""
    )
    return (
        f'<tr data-ticket-id="{row.id}"{class_attr}>'
        f'<td><a href="/tickets/{row.id}">{local_time(row.created_at, zone)}</a></td>'
        f'<td class="due"><time datetime="{row.due_at.isoformat()}">{due_text}</time> {marker}</td>'
        f"<td>{escape(row.clinic_name)}</td>"
        f'<td class="pnr">{escape(row.personnummer_masked or "–")} {check}</td>'
        f"<td>{escape(row.name or '–')}</td>"
        f'<td class="intent">{intent}</td>'
        f'<td><span class="status status-{escape(row.status)}">'
        f"{escape(STATUS_LABELS.get(row.status, row.status))}</span>{partial}</td>"
        f"<td>{duration(row.duration_s)}</td>"
        "</tr>\n"
    )
