"""A parsed washer cycle, the receipt error, decoding, and the `washer.cycle` payload."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from agent.errors import InputError
from agent.vocabulary.steps import Disinfectant, StepKind

Verdict = Literal["pass", "fail"]
_GB_FAMILY = {"gb18030", "gbk", "gb2312", "cp936"}


class ReceiptError(InputError):
    """A receipt that cannot be read; `reason` is a short bounded code, `detail` says more."""


@dataclass(frozen=True, slots=True)
class Phase:
    """One phase of the machine's programme, as printed."""

    name: str
    kind: StepKind
    started_at: datetime
    ended_at: datetime
    temperature_c: float | None = None
    disinfectant: Disinfectant | None = None
    concentration_pct: float | None = None


@dataclass(frozen=True, slots=True)
class Channel:
    """A channel check (活检管道 通畅 …)."""

    name: str
    result: Verdict


@dataclass(frozen=True, slots=True)
class WasherCycle:
    """One washer-disinfector cycle read from a receipt; `washer` is "" if none is printed."""

    washer: str
    program: str
    cycle_number: str
    started_at: datetime
    ended_at: datetime
    operator: str
    scope: str
    phases: tuple[Phase, ...]
    leak_test: Verdict | None
    channels: tuple[Channel, ...]
    error_code: str
    result: Verdict


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def cycle_payload(
    cycle: WasherCycle, *, washer: str, fmt: str, sha256: str, text: str
) -> dict[str, Any]:
    """The `washer.cycle` event payload; `washer` replaces an unprinted machine id."""
    return {
        "washer": cycle.washer or washer,
        "program": cycle.program,
        "cycle_number": cycle.cycle_number,
        "started_at": _utc(cycle.started_at),
        "ended_at": _utc(cycle.ended_at),
        "operator": cycle.operator,
        "scope": cycle.scope,
        "phases": [
            {
                "name": p.name,
                "kind": p.kind.value,
                "started_at": _utc(p.started_at),
                "ended_at": _utc(p.ended_at),
                "temperature_c": p.temperature_c,
                "disinfectant": p.disinfectant.value if p.disinfectant else None,
                "concentration_pct": p.concentration_pct,
            }
            for p in cycle.phases
        ],
        "leak_test": cycle.leak_test,
        "channels": [{"name": c.name, "result": c.result} for c in cycle.channels],
        "error_code": cycle.error_code,
        "result": cycle.result,
        "format": fmt,
        "receipt_sha256": sha256,
        "receipt_text": text,
    }


def decode(data: bytes, encoding: str) -> str:
    """Decode text bytes strictly; ReceiptError("mis_encoded") says why they are not `encoding`."""
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        raise ReceiptError(
            "mis_encoded", f"invalid {encoding} bytes at offset {err.start}"
        ) from err
    if text.startswith("\ufeff"):
        text = text[1:]
    bad = [c for c in text if unicodedata.category(c) in {"Cc", "Co", "Cn"} and c not in "\r\n\t"]
    if bad:
        raise ReceiptError("mis_encoded", f"{len(bad)} control or unassigned characters")
    if encoding.lower().replace("-", "").replace("_", "") in _GB_FAMILY:
        _check_gb(data, text)
    return text


def _check_gb(data: bytes, text: str) -> None:
    """Reject UTF-8 or Big5 bytes that happen to be valid GB18030 (they decode to nonsense)."""
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            raise ReceiptError("mis_encoded", "the bytes are UTF-8, not GB18030")
    # Simplified-Chinese receipts use GB2312 characters almost only; Big5 or UTF-8 bytes read
    # as GB18030 land mostly outside it.
    hanzi = [c for c in text if "\u3400" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff"]
    if len(hanzi) >= 4:
        rare = sum(1 for c in hanzi if not _in_gb2312(c))
        if rare * 4 > len(hanzi):
            raise ReceiptError(
                "mis_encoded", f"{rare} of {len(hanzi)} characters are outside GB2312 (Big5?)"
            )


def _in_gb2312(char: str) -> bool:
    try:
        char.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return True
