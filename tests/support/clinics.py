"""Test clinics, described once and loaded the way the server loads them.

A `ClinicSpec` says what a test's clinic is (id, name, numbers, phone hours, callback hours,
the `[callbacks]` schedule); it is rendered as a clinic TOML file, which is what a server
process reads from its clinics directory and what unit tests load through the real
`config.clinics.load_clinic`, so the loader is exercised wherever a clinic is needed.

The `make_clinic` fixture builds them: a test module names its clinic by overriding the
`clinic_spec` fixture, and each test passes only what differs (`make_clinic(capacity=1)`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from config.clinics import WEEKDAYS, Clinic, load_clinic

WORKDAYS = WEEKDAYS[:5]
ALL_DAY = "00:00-23:59"


def every(days: Iterable[str], span: str) -> dict[str, str]:
    """The same span ("08:00-11:30", or several: "08:00-11:30, 13:00-15:00") on each day."""
    return {day: span for day in days}


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


@dataclass(frozen=True)
class ClinicSpec:
    """A clinic file's contents. Defaults: clinic "vc" on number 100, phone hours around the
    clock, callbacks offered 08:00-11:30 every day with the loader's schedule defaults."""

    id: str = "vc"
    name: str = "Vårdcentralen"
    numbers: tuple[str, ...] = ("100",)
    hours: Mapping[str, str] = field(default_factory=lambda: every(WEEKDAYS, ALL_DAY))
    """Phone hours: weekday name -> "HH:MM-HH:MM"; days left out have none."""
    closed_dates: tuple[str, ...] = ()
    switchboard_number: str | None = None
    staff_number: str | None = None
    menu_callback: bool = True
    """`[menu] callback`: whether the menu offers option 2."""
    callback_hours: Mapping[str, str] | None = field(
        default_factory=lambda: every(WEEKDAYS, "08:00-11:30")
    )
    """`[callbacks.hours]`; None: no `[callbacks]` section at all."""
    schedule: Mapping[str, object] = field(default_factory=dict)
    """The other `[callbacks]` keys (capacity, slot_minutes, ...), written as given."""

    def with_schedule(self, **values: object) -> ClinicSpec:
        """This clinic with these `[callbacks]` values changed or added."""
        return replace(self, schedule={**self.schedule, **values})

    def toml(self) -> str:
        lines = [
            f"id = {_toml_value(self.id)}",
            f"name = {_toml_value(self.name)}",
            f"numbers = {_toml_value(self.numbers)}",
        ]
        if self.closed_dates:
            lines.append(f"closed_dates = {_toml_value(self.closed_dates)}")
        for key in ("switchboard_number", "staff_number"):
            value = getattr(self, key)
            if value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
        lines += ["", "[hours]", *(f"{d} = {_toml_value(s)}" for d, s in self.hours.items())]
        lines += ["", "[menu]", f"callback = {_toml_value(self.menu_callback)}"]
        if self.callback_hours is not None or self.schedule:
            lines += ["", "[callbacks]"]
            lines += [f"{key} = {_toml_value(value)}" for key, value in self.schedule.items()]
            if self.callback_hours is not None:
                lines += ["", "[callbacks.hours]"]
                lines += [f"{d} = {_toml_value(s)}" for d, s in self.callback_hours.items()]
        return "\n".join(lines) + "\n"

    def write(self, directory: Path) -> Path:
        """The clinic file `<id>.toml` in `directory`."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.id}.toml"
        path.write_text(self.toml(), encoding="utf-8")
        return path


class ClinicFactory:
    """What the `make_clinic` fixture gives a test: clinics from `base` (the module's
    `clinic_spec`) or a spec of its own, with `[callbacks]` values as keyword arguments."""

    def __init__(self, root: Path, base: ClinicSpec) -> None:
        self.root = root
        self.base = base
        self._made = 0

    def _fresh_dir(self, stem: str) -> Path:
        self._made += 1
        return self.root / f"{stem}{self._made}"

    def file(self, spec: ClinicSpec | None = None, **schedule: object) -> Path:
        """Write the clinic file (in a directory of its own) and return its path."""
        return (spec or self.base).with_schedule(**schedule).write(self._fresh_dir("clinic"))

    def __call__(self, spec: ClinicSpec | None = None, **schedule: object) -> Clinic:
        """The clinic as `config.clinics.load_clinic` reads it from its file."""
        return load_clinic(self.file(spec, **schedule))

    def directory(self, *specs: ClinicSpec, **schedule: object) -> Path:
        """A new clinics directory with exactly these clinic files (the base clinic if none,
        `[callbacks]` values changed by `schedule`), for a server's CALLSERVER_CLINICS_DIR or
        `config.clinics.load_clinics`."""
        directory = self._fresh_dir("clinics")
        for spec in specs or (self.base,):
            spec.with_schedule(**schedule).write(directory)
        return directory


@pytest.fixture
def clinic_spec() -> ClinicSpec:
    """The clinic a test module is about; a module overrides this fixture with its own."""
    return ClinicSpec()


@pytest.fixture
def make_clinic(tmp_path: Path, clinic_spec: ClinicSpec) -> ClinicFactory:
    """Clinics written as files under tmp_path and loaded through the real loader."""
    return ClinicFactory(tmp_path / "clinic-files", clinic_spec)
