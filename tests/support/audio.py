"""Audio for and from real calls: speech a caller says, and comparing what arrived with it.

Speech comes from espeak-ng, band-limited by sox like a phone line. G.711 and timing shift
samples, so what was recorded is compared with what was sent by shape (normalised
cross-correlation over all lags), never byte by byte.
"""

from __future__ import annotations

import math
import struct
import subprocess
import wave
from pathlib import Path

import numpy as np

RATE = 8000


def read_pcm16(path: Path) -> np.ndarray:
    """The samples of a 16-bit mono WAV as floats."""
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1, f"{path} is not 16-bit mono"
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def xcorr_peak(reference: np.ndarray, recorded: np.ndarray) -> float:
    """Peak normalised cross-correlation over all lags (1.0 = same waveform, any offset)."""
    a = reference - reference.mean()
    b = recorded - recorded.mean()
    n = len(a) + len(b) - 1
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    # Normalise by the energy of the overlapping part at the best lag.
    lag = int(np.argmax(np.abs(corr)))
    if lag >= len(a):
        lag -= size
    if lag >= 0:
        x, y = a[lag:], b[: len(a) - lag]
    else:
        x, y = a[: len(b) + lag], b[-lag:]
    m = min(len(x), len(y))
    x, y = x[:m], y[:m]
    denom = np.sqrt(np.sum(x * x) * np.sum(y * y))
    return float(np.sum(x * y) / denom) if denom else 0.0


def speech_wav(tmp: Path, text: str, *, voice: str = "sv", codec: str | None = None) -> Path:
    """Swedish speech from espeak-ng, band-limited like a phone line, 8 kHz, silence trimmed.

    codec None: 16-bit PCM (baresip); "PCMU"/"PCMA": G.711 WAV as sipp's rtp_stream needs.
    """
    raw = tmp / "speech-raw.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True, timeout=60)
    out = tmp / f"speech-{codec or 'pcm'}.wav"
    enc = {"PCMU": ["-e", "u-law", "-b", "8"], "PCMA": ["-e", "a-law", "-b", "8"]}.get(
        codec or "", ["-e", "signed-integer", "-b", "16"]
    )
    subprocess.run(
        ["sox", str(raw), "-r", "8000", "-c", "1", *enc, str(out),
         "sinc", "300-3400", "silence", "1", "0.05", "1%", "reverse", "silence", "1", "0.05",
         "1%", "reverse"],
        check=True, timeout=60,
    )  # fmt: skip
    return out


def padded_speech_wav(
    tmp: Path, name: str, text: str, *, lead_s: float, total_s: float, voice: str = "sv"
) -> tuple[Path, np.ndarray]:
    """What a softphone (baresip) plays into a call: `lead_s` of silence, the speech, silence
    up to `total_s`, as a 16-bit 8 kHz WAV; and the speech alone, to compare with."""
    raw = tmp / f"{name}-raw.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True, timeout=60)
    clean = tmp / f"{name}-8k.wav"
    subprocess.run(
        ["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(clean), "sinc", "300-3400"],
        check=True, timeout=60,
    )  # fmt: skip
    reference = read_pcm16(clean)
    out = tmp / f"{name}.wav"
    tail = total_s - lead_s - len(reference) / RATE
    subprocess.run(
        ["sox", str(clean), str(out), "pad", str(lead_s), str(tail)], check=True, timeout=60
    )
    return out, reference


def silence_wav(path: Path, seconds: float) -> Path:
    """A phone that says nothing for `seconds` (16-bit 8 kHz)."""
    subprocess.run(
        ["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(path), "trim", "0", str(seconds)],
        check=True, timeout=30,
    )  # fmt: skip
    return path


def ulaw_silence_wav(path: Path, seconds: float = 1.0) -> Path:
    """Silence as raw μ-law, for sipp to stream (looped) between a caller's keys.

    No WAV header: sipp's rtp_stream sends the file's bytes as they are, so a header came out
    as a click at -8 dBFS once a loop, which kept a "silent" caller's recording from ever
    ending by silence.
    """
    path.write_bytes(b"\xff" * int(RATE * seconds))  # μ-law of 0
    return path


def tone_wav(path: Path, seconds: float, rate: int = RATE, tone_hz: float = 440.0) -> Path:
    """A 16-bit mono sine WAV (what the call server records after G.711 decoding)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = int(seconds * rate)
    samples = (
        int(8000 * math.sin(2 * math.pi * tone_hz * index / rate)) for index in range(frames)
    )
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(b"".join(struct.pack("<h", sample) for sample in samples))
    return path


def decode_g711_wav(path: Path) -> np.ndarray:
    """What sipp put on the wire, as linear samples (sox decodes the G.711 WAV)."""
    out = path.with_suffix(".lin.wav")
    subprocess.run(
        ["sox", str(path), "-e", "signed-integer", "-b", "16", str(out)], check=True, timeout=60
    )
    return read_pcm16(out)
