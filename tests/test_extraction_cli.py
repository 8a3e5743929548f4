"""`callserver extract` reads JSON lines and answers each one, even after a bad line."""

from __future__ import annotations

import io
import json

from transcription.extract_cli import run_extract

KEYS = {"personnummer", "status", "name", "intent", "appointment"}


def run(lines: list[str]) -> tuple[int, list[dict]]:
    stdout = io.StringIO()
    code = run_extract(io.StringIO("".join(line + "\n" for line in lines)), stdout)
    return code, [json.loads(line) for line in stdout.getvalue().splitlines()]


def test_one_result_line_per_input_line() -> None:
    code, results = run(
        [
            json.dumps({"text": "hej jag heter anna svensson mitt personnummer är 850612-1238"}),
            json.dumps({"text": "ring mig tack"}),
        ]
    )
    assert code == 0
    assert [set(result) for result in results] == [KEYS, KEYS]
    assert results[0]["personnummer"] == "19850612-1238"
    assert results[0]["status"] == "ok"
    assert results[0]["name"] == "Anna Svensson"
    assert results[1] == {
        "personnummer": None,
        "status": "none",
        "name": None,
        "intent": "callback",
        "appointment": None,
    }


def test_alternatives_are_used() -> None:
    code, results = run(
        [
            json.dumps(
                {
                    "text": "nitton nittiotre noll tre tretton elva åttionio",
                    "alternatives": ["nitton nittiotre noll tre trettio elva åttionio"],
                },
                ensure_ascii=False,
            )
        ]
    )
    assert code == 0
    assert (results[0]["status"], results[0]["personnummer"]) == ("corrected", "19930330-1189")


def test_bad_lines_give_an_error_line_and_processing_continues() -> None:
    code, results = run(
        [
            "not json",
            json.dumps({"txt": "typo in the key"}),
            json.dumps(["a list"]),
            json.dumps({"text": "hej", "alternatives": "not a list"}),
            json.dumps({"text": "jag vill avboka"}),
        ]
    )
    assert code == 1
    assert [set(result) for result in results[:4]] == [{"error"}] * 4
    assert results[0]["error"].startswith("line 1: not valid JSON")
    assert results[1]["error"].startswith("line 2:")
    assert results[4]["intent"] == "cancel"


def test_blank_lines_are_skipped() -> None:
    code, results = run(["", json.dumps({"text": "hej"}), "   "])
    assert code == 0
    assert len(results) == 1


def test_output_keeps_swedish_letters_readable() -> None:
    stdout = io.StringIO()
    run_extract(io.StringIO(json.dumps({"text": "jag heter åsa öberg"}) + "\n"), stdout)
    assert "Åsa Öberg" in stdout.getvalue()
