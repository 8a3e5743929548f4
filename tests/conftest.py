"""Shared fixtures: prompts generated once per session, real server processes (one per test
from `server_factory`, or one per module from `sip_server`), and the harness plugins."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Before anything imports them: asserts in the harness report like asserts in tests.
pytest.register_assert_rewrite("tests.support")

from callserver.prompts import PromptLibrary, generate_prompts  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.server import ServerProcess, serving  # noqa: E402

pytest_plugins = [
    "tests.support.tools",  # require(...): skip where a peer is missing, fail under CI
    "tests.support.failure_logs",  # a failing test shows its processes' logs
    "tests.support.database",  # url, session_factory: a migrated SQLite per test
    "tests.support.postgres",  # postgres_server, pg_url
    "tests.support.clinics",  # clinic_spec, make_clinic
    "pytester",  # tests/test_failure_logs.py runs pytest on a failing test
]


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytest in pytest for the harness's own plugins, without the installed plugins
    (hypothesis, asyncio, ...) that would only slow it down."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return pytester


@pytest.fixture(scope="session")
def prompts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("prompts")
    generate_prompts(directory)
    return directory


@pytest.fixture(scope="session")
def prompt_library(prompts_dir: Path) -> PromptLibrary:
    return PromptLibrary(prompts_dir)


@pytest.fixture
def server_factory(tmp_path: Path, prompts_dir: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Make (not yet started) servers; every one is stopped at the end of the test."""
    made: list[ServerProcess] = []

    def make(peer_port: int, **kwargs: Any) -> ServerProcess:
        server = ServerProcess(
            data_dir=tmp_path / f"data{len(made)}", prompts_dir=prompts_dir, peer_port=peer_port,
            **kwargs,
        )  # fmt: skip
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


@pytest.fixture(scope="module")
def sip_server_options() -> dict[str, Any]:
    """How a module's `sip_server` is started (ServerProcess fields): by default a trusted
    peer on a free port, which the module's callers (sipp, raw sockets) take in turn. A module
    overrides this fixture to change it (registered mode behind Kamailio)."""
    return {"peer_port": free_port()}


@pytest.fixture(scope="module")
def sip_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    prompts_dir: Path,
    sip_server_options: dict[str, Any],
) -> Iterator[ServerProcess]:
    """One started `callserver serve` for a whole test module (the SIP signalling tests);
    stopped by PID after the module's last test."""
    name = request.module.__name__.rpartition(".")[2]
    with serving(tmp_path_factory.mktemp(name), prompts_dir, **sip_server_options) as server:
        yield server
