"""How a patient is shown where the screen may be seen by others: masked, the rows still apart."""

from __future__ import annotations


def mask_name(name: str | None) -> str:
    """A patient's name with all but its first character hidden: 张三 → 张*."""
    name = (name or "").strip()
    return name[:1] + "*" * (len(name) - 1) if name else ""


def mask_id(identifier: str | None) -> str:
    """A patient identifier with all but its last 4 characters hidden (at most half of it):
    PAT-20261207-0042 → *************0042, HIS0042 → ****042. Numbers of one day or one
    department share their beginning; their ends tell the rows apart."""
    identifier = (identifier or "").strip()
    keep = min(4, len(identifier) // 2)
    return "*" * (len(identifier) - keep) + identifier[len(identifier) - keep :]
