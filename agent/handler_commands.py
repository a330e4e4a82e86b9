"""`edge-agent handlers list|replay`: handler failures an operator sees and replays."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from agent.cli import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    JSON_OUT,
    _actor_option,
    _age,
    _database,
    _print_table,
    config_option,
)
from agent.errors import JournalError
from agent.events import with_iso_times
from agent.journal import failures

T = TypeVar("T")


def add_parser(commands: Any) -> None:
    """Add `handlers list` and `handlers replay` to the CLI."""
    handlers = commands.add_parser(
        "handlers", help="events a domain handler failed on, and replaying them"
    )
    actions = handlers.add_subparsers(required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="unresolved handler failures, oldest first")
    config_option(listing)
    listing.add_argument("--all", action="store_true", help="resolved ones too")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=cmd_list)

    replay = actions.add_parser(
        "replay", help="ask the agent to run the handler again on the kept event"
    )
    config_option(replay)
    replay.add_argument("ids", type=int, nargs="*", help="failure ids (from handlers list)")
    replay.add_argument("--all", action="store_true", help="every unresolved failure")
    _actor_option(replay)
    replay.set_defaults(func=cmd_replay)


@contextmanager
def _journal(config: Path) -> Iterator[sqlite3.Connection]:
    path = _database(config)
    if not path.exists():
        raise JournalError(f"{path}: no journal here (has the agent run with this config?)")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=10)
    except sqlite3.Error as err:
        raise JournalError(f"{path}: {err}") from err
    try:
        yield conn
    except sqlite3.Error as err:
        raise JournalError(f"{path}: {err}") from err
    finally:
        conn.close()


def _in_transaction(config: Path, fn: Callable[[sqlite3.Connection], T]) -> T:
    with _journal(config) as conn, conn:
        return fn(conn)


def cmd_list(args: argparse.Namespace) -> int:
    """Print handler failures (unresolved only, unless --all)."""
    found = _in_transaction(
        args.config, lambda conn: failures.listing(conn, include_resolved=args.all)
    )
    if args.json:
        times = ("at", "replay_requested_at", "resolved_at")
        print(json.dumps([with_iso_times(asdict(f), *times) for f in found], **JSON_OUT))
        return 0
    now = time.time()
    rows = [
        [
            str(f.id),
            _age(now - f.at),
            f.handler,
            f.event_id,
            str(f.attempts),
            "resolved" if f.resolved_at else "replay asked" if f.replay_requested_at else "open",
            f.error,
        ]
        for f in found
    ]
    _print_table(["ID", "AGE", "HANDLER", "EVENT", "TRIES", "STATE", "ERROR"], rows)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Mark failures for replay; the running agent (or the next start) replays them."""
    if bool(args.ids) == args.all:
        print("edge-agent: give failure ids or --all, not both", file=sys.stderr)
        return EXIT_CONFIG
    ids = None if args.all else args.ids
    marked = _in_transaction(
        args.config, lambda conn: failures.request_replay(conn, ids, actor=args.actor)
    )
    print(f"replay asked for {len(marked)} failure(s): {' '.join(map(str, marked))}".rstrip(": "))
    if marked:
        print("the agent replays them within seconds; see `edge-agent handlers list`")
    return 0 if marked or args.all else EXIT_FAILURE
