"""`callserver` command line: serve, migrate, set up, check, manage users and API tokens, list
tickets."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from config.settings import Settings, SettingsError, load_settings


def _setup_logging(settings: Settings) -> None:
    from callserver.logs import setup_logging

    setup_logging(settings.log.level, settings.log.format)


def _sync_clinics(settings: Settings) -> None:
    from config.clinics import load_clinics
    from storage.clinics import upsert_clinic
    from storage.db import make_engine, make_session_factory

    clinics = load_clinics(Path(settings.clinics.dir), settings.clinics.timezone)
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session, session.begin():
            for clinic in clinics.values():
                upsert_clinic(session, clinic.id, clinic.name)
    finally:
        engine.dispose()


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from storage.db import migrate

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.database_url)
    _sync_clinics(settings)
    print(f"database ready: {settings.database_url.split('@')[-1]}")
    return 0


def cmd_generate_prompts(settings: Settings, args: argparse.Namespace) -> int:
    from callserver.prompts import generate_prompts

    count = generate_prompts(settings.prompts_dir)
    print(f"prompts ready in {settings.prompts_dir} ({count} generated)")
    return 0


def cmd_create_user(settings: Settings, args: argparse.Namespace) -> int:
    from storage.db import make_engine, make_session_factory
    from storage.users import create_user

    if not args.password_stdin:
        print(
            "error: pass --password-stdin and give the password on standard input", file=sys.stderr
        )
        return 2
    password = sys.stdin.readline().rstrip("\r\n")
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session, session.begin():
            user = create_user(
                session, args.username, args.role, args.clinic or [], password,
                must_change_password=True,
            )  # fmt: skip
            print(f"created {'+'.join(sorted(user.roles))} user {user.username!r} (must choose "
                  "a new password at first login)")  # fmt: skip
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


def cmd_disable_user(settings: Settings, args: argparse.Namespace) -> int:
    """Disable an account and end every session it has, at once."""
    from sqlalchemy import select

    from storage.db import make_engine, make_session_factory
    from storage.models import StaffUser
    from storage.users import normalize_username, set_active

    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session, session.begin():
            name = normalize_username(args.username)
            user = session.scalar(select(StaffUser).where(StaffUser.username == name))
            if user is None:
                print(f"error: no user {name!r}", file=sys.stderr)
                return 1
            set_active(session, user, False)
    finally:
        engine.dispose()
    print(f"disabled user {name!r}; their sessions are ended")
    return 0


def cmd_create_token(settings: Settings, args: argparse.Namespace) -> int:
    """A bearer token for /api/v1 (the booking system), printed once: only its hash is kept."""
    from storage.api_tokens import create_token
    from storage.db import make_engine, make_session_factory

    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session, session.begin():
            row, token = create_token(session, args.name, args.clinic or [])
            name, clinics = row.name, sorted(c.id for c in row.clinics)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(token)
    print(f"created token {name!r} for clinic(s) {', '.join(clinics)}: it is shown only now; "
          f"revoke it with `callserver revoke-token {name}`", file=sys.stderr)  # fmt: skip
    return 0


def cmd_revoke_token(settings: Settings, args: argparse.Namespace) -> int:
    """Revoke a token; requests with it are refused (401) from the next one on."""
    from storage.api_tokens import revoke_token
    from storage.db import make_engine, make_session_factory

    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session, session.begin():
            revoked = revoke_token(session, args.name)
    finally:
        engine.dispose()
    if not revoked:
        print(f"error: no live token named {args.name!r}", file=sys.stderr)
        return 1
    print(f"revoked token {args.name.strip().lower()!r}")
    return 0


DEMO_USERS = (("admin", ("admin",), ()), ("personal", ("staff",), ("demo",)))
"""What seed-demo creates: the administrator, and a member of the demo clinic's staff (who
handles the demo clinic's tickets: an administrator does not do clinical work, and sees no
patient data unless also given the staff role on the admin pages)."""


def cmd_seed_demo(settings: Settings, args: argparse.Namespace) -> int:
    """Create the demo accounts once each, with one-time passwords printed for the operator."""
    from sqlalchemy import select

    from storage.clinics import upsert_clinic
    from storage.db import make_engine, make_session_factory
    from storage.models import Clinic, StaffUser
    from storage.users import create_user

    engine = make_engine(settings.database_url)
    created: list[tuple[str, str]] = []
    try:
        with make_session_factory(engine)() as session, session.begin():
            for username, roles, clinics in DEMO_USERS:
                if session.scalar(select(StaffUser.id).where(StaffUser.username == username)):
                    print(f"user {username!r} exists already (reset it with create-user under "
                          "a new name)")  # fmt: skip
                    continue
                for clinic_id in clinics:
                    if session.get(Clinic, clinic_id) is None:
                        upsert_clinic(session, clinic_id, "Demomottagningen")
                password = secrets.token_urlsafe(12)
                create_user(session, username, roles, clinics, password, must_change_password=True)
                created.append((username, password))
    finally:
        engine.dispose()
    for username, password in created:
        print(f"created user {username!r} with one-time password: {password}")
    return 0


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    from callserver.checks import run_checks

    return _print_checks(run_checks(settings, args.config), as_json=args.json)


def _print_checks(checks: list, *, as_json: bool) -> int:
    from callserver.checks import report

    text, status = report(checks)
    if as_json:
        print(json.dumps({"ok": status == 0, "checks": [c.to_json() for c in checks]},
                         ensure_ascii=False))  # fmt: skip
    else:
        print(text)
    return status


def event_loop_factory(settings: Settings) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """runtime.event_loop as asyncio.Runner's loop_factory (None: CPython's own loop).

    Raises SystemExit(2) with what to do when uvloop is asked for but not installed."""
    if settings.runtime.event_loop != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        print(
            "error: runtime.event_loop = 'uvloop' but uvloop is not installed: "
            "pip install uvloop (or set runtime.event_loop = 'asyncio')",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    return uvloop.new_event_loop


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from callserver.server import serve

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with asyncio.Runner(loop_factory=event_loop_factory(settings)) as runner:
        runner.run(serve(settings))
    return 0


def cmd_web(settings: Settings, args: argparse.Namespace) -> int:
    from callserver.server import serve_web, serve_web_processes

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    processes = args.processes if args.processes is not None else settings.http.processes
    if processes < 1:
        print("error: --processes must be at least 1", file=sys.stderr)
        return 2
    loop_factory = event_loop_factory(settings)
    if processes > 1:
        return serve_web_processes(settings, processes, loop_factory)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve_web(settings))
    return 0


def cmd_transcribe_worker(settings: Settings, args: argparse.Namespace) -> int:
    """Transcribe queued messages until SIGTERM/SIGINT, against the shared database and
    recordings directory: how a region adds transcription capacity on any node."""
    import os
    import signal
    import socket
    import threading

    from callserver.transcribe_workers import TranscribeWorkers
    from storage.db import make_engine, make_session_factory
    from transcription.vosk_engine import SpeechModelError, load_model

    if not settings.stt.model_path:
        print(
            "error: no speech model configured: set stt.model_path (CALLSERVER_STT_MODEL_PATH) "
            "to the same model the servers use",
            file=sys.stderr,
        )
        return 2
    try:
        model = load_model(Path(settings.stt.model_path))
    except SpeechModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    node = args.node_id or f"{socket.gethostname()}:worker:{os.getpid()}"
    engine = make_engine(settings.database_url)
    workers = TranscribeWorkers(
        make_session_factory(engine),
        model,
        threads=args.threads or os.cpu_count() or 1,
        node_id=node,
        lease_s=settings.stt.lease_s,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        workers.start()
        print(f"transcribe-worker ready: {node}, {workers.threads} threads", flush=True)
        stop.wait()
    finally:
        workers.stop()
        engine.dispose()
    return 0


def cmd_transcription_status(settings: Settings, args: argparse.Namespace) -> int:
    from storage.db import make_engine, make_session_factory
    from storage.transcription_queue import status

    engine = make_engine(settings.database_url)
    try:
        report = status(make_session_factory(engine))
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(report.to_json()))
        return 0
    oldest = report.oldest_pending_age_s
    print(f"queued:         {report.pending} pending, {report.running} running"
          f", {report.model_missing} waiting for a speech model")  # fmt: skip
    print(f"oldest pending: {'-' if oldest is None else f'{oldest:.0f} s'}")
    print(f"workers alive:  {report.workers_alive} ({report.worker_threads} threads)")
    print(f"last hour:      {report.done_last_hour} done, {report.failed_last_hour} failed")
    return 0


def cmd_retention(settings: Settings, args: argparse.Namespace) -> int:
    """Delete now what is past its retention period (or, with --dry-run, only count it)."""
    from storage.db import make_engine, make_session_factory
    from storage.retention import KINDS, Policy, purge

    policy = Policy.from_settings(settings.retention)
    if policy.keeps_everything:
        print("no retention period is set (retention.*): everything is kept forever")
        return 0
    engine = make_engine(settings.database_url)
    try:
        counts = purge(make_session_factory(engine), policy, dry_run=args.dry_run)
    finally:
        engine.dispose()
    verb = "would delete" if args.dry_run else "deleted"
    for kind in KINDS:
        print(f"{verb} {counts[kind]:6d} {kind.replace('_', ' ')}")
    return 0


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    from callserver.backup import BackupError, backup

    try:
        manifest = backup(settings, Path(args.directory))
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"backup in {args.directory}: database ({manifest['database']['kind']}), "
          f"{manifest['recordings']} recording files")  # fmt: skip
    return 0


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    from callserver.backup import BackupError, restore

    try:
        restored = restore(settings, Path(args.directory), force=args.force)
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"restored database and {restored} recording files into {settings.data_dir}")
    return 0


NO_TRANSCRIPT = {
    "model_missing": "no transcript: speech model missing",
    "error": "no transcript: speech recognition failed (see the server log)",
}
"""The operator's note for a ticket without a transcript (staff see it in Swedish)."""


