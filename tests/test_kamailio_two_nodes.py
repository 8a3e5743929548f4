"""Production shape: the shipped Kamailio in front of two `callserver serve` nodes that share
one PostgreSQL database and one recordings directory (docs/multinode.md).

- New calls are spread over both nodes; after a kill -9 of one node mid-call, new calls go to
  the other (dispatcher probes and failover), and the dead node's half-written recording
  becomes one `partial` ticket, filed by the survivor once the dead node's heartbeat lease has
  expired, not before, and only once.
- A live node's recording in progress is never taken by the other node, not even by its
  start-up sweep: it becomes one complete ticket when its call ends.

Exactly-once elsewhere on PostgreSQL: callbacks are dialled once across nodes
(tests/test_callbacks_postgres.py::test_two_dispatchers_dial_each_of_50_due_callbacks_exactly_once)
and transcription jobs are done once across worker processes
(tests/test_transcription_workers_postgres.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from callserver.node_lease import NODES_DIR, directory_name
from callserver.prompts import PromptLibrary
from tests.support.audio import decode_g711_wav, speech_wav
from tests.support.kamailio import Kamailio
from tests.support.server import ServerProcess
from tests.support.sipp import (
    ONE_UTTERANCE_ENV,
    Sipp,
    cancellation_scenario,
    scenario_copy,
    sipp_messages,
)
from tests.support.tools import require

pytestmark = [
    pytest.mark.peer,
    pytest.mark.postgres,
    require("kamailio", package="kamailio"),
    require("sipp", package="sip-tester"),
]

LEASE_S = 8.0
"""recording.node_lease_s for these nodes: a dead node's recordings are filed after this."""
LONG_MESSAGE = (
    "Hej, jag heter Per Andersson. Jag har en tid hos sjuksköterskan på måndag klockan nio, "
    "men jag ligger i influensa och kan inte komma. Jag vill gärna avboka den tiden och "
    "boka en ny tid nästa vecka om det går. Tack så mycket och hej då."
)


@dataclass
class Cluster:
    proxy: Kamailio
    nodes: dict[str, ServerProcess]
    recordings: Path

    def node_dir(self, name: str) -> Path:
        return self.recordings / NODES_DIR / directory_name(name)


@pytest.fixture
def cluster(tmp_path: Path, prompts_dir: Path, pg_url: str) -> Iterator[Cluster]:
    shared = tmp_path / "shared"  # one data directory: its recordings/ is the shared one
    nodes = {
        name: ServerProcess(
            data_dir=shared,
            prompts_dir=prompts_dir,
            peer_port=0,
            extra_env={
                **ONE_UTTERANCE_ENV,
                "CALLSERVER_DATABASE_URL": pg_url,
                "CALLSERVER_CALLBACKS_NODE_ID": name,
                "CALLSERVER_RECORDING_NODE_LEASE_S": str(LEASE_S),
                "CALLSERVER_RECORDING_SWEEP_INTERVAL_S": "1",
            },
        )  # fmt: skip
        for name in ("node-a", "node-b")
    }
    a, b = nodes.values()
    proxy = Kamailio(tmp_path / "kamailio", a.sip_port, nodes=[b.sip_port])
    for node in nodes.values():
        node.peer_port = proxy.port
    try:
        proxy.start()
        for node in nodes.values():
            node.start()
        proxy.wait_active([a.sip_port, b.sip_port])
        yield Cluster(proxy, nodes, shared / "recordings")
    finally:
        for node in nodes.values():
            node.stop()
        proxy.stop()


def short_call(tmp: Path, proxy: Kamailio, name: str) -> str:
    """One plain call from the PBX through Kamailio; its Call-ID."""
    directory = tmp / name
    directory.mkdir()
    scenario = scenario_copy("basic_call_uac.xml", directory, extra_headers="", extra_sdp="")
    code, output = Sipp(scenario, remote=f"127.0.0.1:{proxy.port}").start().wait(timeout=60)
    assert code == 0, f"{name}: {output[-3000:]}\n--- kamailio\n{proxy.log()[-3000:]}"
    return sipp_messages(directory, scenario)[0].header("Call-ID")


def answered_by(cluster: Cluster, call_id: str) -> list[str]:
    return [name for name, node in cluster.nodes.items() if call_id in node.log()]


