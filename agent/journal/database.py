"""Open the journal database: pragmas, integrity check, `schema/vN.sql` migrations."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from importlib import resources
from pathlib import Path

from agent.errors import JournalCorruptError, JournalError

# A commit dirties about one page per index it inserts into, however little it adds there:
# smaller pages write fewer bytes per durable event (bench/ingest.py, docs/benchmarks.md).
PAGE_SIZE = 2048

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=10000",
    # Keep a transaction's savepoint journal in memory: the group commit's savepoints otherwise
    # spill every page they change to a temporary file past 64 KiB (written, never needed).
    "PRAGMA temp_store=MEMORY",
    # A long reader can make the WAL grow while it holds its snapshot; afterwards, truncate it
    # back to this size instead of keeping the high-water mark on disk.
    "PRAGMA journal_size_limit=67108864",
)


def migrations() -> list[tuple[int, str]]:
    """Return the packaged migrations as (version, sql), in order."""
    found = []
    for entry in resources.files("agent.journal").joinpath("schema").iterdir():
        match = re.fullmatch(r"v(\d+)\.sql", entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise JournalError(f"migrations must be v1..vN without gaps, found {versions}")
    return found


def latest_version() -> int:
    """Return the schema version this build expects."""
    return migrations()[-1][0]


# SQLite's words for a file that is damaged or not a database at all (sqlite3.DatabaseError).
DAMAGED = ("malformed", "not a database", "corrupt")


# An existing journal without incremental auto-vacuum is converted (one VACUUM) when the agent
# starts if it is at most this big (a second or two); a bigger one waits for `edge-agent journal
# compact`.
CONVERT_AT_START_BYTES = 64 * 1024 * 1024
INCREMENTAL = 2  # PRAGMA auto_vacuum


def open_database(
    path: Path, *, check_integrity: bool = True, convert_vacuum: bool = False
) -> sqlite3.Connection:
    """Open (or create) the journal at `path`, verify it and migrate it to the latest schema;
    JournalCorruptError, saying how to recover, if it fails the integrity check. With
    `convert_vacuum` (the agent's start), a small journal is converted to incremental vacuum."""
    try:
        new = not path.exists() or path.stat().st_size == 0
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if new:  # fixed when the first table is written; an existing journal keeps its own
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
            # Pages freed by the retention go back to the filesystem a few at a time.
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        for pragma in PRAGMAS:
            conn.execute(pragma)
        if check_integrity:
            problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                conn.close()
                raise JournalCorruptError(refusal(path, "; ".join(problems[:5])))
        migrate(conn)
        if convert_vacuum and path.stat().st_size <= CONVERT_AT_START_BYTES:
            compact(conn)
    except sqlite3.DatabaseError as err:
        if any(word in str(err) for word in DAMAGED):
            raise JournalCorruptError(refusal(path, str(err))) from err
        raise JournalError(f"{path}: {err}") from err
    except sqlite3.Error as err:
        raise JournalError(f"{path}: {err}") from err
    return conn


def refusal(path: Path, problem: str) -> str:
    """Why the agent will not start on the journal at `path`, and the recovery steps."""
    state = path.parent
    return (
        f"{path}: the journal failed its integrity check ({problem}); the agent will not start"
        " on a damaged journal, since it could lose or resend records. To recover"
        ' (docs/operations.md, "Backup and restore"):\n'
        f"  1. keep the damaged state as evidence: cp -a {state} {state}.damaged\n"
        "  2. restore the latest backup into a fresh state directory:"
        f" edge-agent restore BACKUP_DIR --state-dir {state}.restored, then point"
        " [agent] state_dir at it (or move it in place of the old one)\n"
        "  3. without a backup, salvage what SQLite can read:"
        f" sqlite3 {path} .recover | sqlite3 {state}.restored/journal.db"
        f" (copy {state}/spool beside it), then check it: edge-agent status\n"
        "  4. start the agent again; undelivered messages are sent, delivered ones are not"
    )


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every migration newer than `user_version`, each in its own transaction."""
    current: int = conn.execute("PRAGMA user_version").fetchone()[0]
    known = migrations()
    if current > known[-1][0]:
        raise JournalError(
            f"database schema v{current} is newer than this agent (v{known[-1][0]}): "
            "upgrade the agent or restore a matching backup"
        )
    for version, sql in known:
        if version <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in split_statements(sql):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        current = version
    return current


def incremental(conn: sqlite3.Connection) -> bool:
    """Whether the journal returns freed pages to the filesystem (auto_vacuum=INCREMENTAL)."""
    return bool(conn.execute("PRAGMA auto_vacuum").fetchone()[0] == INCREMENTAL)


def compact(conn: sqlite3.Connection) -> bool:
    """Convert the journal to incremental auto-vacuum if it is not yet (a full VACUUM: it
    rewrites the file, needing as much free space again, and blocks every writer meanwhile);
    whether it ran."""
    if incremental(conn):
        return False
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("PRAGMA temp_store=FILE")  # the copy VACUUM builds: on disk, not in memory
    try:
        conn.execute("VACUUM")
    finally:
        conn.execute("PRAGMA temp_store=MEMORY")
    return True


def split_statements(sql: str) -> list[str]:
    """Split a migration script into complete statements (triggers kept whole)."""
    statements, buffer = [], ""
    for line in sql.splitlines(keepends=True):
        if not buffer and line.strip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise JournalError(f"incomplete statement in migration: {buffer.strip()[:60]}")
    return statements


def backup(source: Path, destination: Path) -> int:
    """Write a consistent snapshot of the journal at `source` to `destination`; count pages."""
    if not source.exists():
        raise JournalError(f"{source}: no journal here (has the agent run with this config?)")
    try:
        with closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src:
            src.execute("PRAGMA busy_timeout=10000")
            with closing(sqlite3.connect(destination)) as dst:
                src.backup(dst)
                check = dst.execute("PRAGMA quick_check").fetchone()[0]
                pages: int = dst.execute("PRAGMA page_count").fetchone()[0]
    except sqlite3.Error as err:
        raise JournalError(f"backup of {source} to {destination} failed: {err}") from err
    if check != "ok":
        raise JournalError(f"backup {destination} failed its integrity check: {check}")
    return pages
