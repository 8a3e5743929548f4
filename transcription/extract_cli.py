"""`callserver extract`: run the extraction over JSON lines, for batch checks and measurement.

One JSON object per line in, one per line out, in the same order, so the output can be pasted
next to the input. A bad line yields an error line instead of stopping the batch: one broken
transcript must not hide the results of the other thousand.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from transcription.extraction import extract


class _BadLine(ValueError):
    pass


def _parse(line: str) -> tuple[str, list[str]]:
    try:
        item: Any = json.loads(line)
    except json.JSONDecodeError as error:
        raise _BadLine(f"not valid JSON ({error.msg} at column {error.colno})") from error
    if not isinstance(item, dict):
        raise _BadLine('expected a JSON object like {"text": "..."}')
    text = item.get("text")
    if not isinstance(text, str):
        raise _BadLine('missing "text" (a string with the transcript)')
    alternatives = item.get("alternatives", [])
    if not isinstance(alternatives, list) or not all(isinstance(a, str) for a in alternatives):
        raise _BadLine('"alternatives" must be a list of strings')
    return text, alternatives


def run_extract(stdin: TextIO, stdout: TextIO) -> int:
    """Read `{"text": ..., "alternatives": [...]}` lines, write one result line for each.

    Blank lines are skipped. Returns 0, or 1 if any line could not be read (its output line
    is `{"error": ...}` naming the line number, so the operator can fix that input).
    """
    failed = False
    for number, line in enumerate(stdin, start=1):
        if not line.strip():
            continue
        try:
            text, alternatives = _parse(line)
        except _BadLine as error:
            failed = True
            result: dict[str, Any] = {"error": f"line {number}: {error}"}
        else:
            result = extract(text, alternatives=alternatives).to_json()
        stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    return 1 if failed else 0
