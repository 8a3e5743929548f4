"""One clock paces every session at 20 ms against absolute deadlines and skips, not bursts."""

import asyncio
import gc
import time
import weakref

from callserver.media.clock import MediaClock


class FakeSession:
    def __init__(self, block_once_for: float = 0.0) -> None:
        self.sends: list[float] = []
        self.skipped: list[int] = []
        self.block_once_for = block_once_for

    def send_next_frame(self) -> None:
        self.sends.append(time.monotonic())
        if self.block_once_for and len(self.sends) == 5:
            time.sleep(self.block_once_for)  # a stall of the whole event loop

    def skip_frames(self, frames: int) -> None:
        self.skipped.append(frames)


class BrokenSession(FakeSession):
    def send_next_frame(self) -> None:
        raise RuntimeError("bug in one call")


async def run_clock(clock: MediaClock, seconds: float) -> None:
    clock.start()
    try:
        await asyncio.sleep(seconds)
    finally:
        await clock.stop()


async def test_every_registered_session_gets_one_frame_per_20_ms():
    clock = MediaClock()
    sessions = [FakeSession() for _ in range(3)]
    for s in sessions:
        clock.register(s)
    await run_clock(clock, 0.5)
    counts = [len(s.sends) for s in sessions]
    assert len(set(counts)) == 1
    assert 15 <= counts[0] <= 27  # 25 expected; generous for a loaded test machine
    assert not clock.running
    assert clock.stats.ticks == counts[0]
    assert len(clock.lateness) == counts[0]


async def test_unregistered_session_is_no_longer_ticked():
    clock = MediaClock()
    session = FakeSession()
    clock.register(session)
    clock.start()
    await asyncio.sleep(0.1)
    clock.unregister(session)
    clock.unregister(session)  # idempotent
    sent = len(session.sends)
    await asyncio.sleep(0.1)
    await clock.stop()
    assert sent > 0 and len(session.sends) == sent


async def test_stall_is_skipped_not_burst_and_sessions_told_how_many_frames():
    clock = MediaClock(max_behind_frames=3)
    session = FakeSession(block_once_for=0.25)
    clock.register(session)
    await run_clock(clock, 0.6)
    assert clock.stats.max_lateness >= 0.2
    assert clock.stats.skipped_frames >= 8
    assert session.skipped == [clock.stats.skipped_frames]
    stall_end = session.sends[4] + 0.25
    after_stall = [t for t in session.sends if stall_end <= t < stall_end + 0.015]
    assert len(after_stall) <= 2, "a 12-frame backlog must not be sent back to back"


async def test_failing_session_is_dropped_and_others_keep_their_pace():
    clock = MediaClock()
    healthy, broken = FakeSession(), BrokenSession()
    clock.register(broken)
    clock.register(healthy)
    await run_clock(clock, 0.2)
    assert clock.sessions == 1
    assert clock.stats.session_errors == 1
    assert len(healthy.sends) >= 5


async def test_an_unregistered_session_is_not_kept_alive_by_the_running_clock():
    """The clock's loop variable held the last ticked session (and with it the ended call's
    dialog and buffers) until another call came; tests/robustness/test_half_open.py saw it."""
    clock = MediaClock()
    session = FakeSession()
    clock.register(session)
    clock.start()
    try:
        await asyncio.sleep(0.1)
        assert session.sends
        clock.unregister(session)
        gone = weakref.ref(session)
        del session
        await asyncio.sleep(0.1)  # the clock keeps ticking, with nobody to tick
        gc.collect()
        assert gone() is None
    finally:
        await clock.stop()


async def test_a_tick_due_during_a_burst_is_sent_from_poll_for_every_session_and_only_once():
    # asyncio runs a due timer only after every receive callback of the same poll; the
    # sessions' receive path calls clock.poll() so that the tick does not wait for the burst.
    clock = MediaClock()
    sessions = [FakeSession() for _ in range(3)]
    for s in sessions:
        clock.register(s)
    clock.start()
    try:
        await asyncio.sleep(0.05)
        before = [len(s.sends) for s in sessions]
        time.sleep(0.03)  # a burst of receive callbacks: the next tick falls due meanwhile
        clock.poll()
        after = [len(s.sends) for s in sessions]
        assert after == [n + 1 for n in before], "every session's due frame, sent from poll"
        for _ in range(3):  # 30 ms can make two ticks due: the missed one is caught up next
            clock.poll()
        caught_up = [len(s.sends) for s in sessions]
        assert caught_up[0] - after[0] <= 1 and len(set(caught_up)) == 1
        clock.poll()  # nothing due any more: nothing sent
        assert [len(s.sends) for s in sessions] == caught_up
        await asyncio.sleep(0.1)
    finally:
        await clock.stop()
    assert [len(s.sends) for s in sessions] == [clock.stats.ticks] * 3, "no tick sent twice"
    assert clock.stats.ticks <= 10  # 0.18 s of 20 ms ticks (+ catch-up), not doubled


async def test_poll_does_nothing_while_the_clock_is_stopped():
    clock = MediaClock()
    session = FakeSession()
    clock.register(session)
    clock.poll()
    assert session.sends == []


async def test_early_wake_sends_ticks_on_their_deadline_not_up_to_a_millisecond_after():
    # The loop's timer fires 0-1 ms late (epoll's whole-millisecond timeout, rounded up): a
    # median of ~0.5 ms. Waking 1 ms early and sleeping the rest precisely removes that.
    clock = MediaClock(early_wake=0.001)
    clock.register(FakeSession())
    await run_clock(clock, 0.6)
    lateness = sorted(clock.lateness)
    assert len(lateness) >= 20
    assert lateness[len(lateness) // 2] < 0.00025, lateness
    assert lateness[0] >= 0, "never early: a frame goes out at its deadline or after"
