"""`edge-agent spool purge` (what the spool's retention lets go, deleted only with --apply) and
`edge-agent journal compact` (a journal from before v16 converted to incremental vacuum)."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import sys
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from agent.cli import config_option
from agent.errors import AgentError, JournalError
from agent.journal.database import compact, incremental, open_database
from agent.journal.readers import Readers
from agent.vocabulary.spool import SpoolLayout, spool_file

if TYPE_CHECKING:  # the daemon's modules are imported only by the command that runs
    from agent.events import Event
    from agent.imaging.config import ImagingConfig
    from agent.journal.writer import Journal

T = TypeVar("T")
MB = 1_000_000


def add_spool_purge(actions: Any) -> None:
    """Add `spool purge` to the `spool` command's actions."""
    purge = actions.add_parser(
        "purge",
        help="delete the files the retention policy lets go now (dry run unless --apply)",
        description="Lists (or with --apply deletes) the spool files of images every uplink that"
        " takes images has delivered keep_days ago; an undelivered, pending or dead image is"
        " never deleted. --apply needs the agent stopped (its keeper does this every"
        " purge_interval while it runs).",
    )
    config_option(purge)
    purge.add_argument(
        "--keep-days",
        type=float,
        metavar="DAYS",
        help="instead of the config's keep_days (0: whatever is delivered)",
    )
    purge.add_argument("--apply", action="store_true", help="delete them (the agent stopped)")
    purge.set_defaults(func=cmd_spool_purge)


def add_parser(commands: Any) -> None:
    """Add `journal compact` to the CLI."""
    journal = commands.add_parser("journal", help="the journal database's size")
    actions = journal.add_subparsers(required=True, metavar="ACTION")
    compact_cmd = actions.add_parser(
        "compact",
        help="convert a journal from before v16 to incremental vacuum (the agent stopped)",
        description="Rewrites the journal once (VACUUM) so the retention can hand freed pages"
        " back to the filesystem. Needs the agent stopped and as much free space as the"
        " journal's size; takes about a minute per GB.",
    )
    config_option(compact_cmd)
    compact_cmd.set_defaults(func=cmd_journal_compact)


def cmd_journal_compact(args: argparse.Namespace) -> int:
    """Convert the journal to incremental auto-vacuum, with the agent stopped."""
    from agent.cli import _database
    from agent.runtime import StateDirLock

    path = _database(args.config)
    if not path.exists():
        raise JournalError(f"{path}: no journal here (has the agent run with this config?)")
    with StateDirLock(path.parent):
        size = path.stat().st_size
        free = shutil.disk_usage(path.parent).free
        if free < size * 1.1:
            raise JournalError(
                f"{path}: {size / MB:,.0f} MB; compacting needs as much free space again,"
                f" {free / MB:,.0f} MB are free"
            )
        with closing(open_database(path)) as conn:
            if incremental(conn):
                print(f"{path}: already incremental ({size / MB:,.1f} MB); nothing to do")
                return 0
            compact(conn)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    print(f"{path}: compacted, {size / MB:,.1f} MB -> {path.stat().st_size / MB:,.1f} MB")
    return 0


class _Offline:
    """The TaskContext of a command: reads on a read-only connection; writes (with --apply)
    through a journal of its own, the agent being stopped."""

    def __init__(self, state_dir: Path, readers: Readers, journal: Journal | None) -> None:
        self.state_dir = state_dir
        self.readers = readers
        self.journal = journal

    async def emit(self, event: Event) -> bool:
        assert self.journal is not None, "a dry run writes nothing"
        return (await self.journal.ingest([event]))[0]

    async def query(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self.journal is not None, "a dry run writes nothing"
        return await self.journal.run(fn)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self.readers.run(fn)


def cmd_spool_purge(args: argparse.Namespace) -> int:
    """List, or with --apply delete, the files each imaging domain's policy lets go now."""
    from agent.cli import _database
    from agent.config import load_config
    from agent.imaging.config import ImagingConfig
    from agent.plugins import PLUGIN_KINDS
    from agent.runtime import StateDirLock

    config = load_config(args.config, PLUGIN_KINDS, skip_secrets=True)
    domains = {
        name: section
        for name, section in config.domains.items()
        if isinstance(section, ImagingConfig) and section.enabled
    }
    if not domains:
        raise AgentError(f"{args.config}: no enabled imaging domain: no spool to purge")
    path = _database(args.config)
    if not path.exists():
        raise JournalError(f"{path}: no journal here (has the agent run with this config?)")
    if args.keep_days is not None:
        if args.keep_days < 0:
            raise AgentError("--keep-days: 0 or more")
        domains = {
            n: s.model_copy(update={"keep_days": args.keep_days}) for n, s in domains.items()
        }
    if not args.apply:
        return asyncio.run(_dry_run(path, domains))
    with StateDirLock(path.parent):
        return asyncio.run(_apply(path, domains))


async def _dry_run(path: Path, domains: dict[str, ImagingConfig]) -> int:
    from agent.imaging.purger import SpoolKeeper

    readers = Readers(path)
    ctx = _Offline(path.parent, readers, None)
    root = SpoolLayout.of(path.parent).root
    count, size = 0, 0
    try:
        for name, section in domains.items():
            keeper = SpoolKeeper(name, section)
            policy = keeper.policy(keeper.clock.now(), critical=False)
            async for chosen in keeper.eligible(ctx, policy):
                count += len(chosen)
                size += await asyncio.to_thread(_sizes, [spool_file(p, root) for *_, p in chosen])
    finally:
        await readers.close()
    print(f"{count} images ({size / MB:,.1f} MB) may lose their file now; nothing deleted")
    if count:
        print("delete them with --apply (the agent stopped)", file=sys.stderr)
    return 0


async def _apply(path: Path, domains: dict[str, ImagingConfig]) -> int:
    from agent.imaging import plugin as imaging
    from agent.imaging.purger import SpoolKeeper
    from agent.journal.writer import Journal

    handlers = [h for name, s in domains.items() for h in imaging.handlers(name, s)]
    journal = await Journal.open(path, handlers)
    readers = Readers(path)
    ctx = _Offline(path.parent, readers, journal)
    root = SpoolLayout.of(path.parent).root
    deleted = 0
    try:
        for name, section in domains.items():
            keeper = SpoolKeeper(name, section)
            await keeper.remove_leftovers(ctx, root)
            deleted += await keeper.purge_pass(ctx, root, critical=False)
    finally:
        await readers.close()
        await journal.close()
    print(f"{deleted} image files deleted (their index rows kept, marked purged)")
    return 0


def _sizes(files: list[str]) -> int:
    return sum(p.stat().st_size for p in map(Path, files) if p.is_file())
