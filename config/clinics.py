"""Per-clinic files: which numbers reach a clinic, its phone hours and what its menu offers.

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

import holidays

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_SPAN = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
# Not public holidays by law, but Swedish clinics are closed (../shared/notes/anchors.md).
DE_FACTO_CLOSED = {(12, 24): "julafton", (12, 31): "nyårsafton"}


class ClinicConfigError(ValueError):
    pass


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

    def closed_reason(self, day: dt.date) -> str | None:
        """Why the clinic is closed all day, or None on a normal weekday."""
        if day in self.closed_dates:
            return "clinic closure"
        name = holidays.country_holidays("SE", years=day.year, language="sv").get(day)
        if name:
            return name
        if (day.month, day.day) in DE_FACTO_CLOSED:
            return DE_FACTO_CLOSED[(day.month, day.day)]
        if day.month == 6 and day.weekday() == 4 and 19 <= day.day <= 25:
            return "midsommarafton"
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


def _parse_span(path: Path, key: str, text: str) -> tuple[dt.time, dt.time]:
    match = _SPAN.match(text.replace(" ", ""))
    if not match:
        raise ClinicConfigError(
            f"{path}: hours.{key} = {text!r}: use HH:MM-HH:MM, e.g. 08:00-16:30"
        )
    h1, m1, h2, m2 = map(int, match.groups())
    try:
        opens, closes = dt.time(h1, m1), dt.time(h2, m2)
    except ValueError as exc:
        raise ClinicConfigError(f"{path}: hours.{key} = {text!r}: {exc}") from exc
    if closes <= opens:
        raise ClinicConfigError(f"{path}: hours.{key} = {text!r}: closes before it opens")
    return opens, closes


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
    return Clinic(
        id=data["id"],
        name=data["name"],
        numbers=tuple(numbers),
        hours=hours,
        closed_dates=frozenset(closed),
        callback=bool(menu.get("callback", False)),
        switchboard_number=data.get("switchboard_number"),
        staff_number=data.get("staff_number"),
        prompt_overrides=overrides,
        timezone=timezone,
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
