"""A test-only look inside a running `callserver serve`: with this directory first on its
PYTHONPATH and CALLSERVER_TEST_HEAP_PROBE=<file>, the process writes, on SIGUSR2, what it
holds to <file> as JSON (replaced atomically), after a full garbage collection:

- `blocks`: sys.getallocatedblocks(), the live blocks of CPython's heap, less the media clock's
  lateness history (callserver/media/clock.py: one float per 20 ms tick, at most 30,000, so
  it grows for the first ten minutes of any process, calls or not);
- `types`: live gc-tracked objects of the per-call kinds (dialogs, media sessions, tasks...);
- `dialogs` and `tasks`: the Call-ID and state of every live dialog, and where every pending
  task waits (for the message when something is left);
- `rss_kib` and `rss_after_trim_kib`: VmRSS before and after glibc's malloc_trim(0), which
  hands freed heap pages back to the kernel, so what stays is memory still in use or held by
  CPython's own allocator (an arena with one live block is kept whole).

Python runs the handler on the main thread, between bytecodes of the event loop, so it sees
a consistent heap. The product has no such hook; tests/robustness/test_half_open.py uses it.
"""

import os

_OUT = os.environ.get("CALLSERVER_TEST_HEAP_PROBE")
PER_CALL_TYPES = (
    "Dialog", "MediaSession", "MediaOffer", "_Message", "LiveCall", "Task", "TimerHandle",
    "Future", "Event", "coroutine",
)  # fmt: skip

if _OUT:
    import collections
    import ctypes
    import gc
    import json
    import signal
    import sys

    def _rss_kib() -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return -1

    def _probe(signum: int, frame: object) -> None:
        gc.collect()
        objects = gc.get_objects()
        kinds = collections.Counter(type(o).__name__ for o in objects)
        history = sum(len(o.lateness) for o in objects if type(o).__name__ == "MediaClock")
        report = {
            "objects": len(objects),
            "blocks": sys.getallocatedblocks() - history,
            "modules": len(sys.modules),
            "types": {name: kinds[name] for name in PER_CALL_TYPES},
            "rss_kib": _rss_kib(),
        }
        # What keeps a call alive, if one is: its dialog and the tasks still waiting.
        report["dialogs"] = [
            [getattr(o, "call_id", "?"), getattr(o, "state", "?")]
            for o in objects
            if type(o).__name__ == "Dialog"
        ][:20]
        report["tasks"] = [
            [o.get_name(), [f"{f.f_code.co_filename}:{f.f_lineno} {f.f_code.co_name}"
                            for f in o.get_stack(limit=3)]]
            for o in objects
            if type(o).__name__ == "Task" and not o.done()
        ][:40]  # fmt: skip
        del objects, kinds
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        report["rss_after_trim_kib"] = _rss_kib()
        with open(f"{_OUT}.tmp", "w") as f:
            json.dump(report, f)
        os.replace(f"{_OUT}.tmp", _OUT)

    signal.signal(signal.SIGUSR2, _probe)
