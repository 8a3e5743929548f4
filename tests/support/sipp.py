"""sipp as a real SIP peer: scenarios from tests/scenarios, filled in per test, and what sipp
saw (its -trace_msg log).

## A caller's timetable

A sipp caller cannot hear the prompts: it presses keys and streams its voice on a timetable of
pauses counted from the answer. The IVR is built for callers who type ahead, and every
timetable here relies on exactly that and nothing more:

1. **Type ahead.** Digits typed while a prompt plays are buffered: an interruptible prompt
   stops, later interruptible prompts are skipped while digits wait, and each gather takes its
   share in order. So the keys for the questions before a recording are typed *early* (from
   about 1.5 s after the answer) in the order the questions come, never "just in time": a key
   that arrives after a gather timed out (6-15 s after its prompt) answers the wrong question.
   A slow server (two cores, a suite running alongside) only moves the questions later, which
   keys already waiting do not mind.
2. **`record()` clears the buffer.** A key meant for a recording (# to end it) must arrive after
   the beep, and so must the voice the recording should hold (the recorder only keeps frames
   that arrive after it started). Schedule both from the prompts the server plays first,
   measured with `PromptTimes` (the generated prompts' real lengths), plus a margin of
   RECORD_MARGIN_S for the server's own work. Prompts the typed-ahead keys skip cost nothing;
   prompts that cannot be interrupted (read-outs of times and numbers, recording instructions,
   the beep) always play in full.
3. **A voice into a recording ends it by silence** unless it starts within the server's
   silence limit after the beep: tests that stream a single utterance give the server
   RECORDING_SILENCE_S (longer than the margin), or stream the voice looped and end with #.
4. **One key every KEY_INTERVAL_S.** sipp sends a key every 400 ms and a new `play_dtmf` cuts
   the previous one short, so a step's pause must cover the keys before it (keys_scenario
   checks this).
5. **RTP for the whole call.** A phone sends RTP from the answer to the hang-up, silence
   included, and the server hangs up on one that stops (sip.rtp_timeout_s). So a keys_scenario
   caller streams silence (looped) from the answer; keys go out alongside it and a voice
   replaces it. (A voice into a recording made this way is not ended by silence, so it is
   looped and ended with #.)
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from callbacks.phone_numbers import speakable_groups
from callserver.prompts import PromptLibrary, beep
from tests.support.audio import ulaw_silence_wav
from tests.support.ports import free_port, free_port_range
from tests.support.server import ServerProcess

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
KEY_INTERVAL_S = 0.4
"""sipp's play_dtmf sends one key every 400 ms."""
RECORD_MARGIN_S = 3.0
"""After the latest moment the server can have started a recording: its own work (database,
fsync of the new recording) and a loaded machine."""
RECORDING_SILENCE_S = 8.0
"""recording.silence_seconds for servers whose callers stream one utterance RECORD_MARGIN_S
after the beep: the recording is not ended by silence before the voice arrives."""
ONE_UTTERANCE_ENV = {"CALLSERVER_RECORDING_SILENCE_SECONDS": str(RECORDING_SILENCE_S)}
"""The server's environment for such callers (ServerProcess.extra_env)."""
BEEP_S = len(beep()) / 2 / 8000
"""The beep before every recording (16-bit samples at 8 kHz)."""