def long_call(tmp: Path, proxy: Kamailio, prompts: PromptLibrary) -> Sipp:
    """A caller leaving a long message through Kamailio (the recording runs ~15 s)."""
    directory = tmp / "long"
    directory.mkdir()
    voice = speech_wav(directory, LONG_MESSAGE, codec="PCMU")
    seconds = len(decode_g711_wav(voice)) / 8000
    scenario = cancellation_scenario(directory, prompts, voice, seconds, pnr_keys="198506121238#")
    return Sipp(scenario, remote=f"127.0.0.1:{proxy.port}").start()


def recording_in_progress(cluster: Cluster, seconds: float) -> tuple[str, Path]:
    """Which node is recording (its name and the .part), once `seconds` of audio are on disk."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for name in cluster.nodes:
            part = next(iter(sorted(cluster.node_dir(name).rglob("*.wav.part"))), None)
            if part is not None and part.stat().st_size >= 44 + 16000 * seconds:
                return name, part
        time.sleep(0.1)
    logs = "\n".join(node.log()[-3000:] for node in cluster.nodes.values())
    raise AssertionError(f"no recording started:\n{logs}")


def test_calls_are_spread_and_a_killed_nodes_message_is_recovered_once_after_its_lease(
    tmp_path: Path, cluster: Cluster, prompt_library: PromptLibrary
) -> None:
    # Four calls, round robin: both nodes take some.
    spread = [answered_by(cluster, short_call(tmp_path, cluster.proxy, f"c{i}")) for i in range(4)]
    assert all(len(nodes) == 1 for nodes in spread), spread
    per_node = {name: sum(nodes == [name] for nodes in spread) for name in cluster.nodes}
    assert all(count >= 1 for count in per_node.values()), per_node

    caller = long_call(tmp_path, cluster.proxy, prompt_library)
    try:
        victim, part = recording_in_progress(cluster, seconds=3)
        survivor = next(name for name in cluster.nodes if name != victim)
        cluster.nodes[victim].kill9()
        killed_at = time.monotonic()
    finally:
        caller.kill()

    # While the dead node's lease runs, its recording is left alone (the survivor sweeps
    # every second meanwhile).
    time.sleep(3.0)
    assert time.monotonic() - killed_at < LEASE_S - 1
    assert part.exists() and cluster.nodes[survivor].tickets() == []

    # New calls go to the survivor.
    after = [
        answered_by(cluster, short_call(tmp_path, cluster.proxy, f"after{i}")) for i in range(3)
    ]
    assert after == [[survivor]] * 3, after

    # Once the lease has expired: one partial ticket, filed by the survivor.
    deadline = killed_at + LEASE_S + 20
    tickets = cluster.nodes[survivor].tickets()
    while not tickets and time.monotonic() < deadline:
        time.sleep(0.5)
        tickets = cluster.nodes[survivor].tickets()
    assert len(tickets) == 1, cluster.nodes[survivor].log()[-4000:]
    [ticket] = tickets
    assert time.monotonic() - killed_at >= LEASE_S
    assert ticket["partial"] is True
    assert ticket["personnummer"] == "198506121238"
    assert Path(ticket["recording_path"]).is_relative_to(cluster.node_dir(victim))
    assert not part.exists()
    assert f"left by dead node {directory_name(victim)}" in cluster.nodes[survivor].log()
    time.sleep(3.0)  # more sweeps: still one ticket
    assert len(cluster.nodes[survivor].tickets()) == 1


def test_a_live_nodes_recording_is_not_taken_by_the_other_node(
    tmp_path: Path, cluster: Cluster, prompt_library: PromptLibrary
) -> None:
    caller = long_call(tmp_path, cluster.proxy, prompt_library)
    try:
        recorder, part = recording_in_progress(cluster, seconds=1)
        other = next(name for name in cluster.nodes if name != recorder)
        # The other node restarts (its start-up sweep takes everything it may) and sweeps
        # every second for longer than a lease while the recording goes on.
        cluster.nodes[other].stop()
        cluster.nodes[other].start()
        time.sleep(LEASE_S + 2)
        assert part.exists(), "the other node took a live node's recording"
        assert cluster.nodes[other].tickets() == []
        code, output = caller.wait(timeout=90)
        assert code == 0, output[-3000:]
    finally:
        caller.kill()
    [ticket] = cluster.nodes[recorder].wait_for_tickets(1)
    assert ticket["partial"] is False
    assert Path(ticket["recording_path"]).is_relative_to(cluster.node_dir(recorder))
    time.sleep(2.0)
    assert len(cluster.nodes[other].tickets()) == 1
    assert "left by dead node" not in cluster.nodes[other].log()
