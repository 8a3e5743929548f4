"""`callserver check` as an operator runs it: each check OK, WARN or FAIL with what to do, exit
status 0 only when nothing failed, and the same as one JSON object with --json."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.server import ServerProcess
from tests.support.small_disk import fill, small_disk


@pytest.fixture
def sip_peer() -> Iterator[int]:
    """A SIP peer that answers every request with 200 OK (as a PBX answers OPTIONS); its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(65535)
            except TimeoutError:
                continue
            if data.startswith(b"OPTIONS "):
                sock.sendto(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", addr)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join()
    sock.close()


@pytest.fixture
def installation(tmp_path: Path, prompts_dir: Path, sip_peer: int) -> ServerProcess:
    """A data directory as `make run` leaves it: migrated, prompts generated (not serving), and
    a SIP peer that answers."""
    server = ServerProcess(data_dir=tmp_path / "data", prompts_dir=prompts_dir, peer_port=sip_peer)
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
                                         "prompts", "sip peer")] == ["ok"] * 6  # fmt: skip
    assert "answered OPTIONS: 200 OK" in found["sip peer"]["detail"]
    assert found["clock"]["status"] in ("ok", "warn", "skip")  # whatever this machine shows
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


def test_a_missing_speech_model_fails_with_what_to_do(
    tmp_path: Path, installation: ServerProcess
) -> None:
    installation.extra_env["CALLSERVER_STT_MODEL_PATH"] = str(tmp_path / "no-model")
    result = installation.cli("check")
    assert result.returncode == 1
    assert f"FAIL  speech model  no vosk model at {tmp_path / 'no-model'}" in result.stdout
    assert "-> run `callserver fetch-model` or correct stt.model_path" in result.stdout


def test_an_unreachable_database_fails_with_what_to_do(installation: ServerProcess) -> None:
    closed = free_port(socket.SOCK_STREAM)
    installation.extra_env["CALLSERVER_DATABASE_URL"] = (
        f"postgresql+psycopg://callserver:secret@127.0.0.1:{closed}/callserver"
    )
    result = installation.cli("check")
    assert result.returncode == 1
    line = next(line for line in result.stdout.splitlines() if line.startswith("FAIL  database"))
    assert f"127.0.0.1:{closed}/callserver is not reachable" in line
    assert "secret" not in result.stdout  # the password is not printed
    assert "-> check database.url, the network and that the database server is up" in (
        result.stdout
    )


def test_a_silent_sip_peer_fails_the_check(installation: ServerProcess) -> None:
    installation.peer_port = free_port()  # nothing answers there
    result = installation.cli("check")
    assert result.returncode == 1
    assert f"FAIL  sip peer      127.0.0.1:{installation.peer_port} " in result.stdout
    assert "-> check sip.peer, that the PBX/Kamailio there is running" in result.stdout
