"""WAL checkpoints on a thread and connection of their own: a checkpoint flushes twice (the
WAL, then the database), and the writer thread no longer waits for those flushes between two
group commits; WAL mode lets the writer go on appending while a PASSIVE checkpoint copies."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

# Checkpoint when about this many WAL frames (pages) have accumulated. Half SQLite's default:
# a smaller checkpoint copies pages the page cache still holds.
CHECKPOINT_FRAMES = 500


class Checkpointer:
    """Runs `PRAGMA wal_checkpoint(PASSIVE)` when asked; paces how many commits apart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.every = 16  # commits between checkpoints; re-estimated from each checkpoint
        self.wal_frames = 0  # pages written to the WAL, counted at each checkpoint
        self.checkpoints = 0
        self._commits = 0  # since the last checkpoint, as the writer said when asking
        self._due = threading.Condition()
        self._asked = False
        self._stopping = False
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="journal-checkpoint", daemon=True)

    def start(self) -> None:
        """Start the thread (it opens its own connection)."""
        self._thread.start()

    def request(self, commits: int) -> None:
        """Ask for a checkpoint after `commits` commits since the last one (never waits)."""
        with self._due:
            self._commits += commits
            self._asked = True
            self._due.notify()

    def close(self) -> None:
        """Finish a checkpoint under way, stop the thread and close its connection."""
        with self._due:
            self._stopping = True
            self._due.notify()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA synchronous=FULL")
            while True:
                with self._due:
                    while not (self._asked or self._stopping):
                        self._due.wait()
                    if self._stopping:
                        return
                    self._asked = False
                    commits, self._commits = self._commits, 0
                self._checkpoint(conn, commits)
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection, commits: int) -> None:
        try:
            _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as err:
            if not self._failing:  # the WAL only grows meanwhile: say so once
                log.warning("journal.checkpoint_failed", error=str(err))
                self._failing = True
            return
        if self._failing:
            log.info("journal.checkpoint_recovered")
            self._failing = False
        self.checkpoints += 1
        # `frames` counts the WAL since it last restarted, normally since the last checkpoint.
        self.wal_frames += frames
        per_commit = max(1.0, frames / max(1, commits))
        self.every = max(1, min(CHECKPOINT_FRAMES, int(CHECKPOINT_FRAMES / per_commit)))
