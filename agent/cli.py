"""edge-agent: the hospital front-end agent. Run it, check its config, inspect and repair its
queues, journal and image spool; `edge-agent COMMAND --help` says more."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import getpass
import io
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import structlog

from agent import __version__
from agent.errors import AgentError, ConfigError, JournalCorruptError
from agent.events import with_iso_times
from agent.simulators.commands import add_parser as add_simulate_parser
from agent.windows.commands import add_service_parser
from agent.windows.paths import default_config_path

DEFAULT_CONFIG = Path(
    os.environ.get("EDGE_AGENT_CONFIG")
    or (str(default_config_path()) if sys.platform == "win32" else "/etc/edge-agent/agent.toml")
)
# The unit's LoadCredential= folder (docs/operations.md); systemd hands its copies to the service.
DEFAULT_CREDENTIALS = Path(os.environ.get("CREDENTIALS_DIRECTORY") or "/etc/edge-agent/credentials")
EXIT_CONFIG = 2
EXIT_FAILURE = 1
JSON_OUT: dict[str, Any] = {"indent": 2, "ensure_ascii": False}  # --json: UTF-8 as it reads
MESSAGE_TIMES = ("created_at", "next_attempt_at", "leased_at", "settled_at")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `edge-agent` console script."""
    for stream in (sys.stdout, sys.stderr):
        utf8_when_redirected(stream)
    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except BrokenPipeError:
        # `edge-agent outbox list | head`: the reader has all it wanted; end quietly, as cat does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    except AgentError as err:
        print(f"edge-agent: {err}", file=sys.stderr)
        return EXIT_FAILURE
    return code


