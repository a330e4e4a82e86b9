"""What a simulated cloud received, with its verdict; kept in a state folder when given one."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

Verdict = Literal["accepted", "refused", "failed", "dropped"]
VERDICTS: tuple[Verdict, ...] = ("accepted", "refused", "failed", "dropped")
RECEIVED_FILE = "received.jsonl"
STATE_FILE = "state.json"
KEPT = 10_000  # arrivals held in memory (the newest); the file keeps them all


@dataclass(frozen=True, slots=True)
class Arrival:
    """One request or C-STORE: what it was, when, what it carried and the platform's verdict.

    accepted: the platform's success answer; refused: the platform's own error code (in `code`);
    failed: an HTTP error status or a malformed answer; dropped: the connection was cut unanswered.
    """

    seq: int
    kind: str  # the endpoint's last path segment (uploadReadData, push, ingest…) or C-STORE
    at: str  # ISO 8601 with offset
    verdict: Verdict
    code: int | None  # the platform's code, else the HTTP status or DICOM status
    message: str
    key: str | None  # Idempotency-Key or SOPInstanceUID: what tells two deliveries apart
    body: Any  # JSON, form fields, or the text (cut at 4 KiB)

    def matches(self, kind: str | None, verdict: str | None, after: int) -> bool:
        """Whether it passes the /_sim/received filters."""
        return (
            self.seq > after
            and (kind is None or self.kind == kind)
            and (verdict is None or self.verdict == verdict)
        )


class Ledger:
    """The newest arrivals, in order; each also appended to `received.jsonl` (state folder)."""

    def __init__(self, state_dir: Path | None) -> None:
        self.state_dir = state_dir
        self.arrivals: list[Arrival] = []
        if state_dir is not None:
            state_dir.mkdir(parents=True, exist_ok=True)
            path = state_dir / RECEIVED_FILE
            if path.exists():
                lines = path.read_text(encoding="utf-8").splitlines()
                for line in lines:
                    with contextlib.suppress(ValueError, TypeError):  # a line cut by a crash
                        self.arrivals.append(Arrival(**json.loads(line)))
                if len(self.arrivals) < len(lines):  # drop the cut line before appending more
                    path.write_text("".join(_line(a) for a in self.arrivals), encoding="utf-8")
                del self.arrivals[:-KEPT]

    def add(
        self,
        kind: str,
        verdict: Verdict,
        code: int | None,
        message: str,
        *,
        key: str | None = None,
        body: Any = None,
    ) -> Arrival:
        """Append one arrival (and write it down, when there is a state folder)."""
        seq = self.arrivals[-1].seq + 1 if self.arrivals else 1
        at = datetime.now().astimezone().isoformat(timespec="milliseconds")
        arrival = Arrival(seq, kind, at, verdict, code, message, key, body)
        self.arrivals.append(arrival)
        if len(self.arrivals) > KEPT:
            del self.arrivals[: len(self.arrivals) - KEPT]
        if self.state_dir is not None:
            with (self.state_dir / RECEIVED_FILE).open("a", encoding="utf-8") as fp:
                fp.write(_line(arrival))
        return arrival

    def select(
        self, kind: str | None = None, verdict: str | None = None, after: int = 0
    ) -> list[Arrival]:
        """The arrivals passing the filters, oldest first."""
        return [a for a in self.arrivals if a.matches(kind, verdict, after)]

    def clear(self) -> None:
        """Forget every arrival (and the file); numbering starts again at 1."""
        self.arrivals.clear()
        if self.state_dir is not None:
            (self.state_dir / RECEIVED_FILE).unlink(missing_ok=True)


def _line(arrival: Arrival) -> str:
    return json.dumps(asdict(arrival), ensure_ascii=False) + "\n"


def load_state(state_dir: Path | None) -> dict[str, Any]:
    """The saved state (tokens, the platform's memory), or {} without a folder or file."""
    if state_dir is None or not (state_dir / STATE_FILE).exists():
        return {}
    loaded = json.loads((state_dir / STATE_FILE).read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else {}


def save_state(state_dir: Path | None, state: dict[str, Any]) -> None:
    """Replace the saved state atomically (mode 0600: it holds live tokens)."""
    if state_dir is None:
        return
    temporary = state_dir / (STATE_FILE + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fp:
        json.dump(state, fp, ensure_ascii=False)
    os.replace(temporary, state_dir / STATE_FILE)
