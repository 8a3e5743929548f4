"""The operator's log: readable lines or JSON lines, each about a call naming its SIP Call-ID.

Which call a line is about is carried by a context variable, not passed around: the SIP engine
sets it while it handles a message and for the task that runs a call (asyncio copies the
context into the call's task and into `asyncio.to_thread`), so every line logged on the call's
behalf, in any module, carries the Call-ID without each log call naming it.

Invariants: no personnummer reaches the log. The masking filter (storage/personnummer.py) is
on the handler, so it covers third-party records too, and the formatters mask exception text,
which the filter never sees. Names (a caller's display name, a name heard in a message) and
transcripts are never logged in the first place; the end-to-end tests check the whole log of a
real call for both.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar

from storage.personnummer import RedactPersonnummerFilter, redact_personnummer

CALL_ID: ContextVar[str | None] = ContextVar("sip_call_id", default=None)
"""The SIP Call-ID of the call the running code works for, or None."""


@contextlib.contextmanager
def about_call(call_id: str) -> Iterator[None]:
    """Lines logged inside the block are about the call `call_id`."""
    token = CALL_ID.set(call_id)
    try:
        yield
    finally:
        CALL_ID.reset(token)


def adopt_call(call_id: str) -> None:
    """The rest of this task is about the call `call_id`, unless it already works for one
    (a switchboard transfer dials from within the caller's call, whose Call-ID stays)."""
    if CALL_ID.get() is None:
        CALL_ID.set(call_id)


class _CallIdFilter(logging.Filter):
    """Stamps the record with the call it is about, in the thread and context that logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "call_id"):
            record.call_id = CALL_ID.get()
        return True


class TextFormatter(logging.Formatter):
    """`time level logger: message`, with personnummer masked in tracebacks as well."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatException(self, ei: logging._SysExcInfoType) -> str:  # noqa: N802 - logging's
        return redact_personnummer(super().formatException(ei))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, call_id when the
    line is about a call, exception when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_personnummer(record.getMessage()),
        }
        call_id = getattr(record, "call_id", None)
        if call_id:
            document["call_id"] = call_id
        if record.exc_info:
            document["exception"] = redact_personnummer(self.formatException(record.exc_info))
        if record.stack_info:
            document["stack"] = redact_personnummer(self.formatStack(record.stack_info))
        return json.dumps(document, ensure_ascii=False)


def setup_logging(level: str, fmt: str) -> None:
    """Log to standard error (journald picks it up) at `level`, as `text` or `json` lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactPersonnummerFilter())
    handler.addFilter(_CallIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # APScheduler logs every wake-up at INFO: keep the operator log for what matters.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
