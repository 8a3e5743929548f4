"""`callserver fetch-model`: download the Swedish vosk model once, verified, into the data dir.

The model is 300 MB from one web server, so the download resumes where a previous attempt
stopped, and nothing counts as installed until size and md5 match the values pinned here and
the archive has been unpacked completely (unpacked beside the target, then renamed into place).
Many clinic servers are offline; then the error says how to do the same steps by hand.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

log = logging.getLogger(__name__)

MODEL_URL = "https://alphacephei.com/vosk/models/vosk-model-small-sv-rhasspy-0.15.zip"
MODEL_SIZE = 303_504_931
MODEL_MD5 = "5ae431c65fe8636692118792daa22ecc"
"""alphacephei's model list publishes the size and md5 (no sha256) of the archive."""

_CHUNK = 1 << 20


class ModelFetchError(RuntimeError):
    """The model could not be installed; the message says what the operator can do."""


def fetch_model(
    data_dir: Path,
    url: str = MODEL_URL,
    md5: str = MODEL_MD5,
    size: int = MODEL_SIZE,
    *,
    timeout: float = 30.0,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Install the model under `data_dir/models/` and return its directory (for stt.model_path).

    Does nothing but return the directory when the model is already installed. `progress` is
    called with (bytes so far, total) while downloading.
    """
    models_dir = Path(data_dir) / "models"
    name = PurePosixPath(urlparse(url).path).name.removesuffix(".zip")
    target = models_dir / name
    if target.exists():
        if (target / "am" / "final.mdl").is_file():
            log.info("speech model already installed at %s", target)
            return target
        raise ModelFetchError(
            f"{target} exists but is not a complete vosk model: remove it and run again"
        )
    manual = (
        f"Download it on a connected machine, verify md5 {md5} (size {size} bytes), "
        f"unzip into {models_dir} and set stt.model_path to {target}"
    )
    models_dir.mkdir(parents=True, exist_ok=True)
    part = models_dir / f"{name}.zip.part"
    _download(url, part, size, timeout, progress, manual)
    _verify(part, size, md5, manual)
    _unpack(part, target)
    part.unlink()
    log.info("speech model installed at %s", target)
    return target


def _download(
    url: str,
    part: Path,
    size: int,
    timeout: float,
    progress: Callable[[int, int], None] | None,
    manual: str,
) -> None:
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        have = 0
    if have == size:
        return  # a previous run got everything but stopped before unpacking
    request = urllib.request.Request(url, headers={"User-Agent": "callserver-fetch-model"})
    if have:
        request.add_header("Range", f"bytes={have}-")
        log.info("resuming the model download at %d of %d bytes", have, size)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        raise ModelFetchError(
            f"cannot download {url}: the server answered HTTP {error.code} {error.reason}. {manual}"
        ) from error
    except (urllib.error.URLError, HTTPException, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ModelFetchError(f"cannot download {url} ({reason}): no network? {manual}") from error
    with response:
        if have and response.status != 206:
            have = 0  # the server ignored the Range header and sends the whole file
        next_report = 0.0
        with part.open("ab" if have else "wb") as out:
            while have < size:
                try:
                    chunk = response.read(min(_CHUNK, size - have))
                except (HTTPException, OSError) as error:
                    raise ModelFetchError(
                        f"download of {url} interrupted at {have} of {size} bytes ({error}): "
                        f"run the command again to resume. {manual}"
                    ) from error
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as error:
                    raise ModelFetchError(
                        f"cannot write {part} ({error}): the model needs ~{2 * size >> 20} MB "
                        "free in the data directory"
                    ) from error
                have += len(chunk)
                if progress is not None:
                    progress(have, size)
                if have / size >= next_report:
                    log.info("model download: %d of %d MB", have >> 20, size >> 20)
                    next_report += 0.1
            extra = response.read(1)
    if have < size:
        raise ModelFetchError(
            f"download of {url} ended at {have} of {size} bytes: run the command again to "
            f"resume. {manual}"
        )
    if extra:
        part.unlink()
        raise ModelFetchError(
            f"{url} is larger than the pinned {size} bytes: it is not the expected model file. "
            f"{manual}"
        )


def _verify(part: Path, size: int, md5: str, manual: str) -> None:
    actual_size = part.stat().st_size
    digest = hashlib.md5(usedforsecurity=False)
    with part.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    if actual_size != size or digest.hexdigest() != md5.lower():
        part.unlink()
        raise ModelFetchError(
            f"the downloaded model does not match the pinned checksum (md5 {digest.hexdigest()}, "
            f"{actual_size} bytes; expected md5 {md5}, {size} bytes): the download was corrupted "
            f"or the file on the server changed. Run the command again; if it fails the same way, "
            f"check the model list on alphacephei.com. {manual}"
        )


def _unpack(archive: Path, target: Path) -> None:
    """Unpack next to `target`, then rename: a half-unpacked model never sits at `target`."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    path = PurePosixPath(member)
                    if path.is_absolute() or ".." in path.parts:
                        raise ModelFetchError(f"{archive}: unsafe path {member!r} in the archive")
                zf.extractall(staging)
        except zipfile.BadZipFile as error:
            archive.unlink()
            raise ModelFetchError(f"{archive} is not a valid zip ({error}): run again") from error
        entries = list(staging.iterdir())
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging
        if not (root / "am" / "final.mdl").is_file():
            archive.unlink()
            raise ModelFetchError(
                f"{archive.name} has no am/final.mdl: it is not a vosk model archive"
            )
        os.rename(root, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
