"""``izs``: the operator's command line.

Every command validates settings first; a bad setting prints one line per problem and exits 2, never a
traceback. ``--json`` output is for scripts and stays stable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from intake.errors import ConfigError, IzsError
from intake.settings import Settings, check_runtime, load_settings, security_warnings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, ensure_ascii=False, indent=2, default=str)
    sys.stdout.write("\n")


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(Path(args.config) if getattr(args, "config", None) else None)


def _repository(settings: Settings) -> Any:
    from intake.storage.database import Database
    from intake.storage.repository import Repository

    database = Database(settings.effective_database_url)
    if not database.is_up_to_date():
        raise IzsError("the database schema is not current: run `izs db upgrade` first")
    return Repository(database)


# --------------------------------------------------------------------------------------- commands


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    overrides: dict[str, Any] = {}
    if args.port is not None:
        overrides["http_port"] = args.port
    if args.sip_port is not None:
        overrides["sip_port"] = args.sip_port
    if overrides:
        settings = settings.model_copy(update=overrides)
    problems = check_runtime(settings)
    if problems:
        raise ConfigError(problems)
    asyncio.run(_serve(settings))
    return EXIT_OK


async def _serve(settings: Settings) -> None:
    import logging
    import signal

    from api.server import serve
    from intake.app import Centre

    log = logging.getLogger("izs")
    serving = False

    def on_signal(signum: int, frame: object) -> None:
        # uvicorn handles SIGINT/SIGTERM while it serves and hands the signal back here once it has
        # drained its connections; the centre is then stopped below (calls ended, leader lease released).
        # Before serving starts there is nothing to drain: stop at once.
        if not serving:
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    for warning in security_warnings(settings):
        log.warning("%s", warning)
    centre = await Centre.start(settings)
    try:
        log.info(
            "izs-intake node %s up: consoles at %s://%s:%d/ (SIP on %s:%d)",
            settings.node_id,
            "https" if settings.serves_tls else "http",
            settings.http_host,
            settings.http_port,
            settings.sip_host,
            settings.sip_port,
        )
        serving = True
        await serve(centre)
    finally:
        log.info("izs-intake node %s stopping", settings.node_id)
        await asyncio.shield(centre.stop())
        log.info("izs-intake node %s stopped", settings.node_id)


def demo_log_file(var_dir: Path) -> Path:
    from datetime import UTC, datetime

    return var_dir / "log" / f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S}.jsonl"


def cmd_demo(args: argparse.Namespace) -> int:
    from izs.demo import run_demo

    settings = _settings(args)
    return asyncio.run(
        _until_signalled(
            run_demo(
                settings,
                scenarios=Path(args.scenarios) if args.scenarios else None,
                calls=args.calls,
                pace_s=args.pace,
                keep_running=not args.once,
                log_file=getattr(args, "log_file", None),
                verbose=args.verbose,
            )
        )
    )


async def _until_signalled(work: Coroutine[Any, Any, int]) -> int:
    """Run ``work``; SIGTERM stops it exactly as SIGINT does: the task is cancelled, so every ``finally``
    runs and every child it started (embedded redis-server, baresip callers) is stopped. Without this,
    SIGTERM's default action ended the process at once and left those children orphaned.

    The API server (uvicorn) takes both signals over while it serves and hands them back here when it has
    drained its connections.
    """
    import signal

    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)

    stopping: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        if stopping:
            return  # already stopping: a second signal must not cut the clean-up short
        stopping.append(signum)
        loop.call_soon_threadsafe(task.cancel)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return await task
    except asyncio.CancelledError:
        if not task.cancelled():
            raise
        return EXIT_OK
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from intake.storage.database import Database

    settings = _settings(args)
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    database = Database(settings.effective_database_url)
    database.upgrade()
    print(f"database at revision {database.current_revision()} ({database.url_for_display()})")
    return EXIT_OK


def cmd_incidents_list(args: argparse.Namespace) -> int:
    from intake.views import incident_json

    repo = _repository(_settings(args))
    incidents, total = repo.list_incidents(
        status=args.status, agency=args.agency, text=args.text, limit=args.limit, offset=0
    )
    if args.json:
        _print_json({"total": total, "items": [incident_json(i) for i in incidents]})
        return EXIT_OK
    if not incidents:
        print("no incidents")
        return EXIT_OK
    print(
        f"{'ID':<17} {'STATUS':<7} {'P':<2} {'TYPE':<26} {'AGENCIES':<12} {'CALLS':>5}  {'CREATED':<20} PLACE"
    )
    for i in incidents:
        print(
            f"{i.id:<17} {i.status.value:<7} {i.priority:<2} {i.incident_type.value:<26} "
            f"{','.join(a.value for a in i.agency_codes):<12} {len(i.call_ids):>5}  "
            f"{i.created_at:%Y-%m-%d %H:%M:%S}  {i.location.text() if i.location else ''}"
        )
    print(f"{len(incidents)} of {total}")
    return EXIT_OK


def cmd_incidents_show(args: argparse.Namespace) -> int:
    from intake.views import incident_json

    repo = _repository(_settings(args))
    incident = repo.get_incident(args.id)
    if args.json:
        _print_json(incident_json(incident, with_timeline=True))
        return EXIT_OK
    print(
        f"{incident.id}  {incident.incident_type.value}  priority {incident.priority}  {incident.status.value}"
    )
    if incident.tcpr:
        print("TELEPHONE CPR: suspected cardiac arrest")
    for a in incident.agencies:
        print(f"  {a.agency.value:<4} {a.status.value}")
    if incident.location:
        print(f"  location: {incident.location.text()} ({incident.location.source.value})")
    print(f"  calls: {', '.join(incident.call_ids) or '-'}")
    for note in incident.notes:
        print(f"  note: {note}")
    print("timeline:")
    for entry in incident.timeline:
        data = json.dumps(entry.data, ensure_ascii=False, default=str)
        print(
            f"  {entry.seq:>3} {entry.at:%Y-%m-%d %H:%M:%S} {entry.actor:<12} {entry.action:<18} {data[:160]}"
        )
    return EXIT_OK


def triage_eval(argv: list[str]) -> int:
    from routing.eval import main_eval

    return int(main_eval(argv))


def triage_run(argv: list[str]) -> int:
    from routing.eval import main_run

    return int(main_run(argv))


def triage_recognise(argv: list[str]) -> int:
    from intake.triage_corpus import run

    return int(run(argv))


def triage_train(argv: list[str]) -> int:
    """``izs triage train [--from-database] [--config FILE] ...``: the centre's confirmed incidents join the
    corpus as one more source (written beside the new model, so the run can be repeated); everything else
    is routing.training's (sources, --out DIR, --data-dir, --folds)."""
    from routing.training import main_train

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--from-database", action="store_true")
    parser.add_argument("--config", default=None)
    ours, rest = parser.parse_known_args(argv)
    if not ours.from_database:
        return int(main_train(rest))
    if "--out" not in rest:
        print(
            "izs: --from-database needs --out DIR (a new data directory; the shipped model stays)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    out_dir = Path(rest[rest.index("--out") + 1])
    from intake.triage_corpus import confirmed_scenarios, write_scenarios

    settings = load_settings(Path(ours.config) if ours.config else None)
    records = confirmed_scenarios(_repository(settings))
    centre_file = out_dir / "centre" / "confirmed.jsonl"
    write_scenarios(records, centre_file)
    print(f"{len(records)} calls of confirmed or corrected incidents from the database -> {centre_file}")
    return int(main_train([*rest, "--also", str(centre_file)]))


# Sub-commands that parse their own options (argparse cannot pass "--flag value" through a sub-parser).
TRIAGE_TOOLS: dict[str, Callable[[list[str]], int]] = {
    "eval": triage_eval,
    "run": triage_run,
    "recognise": triage_recognise,
    "train": triage_train,
}


def cmd_triage_tool(args: argparse.Namespace) -> int:
    return TRIAGE_TOOLS[args.triage_command](list(args.options))


def cmd_models_list(args: argparse.Namespace) -> int:
    from transcription.models import ModelRegistry

    settings = _settings(args)
    registry = ModelRegistry(settings.effective_model_dir)
    models = registry.list_models()
    if args.json:
        _print_json([m.to_json() for m in models])
        return EXIT_OK
    if not models:
        print("no models installed")
    for m in models:
        print(m.describe())
    return EXIT_OK


def cmd_models_install(args: argparse.Namespace) -> int:
    from transcription.errors import ModelInstallError
    from transcription.models import install_model

    settings = _settings(args)
    try:
        return int(install_model(args.language, settings.effective_model_dir, out=sys.stdout))
    except ModelInstallError as exc:
        print(f"izs: {exc}", file=sys.stderr)
        return EXIT_FAILED


def cmd_users_add(args: argparse.Namespace) -> int:
    from api.users import create_user_sync

    settings = _settings(args)
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    if password is None:
        import getpass

        password = getpass.getpass(f"password for {args.username}: ")
    repo = _repository(settings)
    create_user_sync(repo, args.username, password, args.role)
    print(f"user {args.username} ({args.role}) created")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    problems = check_runtime(settings)
    if problems:
        raise ConfigError(problems)
    for warning in security_warnings(settings):
        print(f"izs: warning: {warning}", file=sys.stderr)
    print("settings ok")
    return EXIT_OK


# ----------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="izs",
        description="izs-intake: call intake for a joint IZS operations centre (112/150/155/158).",
        epilog="Settings come from IZS_* environment variables and the TOML file named by --config or IZS_CONFIG.",
    )
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (default: $IZS_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str, parent: Any = sub) -> Any:
        p = parent.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    p = add(
        "serve", cmd_serve, "Run the intake node: SIP endpoint, AMI bridge, transcription, API and consoles"
    )
    p.add_argument("--port", type=int, help="HTTP port (overrides IZS_HTTP_PORT)")
    p.add_argument("--sip-port", type=int, help="SIP UDP port (overrides IZS_SIP_PORT)")

    p = add("demo", cmd_demo, "Start the whole system and place synthesized emergency calls into it")
    p.add_argument("--scenarios", metavar="FILE", help="scenario JSONL (default: the shipped dev set)")
    p.add_argument("--calls", type=int, default=12, help="how many calls to place (default 12)")
    p.add_argument("--pace", type=float, default=4.0, help="seconds between calls (default 4)")
    p.add_argument("--verbose", action="store_true", help="also show the logs on the terminal")
    p.add_argument("--once", action="store_true", help="exit after the calls end instead of running on")

    p = add("check", cmd_check, "Validate settings and the machine (ports, directories, models)")

    db = add("db", lambda a: EXIT_OK, "Database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    add("upgrade", cmd_db_upgrade, "Create or migrate the database schema to the current version", db_sub)

    inc = add("incidents", lambda a: EXIT_OK, "Look at incidents from a terminal")
    inc_sub = inc.add_subparsers(dest="incidents_command", required=True, metavar="COMMAND")
    p = add("list", cmd_incidents_list, "List incidents, newest first", inc_sub)
    p.add_argument("--status", choices=["new", "active", "closed"])
    p.add_argument("--agency", choices=["HZS", "ZZS", "PCR"])
    p.add_argument("--text", help="search text (place, type, notes)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p = add("show", cmd_incidents_show, "Show one incident with its timeline", inc_sub)
    p.add_argument("id", help="incident id, e.g. KVK-2026-000123")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")

    tri = add("triage", lambda a: EXIT_OK, "Evaluate and run triage on scenario files")
    tri_sub = tri.add_subparsers(dest="triage_command", required=True, metavar="COMMAND")
    for name, help_text in (
        (
            "eval",
            "Score triage: without FILE the dev, sealed and training (cross-validated) splits, clean / noisy / "
            "recognised, beside the dialled-number baseline (options: [FILE], --candidate DIR, --data-dir DIR, "
            "--json, --seed N, --timing words|espeak)",
        ),
        (
            "run",
            "Print one triage prediction per call as JSON lines (FILE, --noisy, --seed N, --data-dir DIR)",
        ),
        (
            "train",
            "Train the triage model (deterministic; [SOURCES], --out DIR, --from-database, --data-dir DIR, "
            "--folds N); nothing switches until IZS_TRIAGE_DATA_DIR points at the new directory",
        ),
        (
            "recognise",
            "Add caller_recognised/recognised_by to scenario files: real pipeline (Festival/espeak-ng -> 8 kHz "
            "-> Whisper) for --real N calls, the fitted noise model for the rest (FILES, --out FILE | "
            "--in-place, --real N, --shard K/N, --fit, --no-noise, --seed N)",
        ),
    ):
        p = add(name, cmd_triage_tool, help_text, tri_sub)
        p.add_argument("options", nargs=argparse.REMAINDER, help="options of the tool (see its --help)")

    mod = add("models", lambda a: EXIT_OK, "Speech recognition models")
    mod_sub = mod.add_subparsers(dest="models_command", required=True, metavar="COMMAND")
    p = add("list", cmd_models_list, "List installed recognition models by language", mod_sub)
    p.add_argument("--json", action="store_true")
    p = add(
        "install",
        cmd_models_install,
        "Download and verify a model (prints offline steps if unreachable)",
        mod_sub,
    )
    p.add_argument("language", help="language code, e.g. cs")

    usr = add("users", lambda a: EXIT_OK, "Console and API users")
    usr_sub = usr.add_subparsers(dest="users_command", required=True, metavar="COMMAND")
    p = add("add", cmd_users_add, "Create a user", usr_sub)
    p.add_argument("username")
    p.add_argument("--role", required=True, choices=["call_taker", "supervisor", "integration", "admin"])
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if len(raw) >= 2 and raw[0] == "triage" and raw[1] in TRIAGE_TOOLS:
        try:
            return TRIAGE_TOOLS[raw[1]](raw[2:])
        except ConfigError as exc:
            for problem in exc.problems:
                print(f"izs: configuration error: {problem}", file=sys.stderr)
            return EXIT_CONFIG
        except IzsError as exc:
            print(f"izs: {exc.message}", file=sys.stderr)
            return EXIT_FAILED
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from intake.logs import configure_logging

        if args.command == "serve":
            settings = _settings(args)
            configure_logging(settings.log_level, settings.log_json)
        elif args.command == "demo":
            # The terminal is for people: the narrative on stdout, the JSON logs in var/log/ (path printed
            # by the demo); --verbose shows them on the terminal too.
            settings = _settings(args)
            args.log_file = demo_log_file(settings.var_dir)
            configure_logging(settings.log_level, True, file=args.log_file, to_stderr=args.verbose)
        result: int = args.func(args)
        return result
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"izs: configuration error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except IzsError as exc:
        print(f"izs: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        # `izs ... | head`: the reader has gone; nothing more to say, and no traceback.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
