"""Configured regular expressions (tag lines, topics, scope numbers), checked at load time."""

from __future__ import annotations

import re


def compile_pattern(pattern: str, group: str | None = "tag") -> re.Pattern[str]:
    """Compile a config regex; ValueError if it is invalid or lacks the named `group`."""
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise ValueError(f"invalid regular expression: {err}") from err
    if group is not None and group not in compiled.groupindex:
        raise ValueError(f"the pattern needs a named group `{group}`, e.g. (?P<{group}>...)")
    return compiled
