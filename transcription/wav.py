"""Reading recordings from disk in the form every recognizer path takes: 8 kHz 16-bit mono.

A WAV may come from our own recorder (already 8 kHz 16-bit) or from anywhere else (a staff
member's test file, a model check): it is mixed down and resampled with soxr, so a file is
recognized exactly as the same audio arriving on a call would be.
"""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import soxr

from transcription.vosk_engine import INPUT_RATE, Recognition, SpeechModel, Transcript


class WavError(ValueError):
    pass


def read_wav_8k(path: Path) -> bytes:
    """A PCM WAV (any rate, 8–32 bit, mono or mixed down) as 8 kHz 16-bit mono PCM."""
    try:
        with wave.open(str(path), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError, RuntimeError, struct.error) as error:
        # A damaged header: the wave module raises RuntimeError for a chunk size past the
        # end of the file and struct.error for a truncated one.
        raise WavError(f"{path}: not a PCM WAV file ({type(error).__name__} {error})") from error
    if width == 1:
        samples = (np.frombuffer(frames, dtype=np.uint8).astype(np.float32) - 128) * 256
    elif width == 2:
        samples = np.frombuffer(frames, dtype="<i2").astype(np.float32)
    elif width == 3:
        raw = np.frombuffer(frames, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        samples = (np.where(value >= 1 << 23, value - (1 << 24), value) / 256).astype(np.float32)
    elif width == 4:
        samples = (np.frombuffer(frames, dtype="<i4") / 65536).astype(np.float32)
    else:
        raise WavError(f"{path}: {8 * width}-bit samples are not supported")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    if rate != INPUT_RATE:
        samples = soxr.resample(samples, rate, INPUT_RATE)
    return np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()


def transcribe_pcm(model: SpeechModel, pcm: bytes) -> Transcript:
    """Recognize a whole recording (8 kHz 16-bit) at once, as a call would have been.

    Blocking and CPU-bound (seconds per minute of audio): run it in a worker thread.
    """
    recognition = Recognition(model)
    recognition.feed(pcm)
    return recognition.finish()
