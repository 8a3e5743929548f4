"""Keyset pagination: a page of an ordered list from a cursor, forwards or back, and whether
there are pages on either side. The work queue (staff_ui/ticket_queue.py) and the callback
list (staff_ui/callback_pages.py) page this way; each says what its order and its reads are.

Invariants, and why:
- A position is unique in its list's order, so "strictly past the cursor" never repeats or
  skips an item, however many share a sort key.
- A page reads page + 1 items to know whether there is another; nothing counts or offsets.
- A cursor whose items are gone (handled, moved) gives the first page, and a link back or
  ahead is offered only while an item is still there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class Position(Protocol):
    def encode(self) -> str: ...


P = TypeVar("P", bound=Position)
T = TypeVar("T")

Walk = Callable[[P | None, bool, int], list[T]]
"""walk(start, backwards, limit): up to `limit` items strictly past `start` (from the very
beginning, or the end when backwards, for None) in list order, or reversed when backwards."""


@dataclass(frozen=True)
class Window(Generic[T]):
    items: list[T]
    next_cursor: str | None
    """The cursor of the page after this one; None on the last page."""
    previous_cursor: str | None
    """The cursor of the page before this one; None on the first page."""


def page(
    walk: Walk[P, T],
    position: Callable[[T], P],
    after: P | None,
    before: P | None,
    page_size: int,
) -> Window[T]:
    """The page just after `after`, or just before `before` (else the first page)."""
    found: list[T] = []
    more_after = more_before = False
    if before is not None:
        found = walk(before, True, page_size + 1)
        more_before = len(found) > page_size
        found = found[:page_size][::-1]
        more_after = bool(found)
    elif after is not None:
        found = walk(after, False, page_size + 1)
        more_after = len(found) > page_size
        found = found[:page_size]
        more_before = bool(found)
    if not found:
        # No cursor, or nothing is left past it (its items were handled meanwhile).
        found = walk(None, False, page_size + 1)
        more_after = len(found) > page_size
        found = found[:page_size]
        more_before = False
    if more_before and before is None:
        more_before = bool(walk(position(found[0]), True, 1))
    if more_after and before is not None:
        more_after = bool(walk(position(found[-1]), False, 1))
    return Window(
        items=found,
        next_cursor=position(found[-1]).encode() if more_after else None,
        previous_cursor=position(found[0]).encode() if more_before else None,
    )
