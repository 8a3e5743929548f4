"""A missing peer skips an end-to-end test on a developer's machine and fails it under CI
(tests/support/tools.py): a skipped end-to-end test in CI is a test that cannot fail."""

from __future__ import annotations

import pytest

INNER = """
from tests.support.tools import require

pytestmark = require("no-such-peer-4711", package="no-such-package")


def test_calls_the_peer():
    raise AssertionError("must not run without its peer")
"""


@pytest.mark.parametrize("ci", ["", "false", "0"])
def test_a_missing_peer_skips_the_test_with_the_package_to_install(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    monkeypatch.setenv("CI", ci)
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_inprocess("-p", "tests.support.tools", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        ["*no-such-peer-4711 is not installed: apt-get install *no-such-package*"]
    )


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_a_missing_peer_fails_the_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    monkeypatch.setenv("CI", ci)
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_inprocess("-p", "tests.support.tools")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no-such-peer-4711 is not installed*CI is set*"])
    assert "must not run" not in result.stdout.str()


def test_an_installed_peer_runs_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_inner="""
        from tests.support.tools import require

        pytestmark = require("sh", package="dash")


        def test_runs():
            pass
        """
    )
    result = pytester.runpytest_inprocess("-p", "tests.support.tools")
    result.assert_outcomes(passed=1)
