"""What a failing end-to-end test prints: the tail of the log of every process it used.

An assertion about a call ("no ticket", "sipp exited 1") says little without the server's side
of it, and a module-scoped server's log is gone from view by the time someone reads the CI
output. So every harness class that starts a process (ServerProcess, Kamailio, Baresip) calls
`started(self)`, and when a test fails this plugin (loaded from tests/conftest.py) adds one
report section per process the test started or used: the last TAIL_CHARS of its log.
"""

from __future__ import annotations

import weakref
from collections.abc import Generator, Iterable, Mapping
from pathlib import Path
from typing import Protocol

import pytest

TAIL_CHARS = 6000


class LoggedProcess(Protocol):
    """A process the harness started, with a log file of its own."""

    @property
    def log_path(self) -> Path | None: ...

    def log(self) -> str: ...


_this_test: list[LoggedProcess] = []
"""Processes started since the current test began (its fixtures' set-up included)."""
_ever: dict[int, weakref.ref[LoggedProcess]] = {}
"""Every process started in this session, to recognise one a test uses through a fixture."""


def started(process: LoggedProcess) -> None:
    """Note that `process` has started a program whose log a failing test should show."""
    if not any(p is process for p in _this_test):
        _this_test.append(process)
    _ever[id(process)] = weakref.ref(process)


def _known(value: object) -> bool:
    ref = _ever.get(id(value))
    return ref is not None and ref() is value


def processes_of(funcargs: Mapping[str, object], this_test: Iterable[object]) -> list:
    """The processes started during the test, then those it uses through fixtures (a
    module-scoped server started by an earlier test), each once."""
    found: list = []
    for value in [*this_test, *funcargs.values()]:
        if _known(value) and not any(value is seen for seen in found):
            found.append(value)
    return found


def failure_sections(processes: Iterable[LoggedProcess]) -> list[tuple[str, str]]:
    """(title, tail of the log) for each process that wrote a log."""
    sections = []
    for process in processes:
        text = process.log()
        if text:
            title = f"{type(process).__name__} log {process.log_path} (last {TAIL_CHARS} chars)"
            sections.append((title, text[-TAIL_CHARS:]))
    return sections


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    _this_test.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", None) or {}
        for title, text in failure_sections(processes_of(funcargs, _this_test)):
            report.sections.append((title, text))
    return report