@dataclass
class Sipp:
    """One sipp run (UAC or UAS) as a real process; stopped by PID if it overstays."""

    scenario: Path
    remote: str
    local_port: int = field(default_factory=free_port)
    media_port: int = field(default_factory=lambda: free_port_range(4)[0])
    service: str = "100"
    local_ip: str = "127.0.0.1"
    """The caller's own address (another loopback address, 127.0.0.2, is a second source)."""
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [
            "sipp", self.remote, "-sf", str(self.scenario), "-i", self.local_ip,
            "-p", str(self.local_port), "-mp", str(self.media_port), "-s", self.service,
            "-m", "1", "-l", "1", "-nostdin", "-recv_timeout", "60000",
            "-trace_err", "-trace_msg", *self.extra,
        ]  # fmt: skip

    def start(self) -> Sipp:
        self.proc = subprocess.Popen(
            self.command(), cwd=self.scenario.parent, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        return self

    def wait(self, timeout: float = 90.0) -> tuple[int, str]:
        """sipp's exit code (0: the scenario ran through) and its output with its traces."""
        assert self.proc is not None
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
            return -9, out + self.traces()
        return self.proc.returncode, out + self.traces()

    def traces(self) -> str:
        texts = []
        for path in sorted(self.scenario.parent.glob(f"{self.scenario.stem}_*_*.log")):
            texts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-6000:]}")
        return "\n".join(texts)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def run_from_peer(server: ServerProcess, scenario: Path, timeout: float = 60) -> None:
    """Run `scenario` against `server` from its trusted peer port; fail with both sides' logs
    (sipp's traces, the server's log) when the scenario does not run through."""
    sipp = Sipp(scenario, remote=f"127.0.0.1:{server.sip_port}", local_port=server.peer_port)
    code, output = sipp.start().wait(timeout=timeout)
    assert code == 0, f"sipp failed ({code}):\n{output[-4000:]}\n--- server\n{server.log()[-4000:]}"


def scenario_copy(name: str, tmp: Path, **values: object) -> Path:
    """Copy tests/scenarios/<name> into `tmp` (sipp writes its traces next to the scenario),
    replacing each `{key}` given in `values`; sipp's own `[keywords]` are left alone."""
    text = (SCENARIOS / name).read_text()
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(value))
    path = tmp / name
    path.write_text(text)
    return path


@dataclass(frozen=True)
class SippMessage:
    """One SIP message from sipp's -trace_msg log."""

    direction: str  # "sent" or "received"
    text: str
    at: float  # Unix time sipp logged it

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    def header(self, name: str) -> str:
        for line in self.text.splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() == name.lower():
                return value.strip()
        return ""


