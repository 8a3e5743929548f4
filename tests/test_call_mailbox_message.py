"""A temporary message typed in the running server's staff UI is what the very next caller hears
first, without a restart: the switchboard saves it over HTTP, a real softphone (baresip) calls,
and what baresip heard is compared with the message rendered in the prompt voice.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from aiohttp import ClientSession, CookieJar

from callserver.prompts import PromptLibrary, speak
from tests.support.audio import read_pcm16, silence_wav, xcorr_peak
from tests.support.baresip import Baresip
from tests.support.server import ServerProcess
from tests.support.tools import require
from tests.support.ui import csrf_from, first_login

pytestmark = [pytest.mark.peer, require("baresip", package="baresip-core")]

MESSAGE = "Mottagningen är stängd idag på grund av ett strömavbrott. Välkommen åter i morgon."
RATE = 8000


def best_lag(reference: np.ndarray, heard: np.ndarray) -> int:
    """Where (in samples) `reference` starts in `heard`: the peak of their cross-correlation."""
    a, b = reference - reference.mean(), heard - heard.mean()
    size = 1 << (len(a) + len(b) - 1).bit_length()
    corr = np.fft.irfft(np.conj(np.fft.rfft(a, size)) * np.fft.rfft(b, size), size)
    return int(np.argmax(corr[: len(b)]))


def call_and_listen(phone: Baresip, server: ServerProcess, seconds: float) -> np.ndarray:
    """One call to the demo clinic (100), `seconds` long from the answer; what baresip heard."""
    before = {path for path in phone.dumps() if "dec" in path.name}
    phone.events.clear()
    phone.command("dial", f"sip:100@127.0.0.1:{server.sip_port}")
    phone.wait_event("CALL_ESTABLISHED", timeout=20)
    time.sleep(seconds)
    phone.command("hangup")
    phone.wait_event("CALL_CLOSED", timeout=10)
    time.sleep(0.5)  # baresip closes its dump file after the call
    [heard] = [path for path in phone.dumps() if "dec" in path.name and path not in before]
    return read_pcm16(heard)


async def save_message(base_url: str) -> None:
    """The switchboard's first login (one-time password changed), then the message form."""
    async with ClientSession(base_url=base_url, cookie_jar=CookieJar(unsafe=True)) as client:
        await first_login(client, "vaxel", "växel-engång-1", "växel-lösen-2")
        page = await client.get("/clinics/demo/mailbox")
        assert page.status == 200
        saved = await client.post(
            "/clinics/demo/mailbox/message",
            data={"csrf_token": csrf_from(await page.text()), "kind": "text", "text": MESSAGE,
                  "valid_from": "", "valid_until": ""},
            allow_redirects=False,
        )  # fmt: skip
        assert saved.status == 303, await saved.text()


def test_the_next_call_after_saving_a_typed_message_hears_it_first(
    tmp_path: Path, server_factory, prompt_library: PromptLibrary
) -> None:
    message = np.frombuffer(speak(MESSAGE), dtype="<i2").astype(np.float64)
    welcome = np.frombuffer(prompt_library.get("welcome", "sv"), dtype="<i2").astype(np.float64)
    message_s = len(message) / RATE
    phone = Baresip(tmp_path / "baresip", silence_wav(tmp_path / "quiet.wav", 120), codecs="PCMU")
    server = server_factory(peer_port=phone.sip_port, web=True).start()  # the UI: `callserver web`
    pid = server.proc.pid if server.proc else None
    created = server.cli(
        "create-user", "vaxel", "--role", "switchboard", "--password-stdin",
        stdin="växel-engång-1\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    phone.start()
    try:
        before = call_and_listen(phone, server, 3.0)
        asyncio.run(save_message(f"http://127.0.0.1:{server.http_port}"))
        after = call_and_listen(phone, server, message_s + 3.0)
    finally:
        phone.stop()

    # Before: the call opens with the welcome and no message.
    assert xcorr_peak(welcome, before[: RATE * 3]) > 0.9
    assert xcorr_peak(message, before) < 0.5
    # After: the message, whole, then the welcome.
    assert xcorr_peak(message, after) > 0.9, server.log()[-3000:]
    starts = best_lag(message, after)
    assert starts < RATE * 1.5, f"the message started {starts / RATE:.2f} s into the call"
    welcome_at = best_lag(welcome, after[starts + len(message) - RATE // 2 :])
    assert welcome_at < RATE, "the welcome follows the message"
    # The same server process, never restarted.
    assert server.proc is not None and server.proc.pid == pid and server.proc.poll() is None
    assert len(list(server.data_dir.glob("server-*.log"))) == 1
    assert "clinic demo: mailbox settings version 1 in force" in server.log()
