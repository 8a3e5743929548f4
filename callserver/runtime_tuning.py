"""What the interpreter does besides our code, tuned for the media loop's 20 ms sends.

Under load, late sending (not loss) is what breaks a call first, and the loop's longest pauses
at hundreds of calls were not our work but the interpreter's (bench/README.md, "Simultaneous
recorded calls"):
- the cyclic garbage collector: a full collection walks every tracked object, including the
  hundreds of thousands made at start-up (modules, SQLAlchemy mappers, settings, prompts) that
  live as long as the process. ``gc.freeze()`` once start-up is done moves them to a permanent
  generation no collection walks again, so a collection during calls only walks what calls
  made. The young-generation threshold sets how often the collector runs at all;
- the GIL: a thread that files a ticket (an ORM flush), fsyncs a recording or finishes a
  transcript holds it while the loop waits, for up to the switch interval.

``tune_after_startup`` applies ``runtime.*`` once, after the server has started and before it
takes calls; it is idempotent and returns what it did, for the start-up log.
"""

from __future__ import annotations

import gc
import sys
from dataclasses import dataclass

from config.settings import RuntimeSettings


@dataclass(frozen=True)
class Tuning:
    """What ``tune_after_startup`` did: objects frozen, GC thresholds, switch interval (s)."""

    frozen_objects: int
    gc_threshold: tuple[int, int, int]
    switch_interval_s: float


def tune_after_startup(runtime: RuntimeSettings) -> Tuning:
    """Freeze start-up objects out of the collector's reach and set its pace and the GIL's.

    Call it when start-up's allocations are done (modules imported, database and prompts
    loaded); objects made later are collected as usual.
    """
    if runtime.gc_freeze:
        gc.collect()  # what start-up left as garbage should not be frozen with the rest
        gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(runtime.gc_threshold, gen1, gen2)
    sys.setswitchinterval(runtime.switch_interval_ms / 1000)
    return Tuning(
        frozen_objects=gc.get_freeze_count(),
        gc_threshold=gc.get_threshold(),
        switch_interval_s=sys.getswitchinterval(),
    )
