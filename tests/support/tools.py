"""Programs the end-to-end tests drive (sipp, baresip, Kamailio, chromium, PostgreSQL).

Where one is missing, a developer's run skips the tests that need it and names the package
to install. Under CI (the CI environment variable set) the same test fails instead: a skipped
end-to-end test in CI is a test that cannot fail, so the build would go green without ever
placing a call.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

MARK = "requires"


def in_ci() -> bool:
    """Whether this run is CI (CI=true, as GitHub, GitLab and most runners set it)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def have(program: str) -> bool:
    return shutil.which(program) is not None


def require(program: str, *, package: str) -> pytest.MarkDecorator:
    """Mark tests that need `program` from the Debian `package`: skipped where it is missing,
    an error under CI (see `pytest_runtest_setup` below)."""
    return getattr(pytest.mark, MARK)(program, package=package)


def unavailable(what: str, hint: str) -> NoReturn:
    """Skip the test because `what` is missing here, or fail it under CI; `hint` says how to
    get it."""
    if in_ci():
        pytest.fail(f"{what}: {hint} (CI is set: a missing peer fails the run)", pytrace=False)
    pytest.skip(f"{what}: {hint}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARK}(program, package): the test needs this program (Debian package)"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture starts a server for a test that cannot run anyway."""
    for mark in item.iter_markers(MARK):
        program, package = mark.args[0], mark.kwargs["package"]
        if not have(program):
            unavailable(
                f"{program} is not installed",
                f"apt-get install --no-install-recommends {package} (`make test` does it)",
            )
