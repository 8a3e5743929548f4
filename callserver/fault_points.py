"""Test-only fault injection: the process kills itself (SIGKILL) at a named point.

The fault suite (tests/faults/) must show that a crash in a window of microseconds loses
nothing, e.g. after a message's WAV is final on disk but before its ticket is committed. A
signal from outside cannot hit such a window reliably; this hook does, every time.

It does nothing unless the environment variable FAULT_KILL_AT names a point (it is read at
each point, so a test can restart the process without it). Never set it in production: the
process dies exactly as a power cut would have it die. The points (docs/faults.md):

- `ticket_commit`: a message's WAV is final on disk and its ticket, recording and
  transcription job are written in the open transaction, not yet committed
  (callserver/call_log.py, store_recording);
- `transcript_write`: a message was recognized, its transcript not yet written
  (callserver/transcribe_workers.py, finish_job).
"""

from __future__ import annotations

import os
import signal

ENV = "FAULT_KILL_AT"
POINTS = frozenset({"ticket_commit", "transcript_write"})


def reached(point: str) -> None:
    """Die here with SIGKILL if FAULT_KILL_AT names `point`."""
    assert point in POINTS, point
    if os.environ.get(ENV) != point:
        return
    # Straight to the file descriptor: a logging handler's buffer dies with the process.
    os.write(2, f"fault injection: SIGKILL at {point} ({ENV} is set: tests only)\n".encode())
    os.kill(os.getpid(), signal.SIGKILL)
