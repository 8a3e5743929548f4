"""`callserver transcribe FILE.wav`: transcribe a recording the way a live call would be.

For checking a model on real voicemails and re-running a recording staff query. The WAV is
brought down to 8 kHz first, so it takes the same path as a call (phone-band audio, then the
same upsampling to the model's rate) and gives the text a call would have given.
"""

from __future__ import annotations

import argparse
import json
import sys
import wave
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import soxr

from transcription.vosk_engine import INPUT_RATE, Recognition, SpeechModelError, load_model

try:
    from transcription.extraction import extract
except ImportError:  # the extraction half is developed separately; transcripts work alone
    extract = None  # type: ignore[assignment]

_FEED_SECONDS = 0.5


class WavError(ValueError):
    pass


def read_wav_8k(path: Path) -> bytes:
    """A PCM WAV (any rate, 8–32 bit, mono or mixed down) as 8 kHz 16-bit mono PCM."""
    try:
        with wave.open(str(path), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as error:
        raise WavError(f"{path}: not a PCM WAV file ({error})") from error
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


def run_transcribe(wav_path: Path, model_path: Path, out: TextIO) -> int:
    """Print the transcript, then one JSON line with its details and the extracted fields.

    Returns 0, or 1 with the reason on stderr when the model or the WAV cannot be used.
    """
    try:
        pcm = read_wav_8k(wav_path)
    except (WavError, OSError) as error:
        print(f"cannot read {wav_path}: {error}", file=sys.stderr)
        return 1
    try:
        model = load_model(model_path)
    except SpeechModelError as error:
        print(error, file=sys.stderr)
        return 1
    recognition = Recognition(model)
    step = int(INPUT_RATE * _FEED_SECONDS) * 2
    for offset in range(0, len(pcm), step):
        recognition.feed(pcm[offset : offset + step])
    transcript = recognition.finish()

    result: dict[str, Any] = {
        "text": transcript.text,
        "alternatives": transcript.alternatives,
        "confidence": round(transcript.confidence, 3),
        "model": transcript.model_name,
        "audio_seconds": round(transcript.audio_seconds, 2),
    }
    if extract is not None:
        result["extraction"] = extract(
            transcript.text, alternatives=transcript.alternatives
        ).to_json()
    out.write((transcript.text or "(no speech recognized)") + "\n")
    out.write(json.dumps(result, ensure_ascii=False) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wav", type=Path)
    parser.add_argument("--model", type=Path, required=True, help="unpacked vosk model dir")
    args = parser.parse_args(argv)
    return run_transcribe(args.wav, args.model, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
