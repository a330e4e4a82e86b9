"""Any line-based reader (barcode wristband scanners, odd readers): a regex with a `tag` group.

Each CR/LF-terminated line is searched with the pattern; the `tag` group is the code. A code of
an even number of hex digits carries bits (uppercased); anything else is kept verbatim as text.
"""

from __future__ import annotations

from agent.vocabulary.patterns import compile_pattern
from agent.vocabulary.tags import Read, code_read
from drivers.rfid.framing import LineParser


class PatternLineParser(LineParser):
    """Parses lines with a configured regular expression."""

    protocol = "regex"

    def __init__(self, pattern: str, source: str = "", max_line: int = 256) -> None:
        super().__init__(source, max_line)
        self.pattern = compile_pattern(pattern)

    def _parse_line(self, text: str, size: int) -> Read | None:
        match = self.pattern.search(text)
        code = match["tag"] if match is not None else None
        if not code:
            self._reject("no_match", size)
            return None
        if not code.isprintable() or "\ufffd" in code:  # control or non-ASCII bytes: line noise
            self._reject("bad_chars", size)
            return None
        return code_read(code)
