"""Where a web process's CPU went: a summary of py-spy's collapsed stacks (bench_ui.py --py-spy).

Each sample is one thread's stack at one instant (idle threads are not sampled), so a
category's share is the share of busy samples whose stack passes through it; the first
matching category wins, in the order of CATEGORIES (the outermost meaning first: the
access-log commit is "commit", not "sqlite").

    .venv/bin/python bench/ui/profile_summary.py /tmp/prof/staff.txt ...
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

CATEGORIES: list[tuple[str, str]] = [
    ("session cookie: decrypt + parse", r"EncryptedCookieStorage\.load_session|Fernet\.decrypt"),
    ("session cookie: encrypt + set", r"EncryptedCookieStorage\.save_session|Fernet\.encrypt"),
    ("viewer: load user row", r"load_viewer|load_token_viewer"),
    ("commit (access-log INSERT + COMMIT)", r"SessionTransaction\.commit|Session\.commit|_flush"),
    ("queue: page query (_walk)", r"_walk \("),
    ("queue: count", r"_count \("),
    ("queue: row extras (_rows)", r"_rows \("),
    ("api v1: page query", r"page_tickets"),
    ("template render", r"render_template|Template\.render|jinja2"),
    ("json encode", r"json_response|dumps"),
    ("other SQLAlchemy / session setup", r"sqlalchemy"),
    ("aiohttp HTTP parse/write", r"aiohttp/(web_protocol|http_|web_response|web_request|streams)"),
    ("asyncio loop / threads", r"asyncio|concurrent/futures|threading"),
]


def summarize(path: Path) -> tuple[int, Counter[str]]:
    total = 0
    shares: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        for name, pattern in CATEGORIES:
            if re.search(pattern, stack):
                shares[name] += n
                break
        else:
            shares["rest"] += n
    return total, shares


def main() -> int:
    for arg in sys.argv[1:]:
        total, shares = summarize(Path(arg))
        print(f"\n{arg}: {total} busy samples")
        for name, n in shares.most_common():
            print(f"  {100 * n / total:5.1f} %  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
