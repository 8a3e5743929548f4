"""`callserver transcribe FILE.wav`: transcribe a recording the way a live call would be.

For checking a model on real voicemails and re-running a recording staff query. The WAV is
brought down to 8 kHz first, so it takes the same path as a call (phone-band audio, then the
same upsampling to the model's rate) and gives the text a call would have given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from transcription.extraction import extract
from transcription.vosk_engine import SpeechModelError, load_model
from transcription.wav import WavError, read_wav_8k, transcribe_pcm


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
    transcript = transcribe_pcm(model, pcm)

    result: dict[str, Any] = {
        "text": transcript.text,
        "alternatives": transcript.alternatives,
        "confidence": round(transcript.confidence, 3),
        "model": transcript.model_name,
        "audio_seconds": round(transcript.audio_seconds, 2),
    }
    result["extraction"] = extract(transcript.text, alternatives=transcript.alternatives).to_json()
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
