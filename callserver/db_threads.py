"""The call server's database work runs in bounded thread pools of its own.

asyncio.to_thread shares the event loop's default pool with every other blocking job (file
work, model loading, and in the past the staff UI's pages): a burst there made the callback
dispatcher's rounds and the call path's inserts wait. callserver/server.py makes one pool for
the call path and one for the dispatcher; file work stays in the default pool.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


async def in_db_thread(
    executor: Executor | None, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """`func(*args, **kwargs)` in `executor` (None: the loop's default pool, for tests).

    Runs in a copy of the caller's context, as asyncio.to_thread does (run_in_executor alone
    does not): the call's Call-ID (a context variable) stays on the log lines written there."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    return await loop.run_in_executor(
        executor, functools.partial(context.run, func, *args, **kwargs)
    )
