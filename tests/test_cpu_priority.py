"""runtime.realtime_priority / runtime.nice put `callserver serve` above other work, http.nice
puts `callserver web` below it; a refusal is a warning, never a reason not to start."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from callserver.cpu_priority import set_process_priority
from config.settings import SettingsError, load_settings
from tests.support.ports import free_port
from tests.support.server import ServerProcess
from transcription.streaming import lower_thread_priority

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_RR"), reason="Linux scheduling only")


def may_raise_priority() -> bool:
    """Whether this process may use SCHED_RR and negative nice (root or CAP_SYS_NICE)."""
    status = Path("/proc/self/status").read_text()
    line = next(ln for ln in status.splitlines() if ln.startswith("CapEff"))
    effective = int(line.split()[1], 16)
    return bool(effective & (1 << 23))  # CAP_SYS_NICE


def threads_of(pid: int) -> dict[int, tuple[int, int, int]]:
    """tid -> (policy, real-time priority, nice) of every thread of a process."""
    out = {}
    for entry in Path(f"/proc/{pid}/task").iterdir():
        tid = int(entry.name)
        try:
            out[tid] = (
                os.sched_getscheduler(tid),
                os.sched_getparam(tid).sched_priority,
                os.getpriority(os.PRIO_PROCESS, tid),
            )
        except OSError:  # the thread ended meanwhile
            pass
    return out


def test_serve_runs_every_thread_real_time_and_web_below_normal(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(
        free_port(),
        web=True,
        extra_env={
            "CALLSERVER_RUNTIME_REALTIME_PRIORITY": "10",
            "CALLSERVER_RUNTIME_NICE": "-5",
            "CALLSERVER_HTTP_NICE": "7",
        },
    ).start(timeout=60)
    assert server.proc is not None and server.web_proc is not None
    serve_threads = threads_of(server.proc.pid)
    assert len(serve_threads) > 2, "the SIP receive and database threads started after it"
    if may_raise_priority():
        assert set(serve_threads.values()) == {(os.SCHED_RR, 10, -5)}
        assert "CPU priority: nice -5, SCHED_RR 10" in server.log()
    else:
        assert "could not switch to SCHED_RR priority 10" in server.log()
        assert {policy for policy, _, _ in serve_threads.values()} == {os.SCHED_OTHER}
    # Lowering needs no privilege: every thread of the UI process yields to the call server.
    assert set(threads_of(server.web_proc.pid).values()) == {(os.SCHED_OTHER, 0, 7)}


def test_a_refusal_is_a_warning_and_leaves_every_thread_as_it_was(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[tuple[int, int]] = []

    def refusing(tid: int, policy: int, param: os.sched_param) -> None:
        calls.append((tid, policy))
        if policy == os.SCHED_RR:
            raise PermissionError(1, "Operation not permitted")

    def refusing_nice(which: int, tid: int, nice: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    with caplog.at_level(logging.WARNING, logger="callserver.cpu_priority"):
        done = set_process_priority(
            realtime_priority=20, nice=-10, what="callserver serve",
            set_scheduler=refusing, set_nice=refusing_nice,
        )  # fmt: skip
    assert done == "normal priority (refused)"
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert "could not switch to SCHED_RR priority 20" in warnings and "CAP_SYS_NICE" in warnings
    assert "could not set nice -10" in warnings
    # after the refusal nothing is left half real-time: the last word for each thread is normal
    last = {tid: policy for tid, policy in calls}
    assert set(last.values()) == {os.SCHED_OTHER}


def test_threads_that_lowered_themselves_keep_their_class() -> None:
    """Speech recognition threads run at SCHED_IDLE (transcription/streaming.py): raising the
    process must not lift them above the load generator, let alone beside the media loop."""
    lowered = threading.Event()
    release = threading.Event()
    tid: list[int] = []

    def recognizer() -> None:
        tid.append(threading.get_native_id())
        lower_thread_priority()
        lowered.set()
        release.wait(10)

    thread = threading.Thread(target=recognizer)
    thread.start()
    changed: list[int] = []
    try:
        assert lowered.wait(10)
        set_process_priority(
            realtime_priority=10, set_scheduler=lambda t, policy, param: changed.append(t)
        )
        assert os.sched_getscheduler(tid[0]) == os.SCHED_IDLE
    finally:
        release.set()
        thread.join()
    assert tid[0] not in changed
    assert threading.get_native_id() in changed


def test_priorities_outside_the_kernel_ranges_name_the_key() -> None:
    with pytest.raises(SettingsError, match="runtime.realtime_priority"):
        load_settings(environ={"CALLSERVER_RUNTIME_REALTIME_PRIORITY": "100"})
    with pytest.raises(SettingsError, match="runtime.nice"):
        load_settings(environ={"CALLSERVER_RUNTIME_NICE": "-21"})
    with pytest.raises(SettingsError, match="http.nice"):
        load_settings(environ={"CALLSERVER_HTTP_NICE": "-1"})