def cmd_tickets_list(settings: Settings, args: argparse.Namespace) -> int:
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from storage.db import make_engine, make_session_factory
    from storage.models import Ticket

    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            tickets = session.scalars(
                select(Ticket).options(selectinload(Ticket.recording)).order_by(Ticket.id)
            )
            for t in tickets:
                row = {
                    "id": t.id,
                    "clinic": t.clinic_id,
                    "status": t.status,
                    "partial": t.partial,
                    "personnummer": t.personnummer,
                    "personnummer_source": t.personnummer_source,
                    "name": t.name,
                    "recording_path": t.recording.path if t.recording else None,
                    "duration_s": round(t.recording.duration_s, 2) if t.recording else None,
                    "transcript": t.transcript,
                    "transcript_status": t.transcript_status,
                    "speech_personnummer": t.speech_personnummer,
                    "speech_personnummer_status": t.speech_personnummer_status,
                    "personnummer_disagreement": t.personnummer_disagreement,
                    "intent": t.intent,
                    "appointment": t.appointment,
                    "note": NO_TRANSCRIPT.get(t.transcript_status or "", t.free_text),
                    "created_at": t.created_at.isoformat(),
                }
                if args.json:
                    print(json.dumps(row, ensure_ascii=False))
                else:
                    print(
                        f"{t.id:6d} {t.clinic_id:10s} {t.status:10s} "
                        f"{row['duration_s'] or 0:6.1f}s {t.created_at:%Y-%m-%d %H:%M}"
                    )
    finally:
        engine.dispose()
    return 0