def sipp_messages(tmp: Path, scenario: Path) -> list[SippMessage]:
    """The SIP messages, sent and received, in sipp's -trace_msg log(s) for `scenario`."""
    found: list[SippMessage] = []
    for path in sorted(tmp.glob(f"{scenario.stem}_*_messages.log")):
        text = path.read_text(errors="replace")
        parts = re.split(r"^-{20,} ?(.*)$", text, flags=re.MULTILINE)
        for stamp, chunk in zip(parts[1::2], parts[2::2], strict=True):
            head, _, body = chunk.strip().partition("\n")
            try:
                at = datetime.strptime(stamp.strip(), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            except ValueError:
                at = found[-1].at if found else 0.0  # "Unexpected message" blocks: no time
            if "message sent" in head:
                found.append(SippMessage("sent", body.strip(), at))
            elif "message received" in head:
                found.append(SippMessage("received", body.strip(), at))
    return found


def received_responses(tmp: Path, scenario: Path) -> list[tuple[int, str]]:
    """(status code, CSeq method) of every response sipp received, in order."""
    out = []
    for msg in sipp_messages(tmp, scenario):
        if msg.direction == "received" and msg.first_line.startswith("SIP/2.0 "):
            out.append((int(msg.first_line.split()[1]), msg.header("CSeq").split()[-1]))
    return out


# -- timetables -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptTimes:
    """How long the server speaks before it listens: the real lengths of the generated prompts,
    so a timetable follows the prompts when their text changes."""

    library: PromptLibrary

    def of(self, *names: str) -> float:
        return sum(self.library.duration(name) for name in names)

    def number(self, number: str) -> float:
        """`say_number`: the digits, a pause after each group ("070 - 123 45 67")."""
        groups = speakable_groups(number)
        digits = [f"digit_{d}" for group in groups for d in group if d.isdigit()]
        return self.of(*digits) + len(groups) * self.library.duration("pause")

    def longest_time(self) -> float:
        """`say_time` of a slot at its longest ("torsdag mellan 23 59 och 23 59")."""
        days = ["today", "tomorrow", *(f"weekday_{d}" for d in range(7))]
        day = max(self.library.duration(name) for name in days)
        num = max(self.library.duration(f"num_{n}") for n in range(60))
        return day + self.of("between", "and") + 4 * num


def keys_scenario(
    tmp: Path, caller: str, steps: list[tuple[float, str]], *, name: str = "keys",
    bye_timeout_s: float = 60,
) -> Path:  # fmt: skip
    """A sipp caller that waits `pause` seconds then presses `keys`, for each step in turn
    ("rtp:FILE.wav" instead of keys streams that μ-law WAV, looped, in place of the silence
    the caller sends from the answer on; "rtp:pause" stops sending RTP altogether), then waits
    for the server's BYE. See "A caller's timetable" above for how to choose the pauses."""
    previous = ""
    for pause, keys in steps:
        needed = round(KEY_INTERVAL_S * len(previous), 3)
        if pause < needed:
            raise ValueError(
                f"{pause} s after {previous!r} cuts those keys short: wait at least {needed} s"
            )
        previous = "" if keys.startswith("rtp:") else keys

    def action(keys: str) -> str:
        if keys == "rtp:pause":  # a phone that died: no RTP at all from here on
            return '<exec rtp_stream="pause"/>'
        if keys.startswith("rtp:"):  # stream a G.711 WAV (looped) as the caller's voice
            return f'<exec rtp_stream="{keys[4:]},-1,0"/>'
        return f'<exec play_dtmf="{keys}"/>'

    silence = ulaw_silence_wav(tmp / "silence-ulaw.wav")
    body = "\n".join(
        [f"  <nop><action>{action(f'rtp:{silence.name}')}</action></nop>"]
        + [
            f'  <pause milliseconds="{int(pause * 1000)}"/>\n'
            f"  <nop><action>{action(keys)}</action></nop>"
            for pause, keys in steps
        ]
    )
    text = (
        (SCENARIOS / "keys_uac.xml")
        .read_text()
        .format(caller=caller, steps=body, bye_timeout_ms=int(bye_timeout_s * 1000))
    )
    path = tmp / f"{name}.xml"
    path.write_text(text)
    return path


def cancellation_scenario(
    tmp: Path, prompts: PromptLibrary, voice: Path, voice_s: float, *, pnr_keys: str,
    codec: str = "PCMU", confirm_wait_s: float = 1.0,
) -> Path:  # fmt: skip
    """A patient with a cancellation (tests/scenarios/cancellation_uac.xml): menu 1, the
    personnummer keys and #, 1 to confirm the read-back, then `voice` (a G.711 WAV of
    `voice_s` seconds) as the message, ended with #.

    The keys are typed ahead (rule 1); the voice starts RECORD_MARGIN_S after the latest beep,
    so the server must run with ONE_UTTERANCE_ENV (rule 3).
    """
    until_beep = PromptTimes(prompts).of("record_instructions") + BEEP_S
    text = (
        (SCENARIOS / "cancellation_uac.xml")
        .read_text()
        .format(
            caller="0701234567",
            codec_pt={"PCMU": 0, "PCMA": 8}[codec],
            codec_name=codec,
            pnr_keys=pnr_keys,
            readback_wait_ms=int((KEY_INTERVAL_S * len(pnr_keys) + confirm_wait_s) * 1000),
            before_voice_ms=int((until_beep + RECORD_MARGIN_S) * 1000),
            voice_file=voice.name,
            voice_ms=int(voice_s * 1000) + 300,
        )
    )
    path = tmp / "uac.xml"
    path.write_text(text)
    if voice.parent != tmp:
        (tmp / voice.name).write_bytes(voice.read_bytes())
    return path
