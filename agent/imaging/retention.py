"""The spool's retention rules: which images may lose their file, and marking them purged (pure
SQL). An image is purgeable when every uplink that forwards images has it delivered (or an
operator discarded it) long enough ago, no message for it is pending, in flight or dead, and its
study is old enough for the pull services."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.imaging.forwarding import INSTANCE

SETTLED = ("delivered", "discarded")
PRESSURE = "imaging.disk_pressure"  # the free space crossed a level (or the agent started)
PURGE = "imaging.purge"  # images proposed for purging under the cut-offs it carries


@dataclass(frozen=True, slots=True)
class Policy:
    """The cut-offs one purge pass applies (times as the index and the outbox keep them)."""

    image_uplinks: frozenset[str]  # uplinks whose plan forwards images: each must have it
    received_before: str  # ISO UTC: images received later are not looked at
    delivered_before: float  # unix seconds: deliveries settled later are too recent
    pull_before: str  # ISO UTC: studies (and their exams) touched later are kept for pulls


Candidate = tuple[str, str, str]  # (received_at, sop_uid, path)


def candidates(
    conn: sqlite3.Connection, after: tuple[str, str], received_before: str, limit: int
) -> list[Candidate]:
    """Unpurged images received before `received_before`, after (received_at, sop_uid) `after`."""
    return list(
        conn.execute(
            "SELECT received_at, sop_uid, path FROM im_instances"
            " WHERE purged_at IS NULL AND received_at <= ? AND (received_at, sop_uid) > (?, ?)"
            " ORDER BY received_at, sop_uid LIMIT ?",
            (received_before, *after, limit),
        )
    )


def purgeable(conn: sqlite3.Connection, sop_uid: str, path: str, policy: Policy) -> bool:
    """Whether the image `sop_uid`, still unpurged at `path`, may lose its file now."""
    row = conn.execute(
        "SELECT i.received_at, i.study_uid, s.last_received FROM im_instances i"
        " LEFT JOIN im_studies s ON s.study_uid = i.study_uid"
        " WHERE i.sop_uid = ? AND i.path = ? AND i.purged_at IS NULL",
        (sop_uid, path),
    ).fetchone()
    if row is None or row[0] > policy.received_before:
        return False
    if (row[2] or "") > policy.pull_before or _exam_touched_after(conn, row[1], policy.pull_before):
        return False
    forwarded = {u for (u,) in conn.execute(_FORWARDED, (sop_uid,))}
    if not policy.image_uplinks <= forwarded:
        return False  # not yet queued for an uplink that needs it (a study not stable yet)
    prefix = f"{INSTANCE}:{sop_uid}:"
    for uplink in forwarded:
        for state, settled_at in conn.execute(_MESSAGES, (uplink, prefix, prefix[:-1] + ";")):
            if state not in SETTLED or settled_at is None or settled_at > policy.delivered_before:
                return False
    return True


_FORWARDED = "SELECT uplink FROM im_forwarded WHERE sop_uid = ?"
# Every message sent for the instance (one per file received under its UID), through the
# outbox's UNIQUE (uplink, dedupe_key) index. Messages the journal's retention already removed
# were settled years ago.
_MESSAGES = (
    "SELECT state, settled_at FROM outbox WHERE uplink = ? AND dedupe_key >= ? AND dedupe_key < ?"
)


def _exam_touched_after(conn: sqlite3.Connection, study_uid: str, cutoff: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM im_exams WHERE study_uid = ? AND updated_at > ? LIMIT 1", (study_uid, cutoff)
    ).fetchone()
    return row is not None


def select(conn: sqlite3.Connection, rows: Iterable[Candidate], policy: Policy) -> list[Candidate]:
    """The rows of `rows` that are purgeable under `policy`."""
    return [row for row in rows if purgeable(conn, row[1], row[2], policy)]


def mark_purged(
    conn: sqlite3.Connection, proposed: Sequence[Sequence[str]], policy: Policy, at: str
) -> list[tuple[str, str]]:
    """Mark purged, as of `at`, the proposed [sop_uid, path] still purgeable (checked again in
    this transaction: an image received again or queued meanwhile keeps its file); those marked."""
    marked = []
    for sop_uid, path in proposed:
        if purgeable(conn, str(sop_uid), str(path), policy):
            conn.execute("UPDATE im_instances SET purged_at = ? WHERE sop_uid = ?", (at, sop_uid))
            marked.append((str(sop_uid), str(path)))
    return marked


def purged_files(conn: sqlite3.Connection, proposed: Sequence[Sequence[str]]) -> list[str]:
    """The stored paths of the proposed [sop_uid, path] that are now marked purged at that path."""
    files = []
    for sop_uid, path in proposed:
        row = conn.execute(
            "SELECT 1 FROM im_instances WHERE sop_uid = ? AND path = ? AND purged_at IS NOT NULL",
            (sop_uid, path),
        ).fetchone()
        if row is not None:
            files.append(str(path))
    return files


def last_purged(conn: sqlite3.Connection) -> list[str]:
    """The stored paths of the images the latest purge marked: a stop between its commit and
    the deletes leaves their files behind."""
    return [
        str(path)
        for (path,) in conn.execute(
            "SELECT path FROM im_instances WHERE purged_at ="
            " (SELECT MAX(purged_at) FROM im_instances WHERE purged_at IS NOT NULL)"
        )
    ]


def spool_totals(conn: sqlite3.Connection) -> tuple[int, int]:
    """(images whose file is kept, images purged) in the index."""
    row = conn.execute(
        "SELECT COUNT(*) - COUNT(purged_at), COUNT(purged_at) FROM im_instances"
    ).fetchone()
    return int(row[0]), int(row[1])
