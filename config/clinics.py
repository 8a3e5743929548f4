"""Per-clinic files: which numbers reach a clinic, its phone hours, what its menu offers and
when its staff make callbacks.

Clinic files are data (TOML in config/clinics/), loaded and validated at start-up; a mistake
names the file and the key so the operator can fix it before any call is lost to it.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from config.calendar import national_closed_reason

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_SPAN = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


class ClinicConfigError(ValueError):
    pass


@dataclass(frozen=True)
class CallbackSchedule:
    """When the clinic's staff call patients back (the `[callbacks]` section of a clinic file).

    Times are local (the clinic's timezone); a weekday may have several spans (a lunch break).
    The staff line is called first (`staff_number`), then the patient, showing `caller_id`.
    """

    hours: dict[int, tuple[tuple[dt.time, dt.time], ...]]  # weekday (0 = Monday) -> spans
    slot_minutes: int = 15
    capacity: int = 2
    """Callbacks the staff can make in one slot; a slot with that many open callbacks is full."""
    parallel_calls: int = 1
    """Callbacks dialled at the same time for this clinic (one per staff line in the group)."""
    days_ahead: int = 3
    """Calendar days after today on which slots are offered (0 = today only)."""
    cutoff_minutes: int = 15
    """Booking a slot closes this long before it ends, so the last one closes before closing."""
    retry_delay_minutes: int = 5
    retry_delay_seconds: int | None = None
    """Overrides retry_delay_minutes when set (short delays for test lines)."""
    max_attempts: int = 3
    grace_minutes: int = 15
    """Retries may run this long past the end of the slot; after that the callback is missed."""
    allow_foreign: bool = False
    allow_premium: bool = False
    caller_id: str | None = None
    staff_number: str | None = None


@dataclass(frozen=True)
class Clinic:
    id: str
    name: str
    numbers: tuple[str, ...]
    hours: dict[int, tuple[dt.time, dt.time]]  # weekday (0 = Monday) -> open, close
    closed_dates: frozenset[dt.date] = frozenset()
    callback: bool = False
    switchboard_number: str | None = None
    staff_number: str | None = None
    prompt_overrides: dict[str, dict[str, Path]] = field(default_factory=dict)  # lang -> name
    timezone: str = "Europe/Stockholm"
    callbacks: CallbackSchedule | None = None

    def closed_reason(self, day: dt.date) -> str | None:
        """Why the clinic is closed all day, or None on a normal weekday."""
        if day in self.closed_dates:
            return "clinic closure"
        national = national_closed_reason(day)  # holidays, julafton, nyårsafton, midsommarafton
        if national is not None:
            return national
        if day.weekday() not in self.hours:
            return "no phone hours this weekday"
        return None

    def is_open(self, now: dt.datetime) -> bool:
        """True within phone hours (local time), never on closed days."""
        local = now.astimezone(ZoneInfo(self.timezone))
        if self.closed_reason(local.date()) is not None:
            return False
        opens, closes = self.hours[local.weekday()]
        return opens <= local.time() < closes


def _parse_span(path: Path, key: str, text: str, section: str = "hours") -> tuple[dt.time, dt.time]:
    match = _SPAN.match(text.replace(" ", ""))
    if not match:
        raise ClinicConfigError(
            f"{path}: {section}.{key} = {text!r}: use HH:MM-HH:MM, e.g. 08:00-16:30"
        )
    h1, m1, h2, m2 = map(int, match.groups())
    try:
        opens, closes = dt.time(h1, m1), dt.time(h2, m2)
    except ValueError as exc:
        raise ClinicConfigError(f"{path}: {section}.{key} = {text!r}: {exc}") from exc
    if closes <= opens:
        raise ClinicConfigError(f"{path}: {section}.{key} = {text!r}: closes before it opens")
    return opens, closes


# key -> (minimum, maximum); the bounds keep a typo (150 for 15) from reaching a patient.
_CALLBACK_INTS = {
    "slot_minutes": (5, 240),
    "capacity": (1, 1000),
    "parallel_calls": (1, 100),
    "days_ahead": (0, 60),
    "cutoff_minutes": (0, 240),
    "retry_delay_minutes": (1, 240),
    "retry_delay_seconds": (1, 14400),
    "max_attempts": (1, 10),
    "grace_minutes": (0, 240),
}
_CALLBACK_BOOLS = ("allow_foreign", "allow_premium")
_CALLBACK_STRINGS = ("caller_id", "staff_number")


def _parse_callbacks(
    path: Path, data: object, phone_hours: dict[int, tuple[dt.time, dt.time]]
) -> CallbackSchedule:
    if not isinstance(data, dict):
        raise ClinicConfigError(f"{path}: callbacks must be a table ([callbacks])")
    known = ("hours", *_CALLBACK_INTS, *_CALLBACK_BOOLS, *_CALLBACK_STRINGS)
    for key in data:
        if key not in known:
            raise ClinicConfigError(
                f"{path}: callbacks.{key}: unknown key (known: {', '.join(known)})"
            )
    raw_hours = data.get("hours")
    if not isinstance(raw_hours, dict) or not raw_hours:
        raise ClinicConfigError(
            f"{path}: callbacks.hours: give the callback hours per weekday, "
            'e.g. callbacks.hours.monday = "08:00-11:30"'
        )
    hours: dict[int, tuple[tuple[dt.time, dt.time], ...]] = {}
    for day, value in raw_hours.items():
        key = f"hours.{day}"
        if day not in WEEKDAYS:
            raise ClinicConfigError(
                f"{path}: callbacks.{key}: not a weekday ({', '.join(WEEKDAYS)})"
            )
        weekday = WEEKDAYS.index(day)
        if weekday not in phone_hours:
            raise ClinicConfigError(
                f"{path}: callbacks.{key}: the clinic has no phone hours on {day} "
                f"(add hours.{day} or remove callbacks.{key})"
            )
        spans = sorted(_parse_span(path, key, part, "callbacks") for part in str(value).split(","))
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            if start < end:
                raise ClinicConfigError(f"{path}: callbacks.{key} = {value!r}: spans overlap")
        hours[weekday] = tuple(spans)
    values: dict[str, object] = {}
    for key, (low, high) in _CALLBACK_INTS.items():
        if key not in data:
            continue
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ClinicConfigError(
                f"{path}: callbacks.{key} = {value!r}: use a whole number from {low} to {high}"
            )
        values[key] = value
    for key in _CALLBACK_BOOLS:
        if key in data:
            if not isinstance(data[key], bool):
                raise ClinicConfigError(
                    f"{path}: callbacks.{key} = {data[key]!r}: use true or false"
                )
            values[key] = data[key]
    for key in _CALLBACK_STRINGS:
        if key in data:
            if not isinstance(data[key], str) or not data[key].strip():
                raise ClinicConfigError(
                    f"{path}: callbacks.{key} = {data[key]!r}: use a non-empty string"
                )
            values[key] = data[key].strip()
    schedule = CallbackSchedule(hours=hours, **values)  # type: ignore[arg-type]
    for key, day_spans in hours.items():
        short = [s for s in day_spans if _minutes(s[1]) - _minutes(s[0]) < schedule.slot_minutes]
        if short:
            raise ClinicConfigError(
                f"{path}: callbacks.hours.{WEEKDAYS[key]}: a span is shorter than "
                f"callbacks.slot_minutes ({schedule.slot_minutes})"
            )
    return schedule


def _minutes(value: dt.time) -> int:
    return value.hour * 60 + value.minute


def load_clinic(path: Path, timezone: str = "Europe/Stockholm") -> Clinic:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ClinicConfigError(f"{path}: not valid TOML ({exc})") from exc
    for key in ("id", "name", "numbers"):
        if key not in data:
            raise ClinicConfigError(f"{path}: missing required key {key!r}")
    if not re.fullmatch(r"[a-z0-9_-]{1,40}", str(data["id"])):
        raise ClinicConfigError(f"{path}: id {data['id']!r}: use lowercase letters, digits, - or _")
    numbers = data["numbers"]
    if not isinstance(numbers, list) or not numbers or not all(isinstance(n, str) for n in numbers):
        raise ClinicConfigError(f"{path}: numbers must be a non-empty list of strings")
    hours = {}
    for key, value in data.get("hours", {}).items():
        if key not in WEEKDAYS:
            raise ClinicConfigError(f"{path}: hours.{key}: not a weekday ({', '.join(WEEKDAYS)})")
        hours[WEEKDAYS.index(key)] = _parse_span(path, key, str(value))
    closed = set()
    for text in data.get("closed_dates", []):
        try:
            closed.add(dt.date.fromisoformat(str(text)))
        except ValueError as exc:
            raise ClinicConfigError(f"{path}: closed_dates: {text!r} is not YYYY-MM-DD") from exc
    overrides: dict[str, dict[str, Path]] = {}
    for lang, prompts in data.get("prompts", {}).items():
        for name, file in prompts.items():
            wav = (path.parent / file).resolve()
            if not wav.exists():
                raise ClinicConfigError(f"{path}: prompts.{lang}.{name}: {wav} does not exist")
            overrides.setdefault(lang, {})[name] = wav
    menu = data.get("menu", {})
    callback = bool(menu.get("callback", False))
    callbacks = None
    if "callbacks" in data:
        callbacks = _parse_callbacks(path, data["callbacks"], hours)
    elif callback:
        raise ClinicConfigError(
            f"{path}: menu.callback = true needs a [callbacks] section with the callback hours "
            "(see config/clinics/demo.toml)"
        )
    return Clinic(
        id=data["id"],
        name=data["name"],
        numbers=tuple(numbers),
        hours=hours,
        closed_dates=frozenset(closed),
        callback=callback,
        switchboard_number=data.get("switchboard_number"),
        staff_number=data.get("staff_number"),
        prompt_overrides=overrides,
        timezone=timezone,
        callbacks=callbacks,
    )


def load_clinics(directory: Path, timezone: str = "Europe/Stockholm") -> dict[str, Clinic]:
    """All clinic files in `directory`, keyed by clinic id; no two may claim one number."""
    clinics: dict[str, Clinic] = {}
    owner: dict[str, str] = {}
    for path in sorted(Path(directory).glob("*.toml")):
        clinic = load_clinic(path, timezone)
        if clinic.id in clinics:
            raise ClinicConfigError(f"{path}: clinic id {clinic.id!r} is used twice")
        for number in clinic.numbers:
            if number in owner:
                raise ClinicConfigError(
                    f"{path}: number {number} already belongs to clinic {owner[number]!r}"
                )
            owner[number] = clinic.id
        clinics[clinic.id] = clinic
    if not clinics:
        raise ClinicConfigError(f"no clinic files (*.toml) in {directory}: add one, see demo.toml")
    return clinics


def clinic_for_number(clinics: dict[str, Clinic], dialled: str) -> Clinic | None:
    for clinic in clinics.values():
        if dialled in clinic.numbers:
            return clinic
    return None
