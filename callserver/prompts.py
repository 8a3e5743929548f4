"""Prompt audio: generated from ivr_flows/prompts.py text with espeak-ng, replaceable per clinic.

Generation runs at set-up (`make run`, tests) rather than per call, and only regenerates prompts
whose text changed, so starting the server stays fast. Everything the media path plays is 8 kHz
mono 16-bit PCM held in memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import subprocess
import tempfile
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soxr

from ivr_flows.prompts import ESPEAK_VOICES, LANGUAGES, PROMPTS

log = logging.getLogger(__name__)

RATE = 8000


class PromptError(RuntimeError):
    pass


def read_wav_pcm16(path: Path, rate: int = RATE) -> bytes:
    """Read a PCM WAV (any rate, mono or stereo, 8/16-bit) as 8 kHz mono 16-bit PCM."""
    with wave.open(str(path), "rb") as w:
        return _pcm16(w, rate, str(path))


class UnusableAudio(ValueError):
    """An uploaded file that is no audio we can play (the message says why, in English)."""


def pcm16_from_wav_bytes(data: bytes, rate: int = RATE) -> bytes:
    """An uploaded WAV file's content as 8 kHz mono 16-bit PCM, like read_wav_pcm16.

    Raises UnusableAudio for anything that is not a PCM WAV with sound in it.
    """
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            pcm = _pcm16(w, rate, "upload")
    except (wave.Error, EOFError, PromptError) as exc:
        raise UnusableAudio(str(exc)) from exc
    if not pcm:
        raise UnusableAudio("the WAV file holds no audio frames")
    return pcm


def _pcm16(w: wave.Wave_read, rate: int, name: str) -> bytes:
    width, channels, src_rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
    frames = w.readframes(w.getnframes())
    if width == 2:
        samples = np.frombuffer(frames, dtype="<i2").astype(np.float32)
    elif width == 1:
        samples = (np.frombuffer(frames, dtype=np.uint8).astype(np.float32) - 128) * 256
    else:
        raise PromptError(f"{name}: {8 * width}-bit WAV not supported, use 16-bit PCM")
    if channels > 1:
        samples = samples[: samples.size // channels * channels].reshape(-1, channels).mean(axis=1)
    if src_rate != rate and samples.size:
        samples = soxr.resample(samples, src_rate, rate)
    return np.clip(samples, -32768, 32767).astype("<i2").tobytes()


def write_wav_pcm16(path: Path, pcm: bytes, rate: int = RATE) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def beep(duration_s: float = 0.4, freq: float = 1000.0) -> bytes:
    t = np.arange(int(RATE * duration_s)) / RATE
    tone = 0.3 * 32767 * np.sin(2 * np.pi * freq * t)
    ramp = np.minimum(1, np.minimum(t, t[::-1]) / 0.01)  # 10 ms fade, no clicks
    return (tone * ramp).astype("<i2").tobytes()


def _digest(lang: str, text: str) -> str:
    return hashlib.sha256(f"{ESPEAK_VOICES[lang]}|{text}".encode()).hexdigest()[:16]


def _speak(lang: str, text: str, out: Path) -> None:
    write_wav_pcm16(out, speak(text, lang))


def speak(text: str, lang: str = "sv") -> bytes:
    """`text` in the prompt voice (espeak-ng, as every generated prompt), as 8 kHz mono
    16-bit PCM: how a clinic's typed temporary message sounds like the rest of the menu."""
    if shutil.which("espeak-ng") is None:
        raise PromptError("espeak-ng is not installed: `apt-get install espeak-ng`")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(
            ["espeak-ng", "-v", ESPEAK_VOICES[lang], "-s", "150", "-w", str(raw), "--", text],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return trim_silence(read_wav_pcm16(raw))


class PromptVoice:
    """The staff UI's MessageVoice: a clinic's temporary message made exactly like the prompts."""

    def speak(self, text: str) -> bytes:
        return speak(text, "sv")

    def from_wav(self, data: bytes) -> bytes:
        return pcm16_from_wav_bytes(data)


def trim_silence(pcm: bytes, keep_s: float = 0.08, threshold: int = 300) -> bytes:
    """Cut espeak's long lead-in and tail so prompt sequences (digit read-back) flow."""
    samples = np.frombuffer(pcm, dtype="<i2")
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > threshold)
    if loud.size == 0:
        return pcm
    keep = int(keep_s * RATE)
    start, end = max(0, loud[0] - keep), min(samples.size, loud[-1] + keep)
    return samples[start:end].tobytes()


def generate_prompts(directory: Path) -> int:
    """Generate missing or changed prompt WAVs into directory/<lang>/<name>.wav.

    Returns how many were (re)generated. Raises PromptError if espeak-ng is not installed.
    """
    if shutil.which("espeak-ng") is None:
        raise PromptError(
            "espeak-ng is not installed: run `make run` (it installs it) or "
            "`apt-get install espeak-ng`, or put recorded prompts in " + str(directory)
        )
    manifest_path = directory / "manifest.json"
    manifest: dict[str, str] = {}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
    jobs = []
    for name, texts in PROMPTS.items():
        for lang in LANGUAGES:
            key = f"{lang}/{name}"
            out = directory / lang / f"{name}.wav"
            if manifest.get(key) != _digest(lang, texts[lang]) or not out.exists():
                out.parent.mkdir(parents=True, exist_ok=True)
                jobs.append((key, lang, texts[lang], out))
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda job: _speak(job[1], job[2], job[3]), jobs))
    for key, lang, text, _ in jobs:
        manifest[key] = _digest(lang, text)
    directory.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return len(jobs)


class PromptLibrary:
    """All prompts in memory, by language and name; clinic recordings override generated ones."""

    def __init__(self, directory: Path) -> None:
        self._audio: dict[tuple[str, str], bytes] = {}
        missing = []
        for name in PROMPTS:
            for lang in LANGUAGES:
                path = directory / lang / f"{name}.wav"
                if not path.exists():
                    missing.append(str(path))
                    continue
                self._audio[(lang, name)] = read_wav_pcm16(path)
        if missing:
            raise PromptError(
                f"{len(missing)} prompt files missing (first: {missing[0]}): "
                "run `callserver generate-prompts`"
            )
        self._overrides: dict[tuple[str, str, str], bytes] = {}
        self.beep = beep()

    def add_clinic_overrides(self, clinic_id: str, overrides: dict[str, dict[str, Path]]) -> None:
        for lang, names in overrides.items():
            for name, path in names.items():
                if name not in PROMPTS:
                    raise PromptError(f"clinic {clinic_id}: no prompt called {name!r} to replace")
                self._overrides[(clinic_id, lang, name)] = read_wav_pcm16(path)

    def get(self, name: str, lang: str, clinic_id: str | None = None) -> bytes:
        if name == "pause":  # between digit groups of a phone number
            return b"\x00\x00" * int(RATE * 0.25)
        override = self._overrides.get((clinic_id or "", lang, name))
        if override is not None:
            return override
        try:
            return self._audio[(lang, name)]
        except KeyError:
            raise PromptError(f"unknown prompt {name!r} ({lang})") from None

    def duration(self, name: str, lang: str = "sv") -> float:
        return len(self.get(name, lang)) / 2 / RATE
