"""`fetch_model` against a real HTTP server on 127.0.0.1 serving a small zip built here.

Never the real URL: the tests pass their own url, md5 and size.
"""

from __future__ import annotations

import hashlib
import io
import random
import socket
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from transcription.model_fetch import ModelFetchError, fetch_model

NAME = "vosk-model-test-0.1"
ACOUSTIC_MODEL = random.Random(0).randbytes(50_000)  # incompressible, so the zip is 50 kB


def model_zip(with_acoustic_model: bool = True) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        if with_acoustic_model:
            zf.writestr(f"{NAME}/am/final.mdl", ACOUSTIC_MODEL)
        zf.writestr(f"{NAME}/conf/mfcc.conf", "--sample-frequency=16000\n")
        zf.writestr(f"{NAME}/graph/HCLr.fst", b"fst" * 1000)
    return buffer.getvalue()


@dataclass
class Server:
    url: str
    files: dict[str, bytes]
    requests: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[Server]:
    """Serves `files` by path; honours `Range: bytes=N-` the way alphacephei's server does."""
    state = Server(url="", files={})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(dict(self.headers))
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            if (wanted := self.headers.get("Range", "")).startswith("bytes="):
                start = int(wanted.removeprefix("bytes=").rstrip("-"))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            self.wfile.write(body[start:])

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def publish(server: Server, body: bytes) -> dict[str, object]:
    server.files[f"/models/{NAME}.zip"] = body
    return {
        "url": f"{server.url}/models/{NAME}.zip",
        "md5": hashlib.md5(body).hexdigest(),
        "size": len(body),
    }


def test_model_is_downloaded_verified_and_unpacked(server: Server, tmp_path: Path) -> None:
    pinned = publish(server, model_zip())
    seen: list[tuple[int, int]] = []

    def progress(got: int, total: int) -> None:
        seen.append((got, total))

    model_dir = fetch_model(tmp_path, **pinned, progress=progress)  # type: ignore[arg-type]

    assert model_dir == tmp_path / "models" / NAME
    assert (model_dir / "am" / "final.mdl").read_bytes() == ACOUSTIC_MODEL
    assert (model_dir / "conf" / "mfcc.conf").is_file()
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [NAME]  # no leftovers
    assert seen[-1] == (pinned["size"], pinned["size"])


def test_installed_model_is_not_downloaded_again(server: Server, tmp_path: Path) -> None:
    pinned = publish(server, model_zip())
    first = fetch_model(tmp_path, **pinned)  # type: ignore[arg-type]
    requests = len(server.requests)
    assert fetch_model(tmp_path, **pinned) == first  # type: ignore[arg-type]
    assert len(server.requests) == requests


def test_interrupted_download_resumes_where_it_stopped(server: Server, tmp_path: Path) -> None:
    body = model_zip()
    pinned = publish(server, body)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / f"{NAME}.zip.part").write_bytes(body[:20_000])

    model_dir = fetch_model(tmp_path, **pinned)  # type: ignore[arg-type]

    assert server.requests[-1]["Range"] == "bytes=20000-"
    assert (model_dir / "am" / "final.mdl").is_file()


def test_checksum_mismatch_installs_nothing(server: Server, tmp_path: Path) -> None:
    pinned = publish(server, model_zip())
    pinned["md5"] = "5ae431c65fe8636692118792daa22ecc"

    with pytest.raises(ModelFetchError, match="does not match the pinned checksum"):
        fetch_model(tmp_path, **pinned)  # type: ignore[arg-type]

    assert list((tmp_path / "models").iterdir()) == []


def test_file_larger_than_pinned_is_rejected(server: Server, tmp_path: Path) -> None:
    pinned = publish(server, model_zip())
    pinned["size"] = int(pinned["size"]) - 10  # type: ignore[call-overload]

    with pytest.raises(ModelFetchError, match="larger than the pinned"):
        fetch_model(tmp_path, **pinned)  # type: ignore[arg-type]

    assert list((tmp_path / "models").iterdir()) == []


def test_archive_that_is_not_a_vosk_model_is_rejected(server: Server, tmp_path: Path) -> None:
    pinned = publish(server, model_zip(with_acoustic_model=False))

    with pytest.raises(ModelFetchError, match="not a vosk model archive"):
        fetch_model(tmp_path, **pinned)  # type: ignore[arg-type]

    assert list((tmp_path / "models").iterdir()) == []


def test_missing_file_reports_the_http_status(server: Server, tmp_path: Path) -> None:
    with pytest.raises(ModelFetchError, match="HTTP 404"):
        fetch_model(tmp_path, url=f"{server.url}/models/{NAME}.zip", md5="0" * 32, size=10)


def test_unreachable_server_explains_how_to_install_by_hand(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on once this socket is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/vosk-model-small-sv-rhasspy-0.15.zip"

    with pytest.raises(ModelFetchError) as raised:
        fetch_model(tmp_path, url=url, md5="5ae431c65fe8636692118792daa22ecc", size=303_504_931)

    message = str(raised.value)
    assert message.startswith(f"cannot download {url}")
    assert "no network? Download it on a connected machine" in message
    assert "verify md5 5ae431c65fe8636692118792daa22ecc (size 303504931 bytes)" in message
    assert f"unzip into {tmp_path / 'models'}" in message
    assert (
        f"set stt.model_path to {tmp_path / 'models' / 'vosk-model-small-sv-rhasspy-0.15'}"
        in message
    )
