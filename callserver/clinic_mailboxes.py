"""What a call to a clinic needs from its mailbox settings (storage/mailbox.py): the clinic file's
clinic with the staff UI's closure days and switchboard number over it, and the temporary
message's audio if one is in force.

Read per call, without a restart: one small query per call (the clinic's settings version), and
the settings with the message audio are reloaded only when the version moved. The version is
the only channel from the staff UI, which may run in another process, so a message saved there
is heard on the very next call. When the database cannot be read, the call goes on with the
settings last read for that clinic (closure days, switchboard number, temporary message), or the
clinic file alone if none were read since start: a setting must never cost a patient the call.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from callserver.prompts import PromptError, read_wav_pcm16
from config.clinics import Clinic
from config.clock import utcnow
from storage.mailbox import MailboxSettings, audio_dir, load_mailbox, mailbox_version

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallSettings:
    clinic: Clinic
    """The clinic file with the database's closure days and switchboard number over it."""
    message: bytes | None
    """The temporary message (8 kHz mono 16-bit PCM) when one is in force at the call's time."""


@dataclass(frozen=True)
class _Loaded:
    settings: MailboxSettings
    audio: bytes | None


class ClinicMailboxes:
    """The call server's per-clinic view of the settings, kept as long as their version holds."""

    def __init__(
        self,
        db: Callable[[], Session],
        mailbox_dir: Path,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.db, self.mailbox_dir, self.clock = db, mailbox_dir, clock
        self._loaded: dict[str, _Loaded] = {}
        self._lock = threading.Lock()

    def for_call(self, clinic: Clinic) -> CallSettings:
        """The settings a call to `clinic` starting now works with. Blocking (a query, maybe a
        file): the server runs it in a worker thread."""
        try:
            loaded = self._current(clinic.id)
        except SQLAlchemyError as exc:
            with self._lock:
                last = self._loaded.get(clinic.id)
            if last is None:
                log.error("mailbox settings of clinic %s unreadable (%s): this call follows the "
                          "clinic file alone", clinic.id, exc)  # fmt: skip
                return CallSettings(clinic, None)
            log.error("mailbox settings of clinic %s unreadable (%s): this call follows the "
                      "last ones read (version %d)", clinic.id, exc,
                      last.settings.version)  # fmt: skip
            loaded = last
        message = loaded.settings.message
        playing = message is not None and loaded.audio is not None and message.active(self.clock())
        return CallSettings(loaded.settings.apply(clinic), loaded.audio if playing else None)

    def _current(self, clinic_id: str) -> _Loaded:
        with self.db() as session:
            version = mailbox_version(session, clinic_id)
            held = self._loaded.get(clinic_id)
            if held is not None and held.settings.version == version:
                return held
            settings = load_mailbox(session, clinic_id)
        audio, complete = self._audio(settings)
        loaded = _Loaded(settings, audio)
        if complete:  # a missing file is looked for again on the next call
            with self._lock:
                current = self._loaded.get(clinic_id)
                if current is None or current.settings.version <= settings.version:
                    self._loaded[clinic_id] = loaded
        log.info("clinic %s: mailbox settings version %d in force", clinic_id, settings.version)
        return loaded

    def _audio(self, settings: MailboxSettings) -> tuple[bytes | None, bool]:
        """The message's audio, and whether what was found can be kept for later calls."""
        if settings.message is None:
            return None, True
        path = audio_dir(self.mailbox_dir, settings.clinic_id) / settings.message.audio
        try:
            return read_wav_pcm16(path), True
        except (OSError, EOFError, ValueError, wave.Error, PromptError) as exc:
            log.error("temporary message of clinic %s not played: %s unreadable (%s); set the "
                      "message again in the staff UI", settings.clinic_id, path, exc)  # fmt: skip
            return None, False
