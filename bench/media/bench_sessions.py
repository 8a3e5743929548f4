"""How many calls can one asyncio process pace cleanly? (figures in bench/README.md)

Runs N simulated calls on loopback for a bounded time each: a load generator in a separate
process (pinned to another core when there is one) sends every call 50 RTP packets a second with
a key press every 2 s, and reads what we send back. The server side is the real media module:
one MediaSession per call on a PortPool port, all sent by one MediaClock, received audio decoded
and written to a file per call, a prompt playing. Late sending is what fails first, so the table
shows the clock's tick lateness (p50/p99/max) and the server's CPU per call-second.

    .venv/bin/python bench/media/bench_sessions.py --calls 50 100 200 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import socket
import struct
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from callserver.media.clock import MediaClock
from callserver.media.ports import PortPool
from callserver.media.session import MediaSession

HOST = "127.0.0.1"
PCMU, DTMF_PT = 0, 101
TICK = 0.020
KEY_EVERY_TICKS = 100  # one key press per call every 2 s
KEY_TICKS = 5  # the event lasts 5 packets; the last 3 are the end packet sent three times


@dataclass
class Result:
    calls: int
    seconds: float
    ticks: int
    skipped: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_ms_per_call_second: float
    received: int
    lost: int
    digits: int
    keys_sent: int
    generator_received: int


def pin_to_cpu(index: int) -> None:
    """Pin this process to one core, if the machine has more than one (as in the notes)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) > 1:
        os.sched_setaffinity(0, {cpus[index % len(cpus)]})


def generator(calls: int, seconds: float, pin: bool, conn: Connection) -> None:
    """The callers: one UDP socket per call, 20 ms packets paced on absolute deadlines."""
    if pin:
        pin_to_cpu(1)
    socks = []
    for _ in range(calls):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((HOST, 0))
        sock.setblocking(False)
        socks.append(sock)
    conn.send([s.getsockname()[1] for s in socks])
    targets = [(HOST, port) for port in conn.recv()]
    payload = bytes(np.random.default_rng(1).integers(0, 256, 160, dtype=np.uint8))
    header = struct.Struct("!BBHII")
    received = keys = 0
    start = time.perf_counter()
    tick = 0
    while (now := time.perf_counter()) < start + seconds:
        tick += 1
        delay = start + tick * TICK - now
        if delay > 0:
            time.sleep(delay)
        ts = tick * 160
        phase = (tick - KEY_EVERY_TICKS // 2) % KEY_EVERY_TICKS  # first press after 1 s
        if phase < KEY_TICKS:  # a key press instead of audio
            keys += phase == 0
            event = bytes([(tick // KEY_EVERY_TICKS) % 10, 0x80 if phase >= 2 else 0])
            body = event + ((phase + 1) * 160).to_bytes(2, "big")
            packet_head = header.pack(0x80, DTMF_PT, tick & 0xFFFF, ts - phase * 160, 0)
        else:
            body = payload
            packet_head = header.pack(0x80, PCMU, tick & 0xFFFF, ts, 0)
        for i, sock in enumerate(socks):
            sock.sendto(packet_head[:8] + (i + 1).to_bytes(4, "big") + body, targets[i])
        for sock in socks:
            while True:
                try:
                    sock.recv(2048)
                except BlockingIOError:
                    break
                received += 1
    conn.send((keys, received))
    for sock in socks:
        sock.close()


async def run_calls(calls: int, seconds: float, warmup: float, pin: bool, low: int) -> Result:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    gen = ctx.Process(target=generator, args=(calls, warmup + seconds + 0.5, pin, child))
    gen.start()
    loop = asyncio.get_running_loop()
    caller_ports = await loop.run_in_executor(None, parent.recv)
    pool = PortPool(HOST, low, low + 2 * calls + 200)
    clock = MediaClock()
    digits = 0

    def on_dtmf(_: str) -> None:
        nonlocal digits
        digits += 1

    prompt = np.random.default_rng(2).integers(-8000, 8000, 8000 * 60, dtype="<i2").tobytes()
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        sessions = []
        for i, port in enumerate(caller_ports):
            session = await MediaSession.open(
                pool, (HOST, port), dtmf_payload_type=DTMF_PT, on_dtmf=on_dtmf, clock=clock
            )
            recording = open(Path(tmp) / f"call{i}.pcm", "wb")
            files.append(recording)
            session.add_audio_sink(recording.write)
            session.play(prompt)
            sessions.append(session)
        parent.send([s.local_port for s in sessions])
        clock.start()
        await asyncio.sleep(warmup)
        clock.reset_stats()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        lateness = np.array(clock.lateness) * 1000
        stats = clock.stats
        keys, generator_received = await loop.run_in_executor(None, parent.recv)
        await clock.stop()
        received = lost = 0
        for session in sessions:
            session.close()
            received += session.stats.received
            lost += session.stats.lost
        for recording in files:
            recording.close()
    gen.join(5)
    return Result(
        calls=calls,
        seconds=wall,
        ticks=stats.ticks,
        skipped=stats.skipped_frames,
        p50_ms=float(np.percentile(lateness, 50)),
        p99_ms=float(np.percentile(lateness, 99)),
        max_ms=float(lateness.max()),
        cpu_ms_per_call_second=1000 * cpu / (calls * wall),
        received=received,
        lost=lost,
        digits=digits,
        keys_sent=keys * calls,
        generator_received=generator_received,
    )


def print_table(results: list[Result]) -> None:
    print(
        f"{'calls':>5} {'secs':>5} {'ticks':>6} {'skip':>5} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'max ms':>7} {'cpu ms/call-s':>13} {'rx pkts':>8} {'lost':>5} {'tx seen':>8}"
    )
    for r in results:
        print(
            f"{r.calls:>5} {r.seconds:>5.1f} {r.ticks:>6} {r.skipped:>5} {r.p50_ms:>7.2f}"
            f" {r.p99_ms:>7.2f} {r.max_ms:>7.2f} {r.cpu_ms_per_call_second:>13.3f}"
            f" {r.received:>8} {r.lost:>5} {r.generator_received:>8}"
        )
    print(
        "lateness: clock tick wake-up after its 20 ms deadline; cpu: server process only;"
        " rx: RTP packets the sessions accepted; tx seen: packets the callers read back"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per count")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--port-low", type=int, default=20000, help="first RTP port to use")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server/generator")
    args = parser.parse_args()
    if max(args.calls) > 2000 or args.seconds > 120:
        parser.error("bounded benchmark: at most 2000 calls and 120 s per count")
    pin = not args.no_pin
    if pin:
        pin_to_cpu(0)
    results = []
    for calls in args.calls:
        result = asyncio.run(run_calls(calls, args.seconds, args.warmup, pin, args.port_low))
        results.append(result)
        print(
            f"{calls} calls: p99 {result.p99_ms:.2f} ms, max {result.max_ms:.2f} ms, "
            f"digits {result.digits} of {result.keys_sent} key presses sent",
            flush=True,
        )
    print_table(results)


if __name__ == "__main__":
    main()
