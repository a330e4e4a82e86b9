"""A tiny escaping renderer: `$name` templates whose values are escaped unless already Markup."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from datetime import UTC, datetime, tzinfo
from string import Template
from typing import Any


class Markup(str):
    """HTML that is safe to insert as is (rendered by this module)."""

    __slots__ = ()


def escape(value: Any) -> Markup:
    """`value` as HTML text: Markup unchanged, None as empty, anything else escaped."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


def render(template: str, **values: Any) -> Markup:
    """Substitute `$name` (every one required); values are escaped unless Markup."""
    return Markup(Template(template).substitute({k: escape(v) for k, v in values.items()}))


def join(parts: Iterable[Markup], separator: str = "") -> Markup:
    """Markup pieces joined (the separator is trusted text)."""
    return Markup(separator.join(parts))


def both(chinese: str, english: str) -> Markup:
    """A bilingual label: Chinese first, English beside it."""
    return render('$zh <span class="en">$en</span>', zh=chinese, en=english)


def duration(seconds: float | None) -> str:
    """`m:ss` under an hour, `h:mm:ss` above; '' for None."""
    if seconds is None or math.isnan(seconds):
        return ""
    total = max(int(seconds), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def local_time(
    value: str | float | datetime | None, zone: tzinfo | None, style: str = "%Y-%m-%d %H:%M:%S"
) -> str:
    """An ISO string, unix seconds or datetime in `zone`, formatted with `style`."""
    if value is None or value == "":
        return ""
    if isinstance(value, (int, float)):
        moment = datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value)
    else:
        moment = value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone).strftime(style)


def parse_time(value: str | None) -> datetime | None:
    """An ISO time as an aware datetime (naive means UTC); None for none."""
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


ICONS = {
    # Shapes differ as well as colours: a reader who cannot tell red from green still can.
    "ready": '<path d="M9 16.2 4.8 12l-1.4 1.4L9 19 21 7l-1.4-1.4z"/>',
    "blocked": '<path d="M15.7 3H8.3L3 8.3v7.4L8.3 21h7.4l5.3-5.3V8.3zM17 15.6 15.6 17 12 13.4'
    ' 8.4 17 7 15.6l3.6-3.6L7 8.4 8.4 7l3.6 3.6L15.6 7 17 8.4 13.4 12z"/>',
    "warning": '<path d="M1 21h22L12 2zm12-3h-2v-2h2zm0-4h-2v-4h2z"/>',
    "progress": '<path d="M12 4V1L8 5l4 4V6a6 6 0 1 1-6 6H4a8 8 0 1 0 8-8z"/>',
    "none": '<path d="M5 11h14v2H5z"/>',
    "online": '<circle cx="12" cy="12" r="8"/>',
    "offline": '<path d="M12 4a8 8 0 1 0 0 16 8 8 0 0 0 0-16zm0 2a6 6 0 1 1 0 12 6 6 0 0 1'
    ' 0-12z"/>',
}


def icon(name: str) -> Markup:
    """An inline SVG icon (no font or file to load), coloured by the text around it."""
    return Markup(
        f'<svg class="icon" viewBox="0 0 24 24" aria-hidden="true" fill="currentColor">'
        f"{ICONS[name]}</svg>"
    )
