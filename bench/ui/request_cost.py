"""What one queue request costs, one at a time, with the page cache hitting and missing.

In-process (aiohttp test client on the same loop, so its share is included): seed N tickets
as bench_ui.py does, log in, then per load 400 requests served from the cache and 200 with
the page and count caches emptied before each (the whole read: page, rows, count). Wall time
per request, no concurrency: the cost a page has when nothing else is queued.

    flock /tmp/cpu.lock .venv/bin/python bench/ui/request_cost.py 50000
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from bench.ui import bench_ui  # noqa: E402
from staff_ui import ticket_queue  # noqa: E402
from staff_ui.app import create_app  # noqa: E402
from staff_ui.context import PAGE_CACHE  # noqa: E402
from storage.db import make_engine, make_session_factory  # noqa: E402
from tests.support.ui import csrf_from  # noqa: E402

KEY = b"0123456789abcdef0123456789abcdef"
LOADS = [
    ("personal", "/"),
    ("vaxel", "/"),
    ("personal", "/?status=all"),
    ("vaxel", "/?status=all"),
    ("personal", "/api/v1/tickets"),
]


async def main(tickets: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-ui-cost-"))
    url = f"sqlite:///{tmp / 'callserver.db'}"
    bench_ui.seed(url, tickets)
    factory = make_session_factory(make_engine(url))
    for user, path in LOADS:
        async with TestClient(TestServer(create_app(factory, KEY))) as client:
            page = await client.get("/login")
            form = {"username": user, "password": bench_ui.PASSWORD,
                    "csrf_token": csrf_from(await page.text())}  # fmt: skip
            await client.post("/login", data=form)
            times = []
            for miss, count in ((False, 400), (True, 200)):
                for _ in range(20):
                    await (await client.get(path)).read()
                started = time.perf_counter()
                for _ in range(count):
                    if miss:
                        client.app[PAGE_CACHE]._entries.clear()
                        ticket_queue.COUNTS._counts.clear()
                    response = await client.get(path)
                    assert response.status == 200
                    await response.read()
                times.append((time.perf_counter() - started) / count * 1000)
            print(f"{user:9s} {path:18s} cached {times[0]:.2f} ms  not cached {times[1]:.2f} ms")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000))
