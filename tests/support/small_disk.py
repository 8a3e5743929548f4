"""A small real disk for the tests of a full one: a tmpfs mounted on a directory of the test's,
filled to the byte and emptied again by the test, unmounted in any case.

Mounting needs root (CI runs the tests as root); where it is impossible the test is skipped
locally and fails under CI (tests/support/tools.py).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.support.tools import have, unavailable

CHUNK = 64 * 1024


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@contextlib.contextmanager
def small_disk(path: Path, size_mb: float) -> Iterator[Path]:
    """A tmpfs of `size_mb` mounted on `path` (created if missing) for the `with` block.

    Stop every process that has files open on it before the block ends: a busy mount is only
    detached (umount -l), and frees its memory when the last file closes.
    """
    path.mkdir(parents=True, exist_ok=True)
    hint = "run the tests as root in a machine or container that may mount (CI does)"
    if os.geteuid() != 0 or not have("mount"):
        unavailable("mounting a small tmpfs needs root", hint)
    size_kb = int(size_mb * 1024)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k,mode=0755", "tmpfs", str(path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if mounted.returncode != 0:
        unavailable(f"cannot mount a tmpfs on {path}: {mounted.stderr.strip()}", hint)
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True, timeout=30).returncode:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def fill(disk: Path, *, leave_bytes: int = 0, name: str = "filler.bin") -> Path:
    """Fill the disk holding `disk` until at most `leave_bytes` are free (0: to the last byte,
    until the kernel says ENOSPC). Returns the filler file; delete it to free the space."""
    filler = disk / name
    zeros = bytes(CHUNK)
    with open(filler, "ab", buffering=0) as f:
        while (free := free_bytes(disk)) > leave_bytes:
            want = min(CHUNK, free - leave_bytes) if leave_bytes else CHUNK
            try:
                if f.write(zeros[:want]) == 0:
                    break
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return filler
