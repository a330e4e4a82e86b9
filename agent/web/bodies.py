"""Reading request bodies and query values: well-formed or a clear refusal (4xx), never a crash."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

MAX_DEPTH = 32  # nesting of a JSON body: the deepest document we take (an exam) needs 4
MAX_FIELDS = 64  # fields of a form
MAX_PARTS = 32  # parts of a multipart body: more is not one of our forms
MAX_FIELD_BYTES = 8 * 1024  # one text field of a multipart form
CHUNK = 64 * 1024
JSON_TYPES = frozenset({"application/json"})
UTF8 = frozenset({"utf-8", "utf8"})
_DIGITS = re.compile(r"[0-9]{1,9}")


class Refused(Exception):
    """The request cannot be taken: answer `status` with these problems."""

    def __init__(self, status: int, found: list[str]) -> None:
        super().__init__(*found)
        self.status = status
        self.found = found


@dataclass(slots=True)
class Form:
    """A form's text fields (each name once: repeats are problems) and its file parts."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, list[bytes]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def parse_json(raw: bytes) -> Any:
    """The JSON document in `raw`: UTF-8, finite numbers, at most MAX_DEPTH deep; Refused(400)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Refused(400, ["body: not UTF-8 text"]) from err
    try:
        document = json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError as err:
        raise Refused(400, [f"body: nested deeper than {MAX_DEPTH} levels"]) from err
    except ValueError as err:  # also a number too long to convert, or out of range
        raise Refused(400, [f"body: not valid JSON ({_reason(err)})"]) from err
    if _depth_exceeds(document, MAX_DEPTH):
        raise Refused(400, [f"body: nested deeper than {MAX_DEPTH} levels"])
    return document


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number out of range")
    return value


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a number")


def _reason(err: ValueError) -> str:
    # json's own messages name a position; ours and int()'s name the problem. Never the input.
    return str(err).split(":", 1)[0][:80] if isinstance(err, json.JSONDecodeError) else str(err)


def _depth_exceeds(document: Any, limit: int) -> bool:
    level: list[Any] = [document]
    for _ in range(limit + 1):
        level = [
            child
            for node in level
            if isinstance(node, dict | list)
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; Refused: 415 not JSON, 400 malformed, 422 not an object."""
    if request.content_type not in JSON_TYPES:
        raise Refused(415, ["body: send application/json"])
    _check_charset(request)
    document = parse_json(await request.read())
    if not isinstance(document, dict):
        raise Refused(422, ["body: must be a JSON object"])
    return document


async def read_raw_file(request: web.Request, limit: int) -> bytes:
    """The body as one file, streamed (not bounded by the API's max_body); 413 over `limit`."""
    data = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > limit:
            raise Refused(413, [f"file: larger than {limit} bytes"])
    return bytes(data)


async def read_form(request: web.Request, file_limits: Mapping[str, int] | None = None) -> Form:
    """A urlencoded or multipart form; files only in the parts named in `file_limits` (their
    byte limits). Refused: 415 another type, 400 malformed, 413 a part too large."""
    if request.content_type == "application/x-www-form-urlencoded":
        _check_charset(request)
        return _urlencoded(await request.read())
    if request.content_type == "multipart/form-data":
        try:
            return await _multipart(request, file_limits or {})
        except (ValueError, LookupError, RuntimeError, HttpProcessingError) as err:
            # A missing or wrong boundary, a body cut short, a broken part header.
            raise Refused(400, ["body: not a well-formed multipart body"]) from err
    raise Refused(415, ["body: send application/x-www-form-urlencoded or multipart/form-data"])


def _check_charset(request: web.Request) -> None:
    charset = request.charset
    if charset is not None and charset.lower() not in UTF8:
        raise Refused(400, ["body: only the UTF-8 charset is accepted"])


def _urlencoded(raw: bytes) -> Form:
    try:
        pairs = parse_qsl(
            raw.decode("utf-8"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except UnicodeDecodeError as err:
        raise Refused(400, ["body: not UTF-8 text"]) from err
    except ValueError as err:
        raise Refused(400, [f"body: more than {MAX_FIELDS} fields"]) from err
    form = Form()
    for name, value in pairs:
        _add_field(form, name, value)
    return form


def _add_field(form: Form, name: str, value: str) -> None:
    if name in form.fields:
        if f"{name}: given more than once" not in form.problems:
            form.problems.append(f"{name}: given more than once")
    else:
        form.fields[name] = value


async def _multipart(request: web.Request, file_limits: Mapping[str, int]) -> Form:
    if not _has_boundary(request):
        raise Refused(400, ["body: multipart without a boundary"])
    reader = await request.multipart()
    form = Form()
    for _ in range(MAX_PARTS):
        part = await reader.next()
        if part is None:
            return form
        if not isinstance(part, BodyPartReader):
            raise Refused(400, ["body: nested multipart is not accepted"])
        name = part.name or ""
        if name in file_limits:
            label = f"{name} {len(form.files.get(name, [])) + 1}"
            data = await _read_part(part, file_limits[name], label)
            if data:  # an HTML file input left empty still sends an empty part
                form.files.setdefault(name, []).append(data)
            continue
        raw = await _read_part(part, MAX_FIELD_BYTES, name or "field")
        try:
            _add_field(form, name, raw.decode("utf-8"))
        except UnicodeDecodeError:
            form.problems.append(f"{name}: not UTF-8 text")
    raise Refused(400, [f"body: more than {MAX_PARTS} parts"])


def _has_boundary(request: web.Request) -> bool:
    return "boundary=" in request.headers.get("Content-Type", "").lower()


async def _read_part(part: BodyPartReader, limit: int, label: str) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        data += chunk
        if len(data) > limit:
            raise Refused(413, [f"{label}: larger than {limit} bytes"])
    return bytes(data)


def only_query(request: web.Request, *names: str) -> None:
    """Refused(400) for a query parameter the route does not know (a typo is not ignored)."""
    unknown = sorted(set(request.query) - set(names))
    if unknown:
        raise Refused(400, [f"{name}: not a parameter of this route" for name in unknown[:8]])


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """The integer query parameter `name` (`default` when absent); Refused(400) unless a plain
    number from `low` to `high`."""
    text = request.query.get(name)
    if text is None:
        return default
    if not _DIGITS.fullmatch(text) or not low <= int(text) <= high:
        raise Refused(400, [f"{name}: an integer from {low} to {high}"])
    return int(text)