def cmd_callbacks_list(settings: Settings, args: argparse.Namespace) -> int:
    from callbacks.export import list_callbacks_json
    from storage.db import make_engine, make_session_factory

    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            for row in list_callbacks_json(session):
                print(json.dumps(row, ensure_ascii=False, default=str))
    finally:
        engine.dispose()
    return 0


def cmd_extract(settings: Settings, args: argparse.Namespace) -> int:
    from transcription.extract_cli import run_extract

    return run_extract(sys.stdin, sys.stdout)


def cmd_transcribe(settings: Settings, args: argparse.Namespace) -> int:
    from transcription.transcribe_cli import run_transcribe

    if not settings.stt.model_path:
        print(
            "error: no speech model configured: run `callserver fetch-model` and set "
            "stt.model_path (CALLSERVER_STT_MODEL_PATH)",
            file=sys.stderr,
        )
        return 2
    return run_transcribe(Path(args.wav), Path(settings.stt.model_path), sys.stdout)


def cmd_fetch_model(settings: Settings, args: argparse.Namespace) -> int:
    from transcription.model_fetch import ModelFetchError, fetch_model

    try:
        path = fetch_model(settings.data_dir)
    except ModelFetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f'model ready at {path}: set stt.model_path = "{path}" (or CALLSERVER_STT_MODEL_PATH)')
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callserver", description=__doc__)
    parser.add_argument("--config", help="settings file (default config/callserver.toml)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "serve", help="run the SIP server, media, callbacks and transcription (UI: `web`)"
    ).set_defaults(func=cmd_serve)
    web = sub.add_parser("web", help="serve the staff UI and its JSON API (http.host:http.port)")
    web.add_argument(
        "--processes", type=int, help="UI processes sharing the port (default http.processes)"
    )
    web.set_defaults(func=cmd_web)
    sub.add_parser("migrate", help="create/upgrade the database").set_defaults(func=cmd_migrate)
    sub.add_parser("generate-prompts", help="(re)generate prompt WAVs with espeak-ng").set_defaults(
        func=cmd_generate_prompts
    )
    sub.add_parser(
        "seed-demo", help="create the admin and the demo clinic's staff user once"
    ).set_defaults(func=cmd_seed_demo)
    check = sub.add_parser(
        "check", help="is everything in place to take calls? (exit status 1 if not)"
    )
    check.add_argument("--json", action="store_true", help="one JSON object with every check")
    check.set_defaults(func=cmd_check)
    user = sub.add_parser(
        "create-user", help="add an account with one or more roles: staff, switchboard, admin"
    )
    user.add_argument("username")
    user.add_argument(
        "--role", required=True, action="append", choices=["staff", "switchboard", "admin"],
        help="repeat for several (e.g. --role admin --role staff: a clinic's admin who is "
        "also its staff)",
    )  # fmt: skip
    user.add_argument("--clinic", action="append", help="clinic id (repeat for several)")
    user.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    user.set_defaults(func=cmd_create_user)
    disable = sub.add_parser("disable-user", help="disable an account and end its sessions")
    disable.add_argument("username")
    disable.set_defaults(func=cmd_disable_user)
    token = sub.add_parser(
        "create-token", help="a bearer token for /api/v1 (printed once on stdout)"
    )
    token.add_argument("name", help="who uses it, e.g. booking (named token:NAME in the log)")
    token.add_argument(
        "--clinic", action="append", required=True, help="clinic id it sees (repeat for several)"
    )
    token.set_defaults(func=cmd_create_token)
    revoke = sub.add_parser("revoke-token", help="revoke an API token at once")
    revoke.add_argument("name")
    revoke.set_defaults(func=cmd_revoke_token)
    tickets = sub.add_parser("tickets", help="cancellation tickets")
    tsub = tickets.add_subparsers(dest="tickets_command", required=True)
    tlist = tsub.add_parser("list", help="list tickets")
    tlist.add_argument("--json", action="store_true", help="one JSON object per line")
    tlist.set_defaults(func=cmd_tickets_list)
    callbacks = sub.add_parser("callbacks", help="booked callbacks")
    csub = callbacks.add_subparsers(dest="callbacks_command", required=True)
    clist = csub.add_parser("list", help="list callbacks")
    clist.add_argument("--json", action="store_true", help="one JSON object per line")
    clist.set_defaults(func=cmd_callbacks_list)
    sub.add_parser(
        "extract", help='fields from JSON lines {"text": ...} on stdin, one JSON line each'
    ).set_defaults(func=cmd_extract)
    transcribe = sub.add_parser("transcribe", help="transcribe a WAV and extract its fields")
    transcribe.add_argument("wav")
    transcribe.set_defaults(func=cmd_transcribe)
    sub.add_parser(
        "fetch-model", help="download and verify the Swedish vosk model into the data dir"
    ).set_defaults(func=cmd_fetch_model)
    worker = sub.add_parser(
        "transcribe-worker", help="transcribe queued messages (more capacity, on any node)"
    )
    worker.add_argument("--threads", type=int, default=0, help="default: the number of cores")
    worker.add_argument("--node-id", default="", help="default: hostname:worker:pid")
    worker.set_defaults(func=cmd_transcribe_worker)
    transcription = sub.add_parser("transcription", help="the transcription queue")
    trsub = transcription.add_subparsers(dest="transcription_command", required=True)
    trstatus = trsub.add_parser("status", help="queue length, oldest age, workers, last hour")
    trstatus.add_argument("--json", action="store_true", help="one JSON object")
    trstatus.set_defaults(func=cmd_transcription_status)
    retention = sub.add_parser(
        "retention", help="delete what is past its retention period (retention.* settings)"
    )
    retention.add_argument(
        "--dry-run", action="store_true", help="only print how many of each kind would go"
    )
    retention.set_defaults(func=cmd_retention)
    backup = sub.add_parser("backup", help="copy the database and the recordings into DIRECTORY")
    backup.add_argument("directory")
    backup.set_defaults(func=cmd_backup)
    restore = sub.add_parser(
        "restore", help="put a backup back: database and recordings (server stopped)"
    )
    restore.add_argument("directory")
    restore.add_argument(
        "--force", action="store_true", help="replace an existing database (it is not kept)"
    )
    restore.set_defaults(func=cmd_restore)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        if args.func is cmd_check:  # bad settings are one of the things `check` reports
            from callserver.checks import settings_failed

            return _print_checks([settings_failed(exc)], as_json=args.json)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _setup_logging(settings)
    return args.func(settings, args)


if __name__ == "__main__":
    sys.exit(main())
