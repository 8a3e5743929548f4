"""Loaded by Python at start-up in processes run under tests/support/faketime.py only.

Works around a defect of libfaketime 0.9.10 (Debian 12): with FAKETIME_DONT_FAKE_MONOTONIC=1
its clock_nanosleep() wrapper fails absolute sleeps on CLOCK_MONOTONIC with EINVAL, and that is
how Python's time.sleep() sleeps, so pyVoIP's SIP receive thread died at its first sleep. A
select() with a timeout sleeps on the same monotonic clock and is not wrapped that way.
"""

import select
import time


def _sleep(seconds: float) -> None:
    select.select([], [], [], seconds)  # retried with the time left after a signal (PEP 475)


time.sleep = _sleep
