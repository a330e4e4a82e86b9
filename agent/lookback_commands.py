"""`edge-agent lookback KIND SUBJECT`: clinical lookback from the command line, audited."""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.cli import _actor_option, _print_table, config_option
from agent.errors import JournalError
from agent.reprocessing.config import ReprocessingConfig
from agent.reprocessing.lookback import KINDS, answer, audit_payload, question_from, record_audit
from agent.reprocessing.lookback_export import COLUMNS, flat_rows, to_csv

SHOWN = ("scope", "used_at", "patient_id", "patient_name", "clean_id", "compliance", "override")


def add_parser(commands: Any) -> None:
    """Add `lookback` to the CLI."""
    lookback = commands.add_parser(
        "lookback",
        help="every patient a scope, washer or disinfectant batch reached; a patient's scopes",
        description="Lookback (追溯): scope since a time or cycle, patient, washer or batch over"
        " a period. Times are the centre's wall time (2026-12-01 or 2026-12-01T08:30). Every run"
        " is written to the audit table with --actor.",
    )
    lookback.add_argument("kind", choices=KINDS, help="what to look back from")
    lookback.add_argument(
        "subject",
        help="scope number/RFID/steel number, patient id, washer id,"
        " or disinfectant batch (ratio) number",
    )
    lookback.add_argument("--since", default="", help="from this date or time")
    lookback.add_argument("--until", default="", help="up to (not including) this date or time")
    lookback.add_argument("--cycle", default="", help="scope: from this cycle (cleanId) on")
    lookback.add_argument("--csv", type=Path, help="write the export (Chinese headings) here")
    lookback.add_argument(
        "--full", action="store_true", help="patient ids and names in full (else masked)"
    )
    config_option(lookback)
    _actor_option(lookback)
    lookback.set_defaults(func=cmd_lookback)


def cmd_lookback(args: argparse.Namespace) -> int:
    """Audit the run, answer it from a read-only connection, print or export the rows."""
    from agent.cli import _database
    from agent.config import load_config
    from agent.plugins import PLUGIN_KINDS

    config = load_config(args.config, PLUGIN_KINDS, skip_secrets=True)
    configs = [d for d in config.domains.values() if isinstance(d, ReprocessingConfig)]
    fields = {k: getattr(args, k) for k in ("kind", "subject", "since", "until", "cycle")}
    question = question_from(fields, configs)
    path = _database(args.config)
    if not path.exists():
        raise JournalError(f"{path}: no journal here (has the agent run with this config?)")
    via = "cli:csv" if args.csv else "cli"
    payload = audit_payload(question, by=args.actor, via=via, full=args.full)
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA busy_timeout=10000")
        record_audit(conn, time.time(), payload)  # before anything is shown
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as reader:
        reader.execute("PRAGMA busy_timeout=10000")
        entries = answer(reader, question)
    zone = ZoneInfo(configs[0].timezone) if configs else None
    rows = flat_rows(entries, zone, full=args.full)
    if args.csv:
        args.csv.write_text(to_csv(rows), encoding="utf-8", newline="")
        print(f"{len(rows)} rows written to {args.csv}", file=sys.stderr)
        return 0
    headings = {key: zh for key, zh, _ in COLUMNS}
    _print_table([headings[k] for k in SHOWN], [[row[k] for k in SHOWN] for row in rows])
    print(f"{len(rows)} rows", file=sys.stderr)
    return 0
