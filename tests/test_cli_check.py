"""`callserver check` as an operator runs it: each check OK, WARN or FAIL with what to do, exit
status 0 only when nothing failed, and the same as one JSON object with --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.server import ServerProcess
from tests.support.small_disk import fill, small_disk


@pytest.fixture
def installation(tmp_path: Path, prompts_dir: Path) -> ServerProcess:
    """A data directory as `make run` leaves it: migrated, prompts generated (not serving)."""
    server = ServerProcess(
        data_dir=tmp_path / "data", prompts_dir=prompts_dir, peer_port=free_port()
    )
    server.data_dir.mkdir()
    (server.data_dir / "prompts").symlink_to(prompts_dir)
    migrated = server.cli("migrate")
    assert migrated.returncode == 0, migrated.stderr
    return server


def checks(server: ServerProcess, *extra: str) -> tuple[int, dict[str, dict]]:
    result = server.cli("check", "--json", *extra)
    document = json.loads(result.stdout)
    assert document["ok"] is (result.returncode == 0)
    return result.returncode, {c["name"]: c for c in document["checks"]}


def test_a_ready_installation_passes(installation: ServerProcess) -> None:
    code, found = checks(installation)
    assert code == 0, found
    assert [found[n]["status"] for n in ("settings", "database", "recordings", "clinics",
                                         "prompts")] == ["ok"] * 5  # fmt: skip
    assert found["speech model"]["status"] == "warn"  # not configured: works, no transcripts
    assert "callserver fetch-model" in found["speech model"]["fix"]
    text = installation.cli("check")
    assert text.returncode == 0 and "OK    database" in text.stdout


def test_what_is_missing_is_named_with_what_to_do(
    tmp_path: Path, installation: ServerProcess
) -> None:
    installation.data_dir.joinpath("prompts").unlink()
    installation.extra_env["CALLSERVER_DATABASE_URL"] = f"sqlite:///{tmp_path / 'none.db'}"
    installation.extra_env["CALLSERVER_STT_MODEL_PATH"] = str(tmp_path / "no-model")
    code, found = checks(installation)
    assert code == 1
    assert found["database"]["status"] == "fail"
    assert found["database"]["fix"] == "run `callserver migrate`"
    assert found["prompts"]["status"] == "fail" and "generate-prompts" in found["prompts"]["fix"]
    assert found["speech model"]["status"] == "fail"
    text = installation.cli("check").stdout
    assert "FAIL  database" in text and "-> run `callserver migrate`" in text


def test_bad_settings_are_a_failed_check(installation: ServerProcess) -> None:
    installation.extra_env["CALLSERVER_RECORDING_MIN_FREE_MB"] = "-1"
    code, found = checks(installation)
    assert code == 1 and list(found) == ["settings"]
    assert "recording.min_free_mb" in found["settings"]["detail"]


def test_a_full_recordings_disk_fails_the_check(installation: ServerProcess) -> None:
    with small_disk(installation.data_dir / "recordings", 4) as disk:
        installation.extra_env["CALLSERVER_RECORDING_MIN_FREE_MB"] = "1"
        assert checks(installation)[0] == 0  # 4 MB: a whole message fits above the reserve
        filler = fill(disk, leave_bytes=2 * 1024 * 1024)  # not a whole message any more
        code, found = checks(installation)
        assert code == 1
        assert found["recordings"]["status"] == "fail"
        assert "below the reserve" in found["recordings"]["detail"]
        fill(disk)  # not a byte
        code, found = checks(installation)
        assert code == 1 and "not writable" in found["recordings"]["detail"]
        filler.unlink()
        assert checks(installation)[0] == 0
