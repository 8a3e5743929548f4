"""A failing end-to-end test shows the logs of the processes it used (support/failure_logs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import failure_logs
from tests.support.kamailio import Kamailio
from tests.support.server import ServerProcess


def server_with_log(tmp_path: Path, name: str, text: str) -> ServerProcess:
    """A ServerProcess as it is after start(): its log file written, noted as started."""
    server = ServerProcess(data_dir=tmp_path / name, prompts_dir=tmp_path, peer_port=9)
    server.data_dir.mkdir()
    server.log_path = server.data_dir / "server.log"
    server.log_path.write_text(text)
    failure_logs.started(server)
    return server


def test_sections_hold_the_tail_of_each_process_started_or_used(tmp_path: Path) -> None:
    module_server = server_with_log(tmp_path, "module", "started earlier\n" + "m" * 7000 + "END")
    failure_logs.pytest_runtest_logstart("this test", ("x.py", None, "this test"))
    own_server = server_with_log(tmp_path, "own", "own server log\n")
    proxy = Kamailio(tmp_path / "kamailio", server_port=5070)
    proxy.run_dir.mkdir()
    proxy.log_path.write_text("kamailio log\n")
    failure_logs.started(proxy)
    stranger = ServerProcess(data_dir=tmp_path, prompts_dir=tmp_path, peer_port=9)
    funcargs = {"sip_server": module_server, "kamailio": proxy, "other": stranger, "n": 3}

    processes = failure_logs.processes_of(funcargs, failure_logs._this_test)
    sections = failure_logs.failure_sections(processes)

    assert processes == [own_server, proxy, module_server]  # each once, never the stranger
    titles = [title for title, _ in sections]
    assert titles == [
        f"ServerProcess log {own_server.log_path} (last 6000 chars)",
        f"Kamailio log {proxy.log_path} (last 6000 chars)",
        f"ServerProcess log {module_server.log_path} (last 6000 chars)",
    ]
    assert sections[0][1] == "own server log\n"
    assert len(sections[2][1]) == failure_logs.TAIL_CHARS and sections[2][1].endswith("END")


def test_a_process_without_a_log_adds_no_section(tmp_path: Path) -> None:
    never_started = ServerProcess(data_dir=tmp_path, prompts_dir=tmp_path, peer_port=9)
    assert failure_logs.failure_sections([never_started]) == []


def test_the_report_of_a_failing_test_carries_the_logs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_inner="""
        from pathlib import Path

        from tests.support import failure_logs


        class Peer:
            def __init__(self, path):
                self.log_path = path

            def log(self):
                return self.log_path.read_text()


        def test_fails(tmp_path):
            path = tmp_path / "peer.log"
            path.write_text("the peer said: 503 Service Unavailable")
            failure_logs.started(Peer(path))
            assert False, "no ticket"


        def test_passes(tmp_path):
            path = tmp_path / "quiet.log"
            path.write_text("nothing to see")
            failure_logs.started(Peer(path))
        """
    )
    result = pytester.runpytest_inprocess("-p", "tests.support.failure_logs")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*Peer log *peer.log (last 6000 chars)*", "*503 Service Unavailable*"]
    )
    assert "nothing to see" not in result.stdout.str()
