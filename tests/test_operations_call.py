"""Operations seen from outside during a real call: the Prometheus metrics change by exactly what
the call did, and the JSON log names the call on every line about it without a personnummer or
the caller's name. One sipp patient (keypad personnummer, a message, display name "Anna
Svensson") against a real `callserver serve` with metrics.listen and log.format = json."""

from __future__ import annotations

import collections
import json
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from callserver.prompts import PromptLibrary
from tests.support.audio import decode_g711_wav, speech_wav
from tests.support.ports import free_port
from tests.support.sipp import ONE_UTTERANCE_ENV, Sipp, cancellation_scenario, sipp_messages
from tests.support.tools import require

pytestmark = [pytest.mark.peer, require("sipp", package="sip-tester")]

CALLER_NAME = "Anna Svensson"
VOICE_TEXT = "Hej, jag heter Anna Svensson. Jag vill avboka min tid på tisdag klockan tio."
PERSONNUMMER = "198506121238"
PNR_PATTERN = re.compile(r"(?<!\d)(?:19|20)?\d{6}[-+]?\d{4}(?!\d)")
"""Any 10- or 12-digit personnummer shape, with or without its dash."""


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics: every sample by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=15) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def delta(before: dict, after: dict, name: str) -> dict[tuple, float]:
    """How each labelled series of `name` changed (series that did not change are left out)."""
    keys = {k for k in (*before, *after) if k[0] == name}
    changed = {k[1]: after.get(k, 0.0) - before.get(k, 0.0) for k in keys}
    return {labels: value for labels, value in changed.items() if value}


def response_classes(messages: list, direction: str) -> collections.Counter:
    return collections.Counter(
        ("class", f"{m.first_line.split()[1][0]}xx")
        for m in messages
        if m.direction == direction and m.first_line.startswith("SIP/2.0 ")
    )


def test_metrics_and_json_logs_of_a_real_call(
    tmp_path: Path, server_factory, prompt_library: PromptLibrary
) -> None:
    voice = speech_wav(tmp_path, VOICE_TEXT, codec="PCMU")
    voice_s = len(decode_g711_wav(voice)) / 8000
    scenario = cancellation_scenario(
        tmp_path, prompt_library, voice, voice_s, pnr_keys=f"{PERSONNUMMER}#"
    )
    scenario.write_text(scenario.read_text().replace('"Patient"', f'"{CALLER_NAME}"'))
    sipp = Sipp(scenario, remote="")
    metrics_port = free_port(socket.SOCK_STREAM)
    server = server_factory(
        peer_port=sipp.local_port,
        extra_env={
            **ONE_UTTERANCE_ENV,
            "CALLSERVER_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
            "CALLSERVER_LOG_FORMAT": "json",
        },
    ).start()
    before = scrape(metrics_port)
    sipp.remote = f"127.0.0.1:{server.sip_port}"
    sipp.start()
    code, output = sipp.wait(timeout=120)
    assert code == 0, f"sipp failed ({code}):\n{output[-4000:]}\n--- server\n{server.log()[-6000:]}"
    [ticket] = server.wait_for_tickets(1)
    after = scrape(metrics_port)

    # Metrics: exactly this call.
    assert delta(before, after, "callserver_calls_total") == {(("outcome", "ticket"),): 1.0}
    assert after[("callserver_active_calls", (("direction", "inbound"),))] == 0
    messages = sipp_messages(tmp_path, scenario)
    responses = delta(before, after, "callserver_sip_responses_total")
    by_direction: dict[str, dict] = {"sent": {}, "received": {}}
    for (klass, direction), value in responses.items():
        by_direction[direction[1]][klass] = value
    # What the server sent is what sipp received, message for message, and the other way round.
    assert by_direction["sent"] == dict(response_classes(messages, "received"))
    assert by_direction["received"] == dict(response_classes(messages, "sent"))
    assert by_direction["sent"][("class", "2xx")] >= 1
    assert delta(before, after, "callserver_recordings_total") == {(): 1.0}
    recorded = delta(before, after, "callserver_recording_seconds_total")[()]
    assert abs(recorded - ticket["duration_s"]) < 0.05
    assert after[("callserver_tickets_open", (("clinic", "demo"),))] == 1
    assert after[("callserver_tickets_overdue", (("clinic", "demo"),))] == 0
    assert after[("callserver_transcription_jobs", (("state", "model_missing"),))] == 1
    assert after[("callserver_database_up", ())] == 1
    ticks = ("callserver_media_clock_ticks_total", ())
    assert after[ticks] > before[ticks]
    assert ("callserver_media_clock_lateness_seconds", (("quantile", "0.99"),)) in after
    assert delta(before, after, "callserver_sip_dropped_total") == {}

    # Logs: every line is JSON; the call's lines carry its Call-ID; no patient in any line.
    call_id = next(m.header("Call-ID") for m in messages if m.direction == "sent")
    lines = [
        line
        for line in server.log().splitlines()
        if line.strip() and not line.startswith("callserver ready")
    ]
    records = [json.loads(line) for line in lines]  # each parses, or the test fails here
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    about_call = [r for r in records if r.get("call_id") == call_id]
    assert len(about_call) >= 10, "the call's own lines do not carry its Call-ID"
    loggers = {r["logger"] for r in about_call}
    # call_log runs in a database thread (callserver/db_threads.py): the Call-ID follows it
    assert {"callserver.live_call", "callserver.call_log"} <= loggers, loggers
    naming = [r for r in records if call_id in r["message"]]
    assert naming and all(r.get("call_id") == call_id for r in naming), [
        r for r in naming if r.get("call_id") != call_id
    ]
    text = server.log()
    assert PERSONNUMMER not in text and PERSONNUMMER[2:] not in text
    assert not PNR_PATTERN.search(text), PNR_PATTERN.search(text)
    assert CALLER_NAME not in text and "Svensson" not in text
    assert not re.search(r"digit_\d", text), "digits read back to the caller were logged"


def test_metrics_are_refused_to_addresses_not_allowed(tmp_path: Path, server_factory) -> None:
    metrics_port = free_port(socket.SOCK_STREAM)
    server = server_factory(
        peer_port=free_port(),
        web=True,  # the staff UI's /metrics is `callserver web`'s
        extra_env={
            "CALLSERVER_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
            "CALLSERVER_METRICS_ALLOW": "10.99.0.0/16",
        },
    ).start()
    for url in (
        f"http://127.0.0.1:{metrics_port}/metrics",
        f"http://127.0.0.1:{server.http_port}/metrics",
    ):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code == 403, url