def utf8_when_redirected(stream: TextIO, platform: str = sys.platform) -> None:
    """On Windows, output into a pipe or file is UTF-8 (as on Linux) instead of the ANSI code
    page, which cannot write Chinese on an English Windows; the console is Unicode already."""
    if platform == "win32" and isinstance(stream, io.TextIOWrapper) and not stream.isatty():
        stream.reconfigure(encoding="utf-8")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-agent", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the agent in the foreground")
    config_option(run)
    run.set_defaults(func=cmd_run)

    _add_demo(commands)

    check = commands.add_parser("check-config", help="validate a config and print it, masked")
    check.add_argument("file", type=Path, nargs="?", help="the config file (same as -c)")
    config_option(check)
    check.add_argument(
        "--credentials-dir",
        type=Path,
        default=DEFAULT_CREDENTIALS,
        help="where credential:NAME secrets are read: systemd's $CREDENTIALS_DIRECTORY when"
        " run by the unit, else the folder the unit loads them from (%(default)s)",
    )
    check.add_argument(
        "--no-secrets",
        action="store_true",
        help="read no secret: check everything else (for a config repository's CI)",
    )
    check.set_defaults(func=cmd_check_config)

    status = commands.add_parser("status", help="per-uplink queues, breaker and last error")
    config_option(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    backup = commands.add_parser(
        "backup", help="consistent copy of the journal and the images, while running"
    )
    config_option(backup)
    backup.add_argument(
        "destination",
        type=Path,
        help="new folder to write (journal.db, spool/, exam-files/, photos/, MANIFEST.json);"
        " a name ending in .db writes the journal alone",
    )
    backup.set_defaults(func=cmd_backup)

    restore = commands.add_parser(
        "restore", help="restore a backup folder into a new, empty state directory"
    )
    restore.add_argument("backup", type=Path, help="the folder `edge-agent backup` wrote")
    restore.add_argument(
        "--state-dir", type=Path, required=True, help="where to restore it (new or empty)"
    )
    restore.set_defaults(func=cmd_restore)

    add_simulate_parser(commands)  # edge-agent simulate PLATFORM (agent/simulators/commands.py)
    _add_outbox(commands)
    _add_spool(commands)
    from agent import handler_commands  # it uses this module's helpers

    handler_commands.add_parser(commands)
    from agent import platform_commands  # it uses this module's helpers

    platform_commands.add_parser(commands)
    from agent import lookback_commands  # it uses this module's helpers

    lookback_commands.add_parser(commands)
    from agent import retention_commands  # it uses this module's helpers

    retention_commands.add_parser(commands)  # edge-agent journal compact
    add_service_parser(commands)  # edge-agent service install|start|stop|remove|status
    return parser


def _add_demo(commands: Any) -> None:
    demo = commands.add_parser(
        "demo", help="the whole product on this machine: simulated devices, clouds and traffic"
    )
    demo.add_argument(
        "--state-dir", type=Path, help="where the demo keeps its state (default: var/demo)"
    )
    demo.add_argument("--open", action="store_true", help="open the dashboard in a browser")
    demo.add_argument("--fresh", action="store_true", help="start from an empty state directory")
    demo.add_argument(
        "--port-offset", type=int, default=0, help="add this to every port (run two demos)"
    )
    demo.add_argument(
        "--speed", type=float, default=1.0, help="play the story this many times faster"
    )
    demo.set_defaults(func=cmd_demo)


def _add_outbox(commands: Any) -> None:
    box = commands.add_parser("outbox", help="inspect and act on outbox messages")
    actions = box.add_subparsers(required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="newest messages first")
    config_option(listing)
    listing.add_argument("--uplink", help="only this uplink's messages")
    listing.add_argument(
        "--state",
        choices=["pending", "inflight", "delivered", "dead", "discarded"],
        help="only messages in this state",
    )
    listing.add_argument("--limit", type=int, default=50, help="at most this many (%(default)s)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=cmd_outbox_list)

    show = actions.add_parser("show", help="one message with payload and the platform's answer")
    config_option(show)
    show.add_argument("id", type=int, help="the message id (from outbox list)")
    show.set_defaults(func=cmd_outbox_show)

    retry = actions.add_parser("retry", help="re-queue dead letters for delivery now")
    config_option(retry)
    retry.add_argument("ids", type=int, nargs="*", help="message ids (dead or pending)")
    retry.add_argument("--all-dead", action="store_true", help="every dead letter (see --uplink)")
    retry.add_argument("--uplink", help="with --all-dead: only this uplink's")
    retry.add_argument("--payload", type=Path, help="replace the payload with this JSON file")
    _actor_option(retry)
    retry.set_defaults(func=cmd_outbox_retry)

    discard = actions.add_parser("discard", help="give up on messages for good (journaled)")
    config_option(discard)
    discard.add_argument("ids", type=int, nargs="+", help="message ids (dead or pending)")
    discard.add_argument("--reason", required=True, help="why (kept in the audit table)")
    discard.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    _actor_option(discard)
    discard.set_defaults(func=cmd_outbox_discard)


def _add_spool(commands: Any) -> None:
    spool = commands.add_parser("spool", help="the DICOM spool against the study index")
    actions = spool.add_subparsers(required=True, metavar="ACTION")
    audit = actions.add_parser(
        "audit", help="indexed images missing or changed, spool files nothing refers to"
    )
    config_option(audit)
    audit.add_argument("--json", action="store_true", help="machine-readable output")
    audit.add_argument(
        "--min-age",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="judge unreferenced files only when this old (%(default)s)",
    )
    audit.add_argument(
        "--delete-copies",
        action="store_true",
        help="delete unreferenced copies of instances the index has in another file",
    )
    audit.set_defaults(func=cmd_spool_audit)
    from agent import retention_commands  # it uses this module's helpers

    retention_commands.add_spool_purge(actions)


def config_option(parser: argparse.ArgumentParser) -> None:
    """Add the -c/--config option every database command takes."""
    parser.add_argument(
        "-c", "--config", type=Path, default=DEFAULT_CONFIG, help="config file (%(default)s)"
    )


def _actor_option(parser: argparse.ArgumentParser) -> None:
    """Add --actor: who is recorded in the audit table as having done it."""
    parser.add_argument(
        "--actor", default=_actor(), help="who did it, for the audit table (%(default)s)"
    )


def _actor() -> str:
    return os.environ.get("SUDO_USER") or getpass.getuser()


def cmd_run(args: argparse.Namespace) -> int:
    """Load the config, set up logging and run the daemon until SIGTERM/SIGINT."""
    from agent.config import load_config
    from agent.event_loop import new_event_loop
    from agent.logs import configure_logging
    from agent.plugins import PLUGIN_KINDS
    from agent.runtime import Agent

    config = load_config(args.config, PLUGIN_KINDS)
    configure_logging(config.log.level, config.log.format, config.secrets())
    from agent.windows.logfile import add_log_file, log_file_settings

    if (log_file := log_file_settings(config.log)) is not None:  # [log] file
        add_log_file(log_file)
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(Agent(config).run())
    except JournalCorruptError as err:  # the recovery steps, readable, where the operator looks
        print(f"edge-agent: {err}", file=sys.stderr)
        structlog.get_logger("agent").error("agent.refused", error="journal failed integrity check")
        return EXIT_FAILURE
    except (AgentError, OSError) as err:  # e.g. journal unreadable, a port already in use
        structlog.get_logger("agent").error("agent.failed", error=str(err))
        return EXIT_FAILURE
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Write the demo config into the state directory and run the agent on it."""
    from agent import demo
    from agent.config import load_config
    from agent.event_loop import new_event_loop
    from agent.logs import configure_logging
    from agent.plugins import PLUGIN_KINDS

    if args.speed <= 0 or not 0 <= args.port_offset <= 50000:
        print("edge-agent: --speed must be > 0 and --port-offset in 0..50000", file=sys.stderr)
        return EXIT_CONFIG
    options = demo.DemoOptions(
        state_dir=args.state_dir or demo.DEFAULT_STATE_DIR,
        fresh=args.fresh,
        port_offset=args.port_offset,
        speed=args.speed,
    )
    path, timeline = demo.prepare(options)
    config = load_config(path, PLUGIN_KINDS)
    configure_logging(config.log.level, config.log.format, config.secrets())
    print(demo.banner(config, timeline, path), flush=True)
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(demo.run(config, open_browser=args.open))
    except (AgentError, OSError) as err:  # e.g. a port already in use: try --port-offset
        structlog.get_logger("agent").error("agent.failed", error=str(err))
        return EXIT_FAILURE
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    """Print the effective config with secrets masked, or every problem (exit 2)."""
    from agent.config import load_config
    from agent.plugins import PLUGIN_KINDS
    from agent.toml_out import dumps

    path = args.file or args.config
    environ = {**os.environ, "CREDENTIALS_DIRECTORY": str(args.credentials_dir)}
    config = load_config(path, PLUGIN_KINDS, environ, skip_secrets=args.no_secrets)
    data = config.model_dump(mode="json", exclude={"path"})
    unread = ", secrets not read" if args.no_secrets else ""
    print(f"# {path}: OK (secrets masked{unread})")
    print(dumps(data), end="")
    return 0


def _database(config_path: Path) -> Path:
    """Where the journal of `config_path` lives; secrets are not resolved (systemd holds them)."""
    from agent.config import default_state_dir, read_toml

    raw = read_toml(config_path)
    state_dir = Path(raw.get("agent", {}).get("state_dir", default_state_dir()))
    if not state_dir.is_absolute():
        state_dir = config_path.parent.resolve() / state_dir
    return state_dir / "journal.db"


def _configured_uplinks(config_path: Path) -> list[str]:
    from agent.config import read_toml

    return sorted(read_toml(config_path).get("uplinks", {}))


def cmd_status(args: argparse.Namespace) -> int:
    """Print each uplink's queue."""
    from agent.journal import queries

    async def fetch() -> tuple[list[queries.UplinkStatus], int]:
        async with queries.connect(_database(args.config)) as db:
            rows = await queries.uplink_status(db, _configured_uplinks(args.config))
            return rows, await queries.open_alert_count(db)

    rows, alerts = asyncio.run(fetch())
    if args.json:
        uplinks = [dataclasses.asdict(row) for row in rows]
        print(json.dumps({"uplinks": uplinks, "open_alerts": alerts}, **JSON_OUT))
        return 0
    headers = ["UPLINK", "PENDING", "INFLIGHT", "DEAD", "DELIVERED", "OLDEST", "BREAKER"]
    table = [
        [
            r.uplink,
            str(r.pending),
            str(r.inflight),
            str(r.dead),
            str(r.delivered),
            _age(r.oldest_pending_age),
            r.breaker,
        ]
        for r in rows
    ]
    _print_table(headers, table)
    for r in rows:
        if r.last_error:
            print(f"{r.uplink}: last error: {r.last_error}")
    if alerts:
        print(f"open alerts: {alerts} (GET /api/v1/alerts)")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    """Copy the journal with SQLite's online backup, then the files it refers to; safe while
    the daemon writes."""
    from agent.journal.backup import backup_state
    from agent.journal.database import backup

    destination: Path = args.destination
    if destination.exists():
        print(f"edge-agent: {destination} exists: choose a new file", file=sys.stderr)
        return EXIT_FAILURE
    database = _database(args.config)
    if destination.suffix == ".db":
        pages = backup(database, destination)
        print(f"backed up {pages} pages to {destination} (the journal only: no images)")
        return 0
    manifest = backup_state(database.parent, destination)
    print(
        f"backed up {manifest.journal_pages} journal pages (schema v{manifest.schema_version})"
        f" and {manifest.files} files ({manifest.bytes / 1e6:,.1f} MB) to {destination}"
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Restore a backup folder into a new state directory (the agent is not running on it)."""
    from agent.journal.backup import restore_state

    manifest = restore_state(args.backup, args.state_dir)
    print(
        f"restored {manifest.files} files and the journal (schema v{manifest.schema_version},"
        f" backed up {time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(manifest.created_at))})"
        f" into {args.state_dir}; set [agent] state_dir to it and start the agent"
    )
    return 0


def cmd_outbox_list(args: argparse.Namespace) -> int:
    """Print messages, newest first."""
    from agent.journal import queries

    async def fetch() -> list[dict[str, Any]]:
        async with queries.connect(_database(args.config)) as db:
            return await queries.list_messages(
                db, uplink=args.uplink, state=args.state, limit=args.limit
            )

    rows = asyncio.run(fetch())
    if args.json:
        print(json.dumps([with_iso_times(row, *MESSAGE_TIMES) for row in rows], **JSON_OUT))
        return 0
    now = time.time()
    _print_table(
        ["ID", "UPLINK", "KIND", "STATE", "ATTEMPTS", "AGE", "ORDER KEY", "LAST ERROR"],
        [
            [
                str(r["id"]),
                r["uplink"],
                r["kind"],
                r["state"],
                str(r["attempts"]),
                _age(now - r["created_at"]),
                r["order_key"],
                (r["last_error"] or "")[:60],
            ]
            for r in rows
        ],
    )
    return 0


def cmd_outbox_show(args: argparse.Namespace) -> int:
    """Print one message as JSON."""
    from agent.journal import queries

    async def fetch() -> dict[str, Any] | None:
        async with queries.connect(_database(args.config)) as db:
            return await queries.get_message(db, args.id)

    message = asyncio.run(fetch())
    if message is None:
        print(f"edge-agent: no outbox message {args.id}", file=sys.stderr)
        return EXIT_FAILURE
    message = with_iso_times(message, *MESSAGE_TIMES)
    with contextlib.suppress(TypeError, ValueError):  # else the platform answered plain text
        message["response"] = json.loads(message["response"])
    print(json.dumps(message, **JSON_OUT))
    return 0


def cmd_outbox_retry(args: argparse.Namespace) -> int:
    """Re-queue dead letters (by id, or all of them) for delivery now."""
    from agent.journal import queries

    if bool(args.ids) == args.all_dead:
        print("edge-agent: give message ids or --all-dead, not both", file=sys.stderr)
        return EXIT_CONFIG
    payload = None
    if args.payload is not None:
        if len(args.ids) != 1:
            print("edge-agent: --payload replaces one message: give one id", file=sys.stderr)
            return EXIT_CONFIG
        payload = json.loads(args.payload.read_text(encoding="utf-8"))

    async def act() -> tuple[list[int], dict[int, str]]:
        async with queries.connect(_database(args.config)) as db:
            ids = args.ids or await queries.dead_ids(db, args.uplink)
            changed = await queries.retry(db, ids, actor=args.actor, payload=payload)
            return changed, await queries.states(db, args.ids)

    changed, found = asyncio.run(act())
    _say_unchanged("retried", args.ids, changed, found)
    print(f"re-queued {len(changed)} message(s): {' '.join(map(str, changed))}".rstrip(": "))
    return 0 if changed or args.all_dead else EXIT_FAILURE


def cmd_outbox_discard(args: argparse.Namespace) -> int:
    """Discard messages for good; needs --yes; journaled with actor and reason."""
    from agent.journal import queries

    if not args.yes:
        print("edge-agent: discarding cannot be undone: add --yes to confirm", file=sys.stderr)
        return EXIT_CONFIG

    async def act() -> tuple[list[int], dict[int, str]]:
        async with queries.connect(_database(args.config)) as db:
            changed = await queries.discard(db, args.ids, actor=args.actor, reason=args.reason)
            return changed, await queries.states(db, args.ids)

    changed, found = asyncio.run(act())
    _say_unchanged("discarded", args.ids, changed, found)
    print(f"discarded {len(changed)} message(s): {' '.join(map(str, changed))}".rstrip(": "))
    return 0 if changed else EXIT_FAILURE


def _say_unchanged(done: str, ids: list[int], changed: list[int], found: dict[int, str]) -> None:
    """Tell, on stderr, why each of `ids` not in `changed` was left as it was."""
    for message_id in ids:
        if message_id in changed:
            continue
        state = found.get(message_id)
        why = "no such message" if state is None else f"it is {state}"
        print(
            f"edge-agent: message {message_id} not {done}: {why}"
            " (only dead or pending messages can be)",
            file=sys.stderr,
        )


def cmd_spool_audit(args: argparse.Namespace) -> int:
    """Report what the spool and the index disagree on; 1 when an image may be lost."""
    from agent.imaging.audit import audit_spool, delete_copies
    from drivers.dicom.recovery import complete_sop_uid

    state_dir = _database(args.config).parent
    result = audit_spool(state_dir, read_sop_uid=complete_sop_uid, min_age=args.min_age)
    deleted = delete_copies(result) if args.delete_copies else 0
    if args.json:
        found = {**dataclasses.asdict(result), "healthy": result.healthy, "deleted": deleted}
        print(json.dumps(found, **JSON_OUT))
        return 0 if result.healthy else EXIT_FAILURE
    print(
        f"spool: {result.files} files, {result.megabytes:.1f} MB;"
        f" {result.temporary} in tmp/, {result.quarantined} quarantined,"
        f" {result.reserved} reserved (empty, for the images to come)"
    )
    copies = f"{len(result.copies)}" + (f" ({deleted} deleted)" if args.delete_copies else "")
    _print_table(
        ["FOUND", "COUNT"],
        [
            ["indexed, file missing", str(len(result.missing))],
            ["indexed, size changed", str(len(result.changed))],
            ["not indexed: copy of an indexed instance", copies],
            ["not indexed: instance the index lacks", str(len(result.unindexed))],
            ["not indexed: unreadable", str(len(result.unreadable))],
            [f"not indexed: newer than {_age(args.min_age)}, not judged", str(result.recent)],
        ],
    )
    for row in result.missing:
        print(f"missing: {row.path} (instance {row.sop_uid}, study {row.study_uid})")
    for row in result.changed:
        print(f"changed: {row.path} (instance {row.sop_uid}, indexed {row.size} bytes)")
    for path in result.unindexed:
        print(f"not indexed: {path} (send it to the agent again, e.g. with storescu)")
    for path in result.unreadable:
        print(f"unreadable: {path}")
    if result.copies and not args.delete_copies:
        print("copies are safe to delete: --delete-copies")
    return 0 if result.healthy else EXIT_FAILURE


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    for line in [headers, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


if __name__ == "__main__":
    sys.exit(main())
