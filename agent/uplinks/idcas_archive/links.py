"""Signed IDCAS page links (seed 002): pure functions, no I/O, nothing logged.

token = Base64(3DES-CBC(compact JSON)), sign = md5(token + sev + timestamp + md5 key) over the
values before URL-encoding; H5 pages 3DES every value on its own and carry the user token.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

from agent.crypto import des3
from agent.crypto.digest import hexdigest
from agent.errors import AgentError
from agent.uplinks.idcas_archive.pages import PAGES, Page, Param

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
TOKEN_PREFIX = "token."  # noqa: S105 - a name inside the token JSON where the query has the same name (4.2)


class LinkError(AgentError):
    """Parameters a page does not take; `problems` has one `name: reason` line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class LinkKeys:
    """What the platform issues at onboarding: 3DES key and IV, MD5 key, sev (per page)."""

    des_key: str
    md5_key: str
    sev: str
    des_iv: str = des3.SEED_002_IV
    page_sev: Mapping[str, str] = field(default_factory=dict)
    source: str = "his"  # the table says HIS, every example his
    numbers: bool = True  # 6.3's short/int fields as JSON numbers

    def sev_for(self, page: str) -> str:
        """The sev of `page`: its own if configured, else the shared one."""
        return self.page_sev.get(page, self.sev)


def page_of(name: str) -> Page:
    """The page called `name`; LinkError naming the known ones if there is none."""
    page = PAGES.get(name)
    if page is None:
        raise LinkError([f"page: no page {name!r}; known: {', '.join(sorted(PAGES))}"])
    return page


def encrypt(value: str, keys: LinkKeys) -> str:
    """One value 3DES'd as the platform does (Base64)."""
    return des3.encrypt_text(value, keys.des_key, iv=keys.des_iv, setting="des_key")


def sign(token: str, sev: str, timestamp: str, md5_key: str) -> str:
    """md5(token + sev + timestamp + key), lower hex: token and sev before URL-encoding."""
    return hexdigest("md5", f"{token}{sev}{timestamp}{md5_key}")


def split_values(page: Page, values: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(query values, token values) of a page; LinkError naming every parameter that is wrong."""
    query_names = {p.name for p in page.query}
    token_names = {p.name for p in page.token}
    query: dict[str, str] = {}
    token: dict[str, str] = {}
    problems = []
    for name, raw in values.items():
        if raw is None:
            continue
        text = _text(raw)
        if text is None:
            problems.append(f"{name}: must be a string or a number")
        elif name.startswith(TOKEN_PREFIX) and name[len(TOKEN_PREFIX) :] in token_names:
            token[name[len(TOKEN_PREFIX) :]] = text
        elif name in query_names:
            query[name] = text
        elif name in token_names:
            token[name] = text
        else:
            problems.append(f"{name}: {page.name} takes no such parameter")
    problems += _check(page.query, query) + _check(page.token, token)
    given = {k: v for k, v in (*token.items(), *query.items()) if v}
    for group in page.one_of:
        if not any(given.get(name) for name in group):
            problems.append(f"{'|'.join(group)}: one of them is required")
    for name, value, then in page.required_when:
        if given.get(name) == value and not given.get(then):
            problems.append(f"{then}: required when {name} is {value}")
    if problems:
        raise LinkError(problems)
    return query, token


def token_json(page: Page, values: Mapping[str, str], numbers: bool = True) -> str:
    """The token's compact JSON: every field of the page in order, empty ones as ""."""
    body: dict[str, str | int] = {}
    for p in page.token:
        value = values.get(p.name, "")
        body[p.name] = int(value) if numbers and p.number and value else value
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def build(
    page_name: str,
    values: Mapping[str, Any],
    keys: LinkKeys,
    *,
    portal: str,
    now: datetime,
    user_token: str | None = None,
) -> str:
    """The signed URL of a page on `portal` (scheme and host) at local time `now`."""
    page = page_of(page_name)
    query, token_values = split_values(page, values)
    if page.style in ("h5", "h5plain") and not user_token:
        raise LinkError(["token: an H5 page needs the user access token"])
    special: dict[str, str] = {}
    if page.style in ("signed", "reminder"):
        token = encrypt(token_json(page, token_values, keys.numbers), keys) if page.token else ""
        sev = keys.sev_for(page.name)
        timestamp = now.strftime(TIMESTAMP_FORMAT)
        special = {
            "token": quote_base64(token),
            "sev": quote_base64(sev),
            "timestamp": timestamp.replace(" ", "%20").replace(":", "%3A"),
            "sign": sign(token, sev, timestamp, keys.md5_key),
            "source": quote(keys.source, safe=""),
        }
    elif page.style == "h5":
        query = {name: encrypt(value, keys) if value else "" for name, value in query.items()}
        quoted = {name: quote_base64(value) for name, value in query.items()}
    if page.style != "h5":
        quoted = {name: quote(value, safe="") for name, value in query.items()}
    parts = []
    for item in page.layout:
        if item.startswith("@"):
            name = item[1:]
            if name == "user_token":
                parts.append(f"token={quote(user_token or '', safe='')}")
            else:
                parts.append(f"{name}={special[name]}")
        elif "=" in item:
            parts.append(item)
        elif query.get(item) or page.keep_empty:
            parts.append(f"{item}={quoted.get(item, '')}")
    base = f"{portal.rstrip('/')}{page.path}"
    return f"{base}?{'&'.join(parts)}" if parts else base


def quote_base64(text: str) -> str:
    """quote(text, safe="") for Base64 text, whose only escapes are + / = (faster)."""
    return text.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")


def _text(raw: Any) -> str | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, str):
        return raw.strip()
    if isinstance(raw, int | float):
        return str(raw)
    return None


def _check(params: tuple[Param, ...], values: Mapping[str, str]) -> list[str]:
    problems = []
    for p in params:
        value = values.get(p.name, "")
        if not value:
            if p.required:
                problems.append(f"{p.name}: required")
            continue
        if p.choices and value not in p.choices:
            problems.append(f"{p.name}: not one of {', '.join(sorted(p.choices))}")
        elif p.date and not _is_date(value):
            problems.append(f"{p.name}: not a date yyyy-MM-dd")
        elif p.number and not value.isdigit():
            problems.append(f"{p.name}: not a whole number")
        elif p.max_length is not None and len(value) > p.max_length:
            problems.append(f"{p.name}: longer than {p.max_length} characters")
    return problems


def _is_date(value: str) -> bool:
    if not DATE.fullmatch(value):
        return False
    try:
        date(int(value[:4]), int(value[5:7]), int(value[8:10]))
    except ValueError:
        return False
    return True
