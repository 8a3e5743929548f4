"""Shared fixtures: prompts generated once per test session, a server factory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from callserver.prompts import PromptLibrary, generate_prompts
from tests.peers import ServerProcess

# Fixtures `url` and `session_factory` (a migrated database) for the callback domain tests.
pytest_plugins = ["tests.callback_support"]


@pytest.fixture(scope="session")
def prompts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("prompts")
    generate_prompts(directory)
    return directory


@pytest.fixture(scope="session")
def prompt_library(prompts_dir: Path) -> PromptLibrary:
    return PromptLibrary(prompts_dir)


@pytest.fixture
def server_factory(tmp_path: Path, prompts_dir: Path) -> Iterator:
    """Make (not yet started) servers; every one is stopped at the end of the test."""
    made: list[ServerProcess] = []

    def make(peer_port: int, **kwargs) -> ServerProcess:
        server = ServerProcess(
            data_dir=tmp_path / f"data{len(made)}", prompts_dir=prompts_dir, peer_port=peer_port,
            **kwargs,
        )  # fmt: skip
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()
