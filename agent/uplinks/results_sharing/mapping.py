"""A results-sharing mapping set (seed 001 gives no field): a folder of two TOML files, read
alike by the uplink (what to send) and the simulator (what to accept).

* `platform.toml`: the token request, how calls carry the token, the answer envelope, the time
  formats and one `[endpoints.<name>]` per interface (path, body kind, record key);
* `fields.toml`: the kit's field file (agent/uplinks/kit/fieldfile.py): `[tables.<endpoint>]`
  (what the platform accepts) and `[maps.<record kind>]` (neutral record → request).

Every error reads `FILE: key: reason`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.uplinks.kit.fieldfile import FieldFileError, load_field_file
from agent.uplinks.kit.fieldmap import RecordMap
from agent.uplinks.kit.fields import Checks, TimeFormat
from agent.uplinks.kit.fields import Field as TableField

PLATFORM_FILE = "platform.toml"
FIELDS_FILE = "fields.toml"
DEFAULT_DIR = Path(__file__).with_name("mappings")
# The record kinds the uplink sends, each needing a map (a mapping set may add more).
REQUIRED_MAPS = ("exam.index", "exam.pdf")
Path_ = Annotated[str, Field(pattern=r"^[A-Za-z0-9/_.{}-]+$")]


class MappingError(ValueError):
    """A mapping set that cannot be used: `FILE: key: reason`."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenRequest(_Strict):
    """[token]: how a token is asked for (a JSON POST) and where the answer carries it."""

    path: Path_ = "auth/getToken"
    # The JSON body; "{app_id}" and "{app_secret}" are replaced by the configured credentials.
    body: dict[str, str] = {"appId": "{app_id}", "appSecret": "{app_secret}"}
    token: str = "data.accessToken"  # noqa: S105 - a dotted path in the answer
    expires_in: str = "data.expiresIn"  # seconds; absent: the uplink's token_lifetime


class TokenUse(_Strict):
    """[auth]: how each call carries the token (a header, with a prefix)."""

    header: str = "Authorization"
    prefix: str = "Bearer "


class AnswerShape(_Strict):
    """[answer]: the envelope and its codes (HTTP 200 is required besides: the seed)."""

    code: str = "code"
    message: str = "msg"
    data: str = "data"
    success: list[int] = [200]
    token_expired: list[int] = [401]
    busy: list[int] = [500, 503]  # retried; every other code is a dead letter
    already: list[int] = []  # "already received": delivered


class Endpoint(_Strict):
    """[endpoints.<table>]: one interface of the platform."""

    path: Path_
    body: Literal["json", "multipart"] = "json"
    file_part: str = "file"  # multipart: the part carrying the file
    key: list[str] = []  # the fields that name one record (the platform keeps the last)


class Daily(_Strict):
    """[daily]: the maps of the daily report and of the completeness check, and where the
    check's answer lists what the platform lacks."""

    report_map: str = "daily.report"
    check_map: str = "daily.check"
    missing: str = "data.missing"


class Keys(_Strict):
    """[keys]: the maps that verify a viewerKey or downloadKey with the platform, and where a
    success answer says the key is valid."""

    viewer_map: str = "viewer.verify"
    download_map: str = "download.verify"
    valid: str = "data.valid"


class Query(_Strict):
    """[queries.<name>]: a query for doctors' stations (POST /api/v1/sharing/queries/<name>)."""

    map: str  # the map that makes the request from the posted parameters
    cache_seconds: Annotated[float, Field(ge=0)] = 0.0  # answers kept and answered locally
    # How the simulator answers: the records of endpoint `searches` (or of its reference list
    # of that name: standard_items, institutions) whose `by` fields equal the request's, or a
    # new key of kind `issues` ("viewer", "download").
    searches: str = ""
    by: list[str] = []
    issues: Literal["", "viewer", "download"] = ""
    # The field of each answered record that holds its PDF: a URL under the platform's base
    # URL (fetched with the token) or the file in Base64; POST .../queries/<name>/pdf answers it.
    pdf: str = ""


class PlatformFile(_Strict):
    """platform.toml"""

    token: TokenRequest = TokenRequest()
    auth: TokenUse = TokenUse()
    answer: AnswerShape = AnswerShape()
    formats: dict[str, str] = {"DT": "%Y-%m-%d %H:%M:%S", "date": "%Y-%m-%d"}
    length_unit: Literal["chars", "utf8_bytes"] = "chars"
    endpoints: dict[str, Endpoint]
    daily: Daily | None = None  # absent: no daily report or completeness check
    keys: Keys | None = None  # absent: the gate cannot verify keys (it refuses every one)
    queries: dict[str, Query] = {}


@dataclass(frozen=True, slots=True)
class MappingSet:
    """One platform's transport, tables and maps, as read from a folder."""

    folder: Path
    platform: PlatformFile
    tables: dict[str, dict[str, TableField]]
    maps: dict[str, RecordMap]

    @property
    def checks(self) -> Checks:
        """How the tables are applied (a field's time format is one of `formats`)."""
        formats = {n: TimeFormat(p) for n, p in self.platform.formats.items()}
        return Checks(formats=formats, length_unit=self.platform.length_unit, strays="the table")

    def endpoint_of(self, kind: str) -> tuple[str, Endpoint]:
        """(table name, endpoint) a record kind is sent to."""
        name = self.maps[kind].endpoint
        return name, self.platform.endpoints[name]


def load_mapping_set(folder: Path, required: tuple[str, ...] = REQUIRED_MAPS) -> MappingSet:
    """Read and cross-check a mapping folder; MappingError names the file, key and reason."""
    platform_path, fields_path = folder / PLATFORM_FILE, folder / FIELDS_FILE
    try:
        raw = tomllib.loads(platform_path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise MappingError(f"{platform_path}: {type(err).__name__}: cannot be read") from None
    except tomllib.TOMLDecodeError as err:
        raise MappingError(f"{platform_path}: toml: {err}") from None
    try:
        platform = PlatformFile.model_validate(raw)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        key = ".".join(str(part) for part in first["loc"])
        reason = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise MappingError(f"{platform_path}: {key}: {reason}") from None
    try:
        fields = load_field_file(fields_path)
    except FieldFileError as err:
        raise MappingError(str(err)) from None
    for name in platform.endpoints:
        if name not in fields.tables:
            raise MappingError(f"{fields_path}: tables.{name}: missing (platform.toml has it)")
    for name, table in fields.tables.items():
        for item in _all_fields(table):
            if item.time_format_name and item.time_format_name not in platform.formats:
                where = f"tables.{name}.{item.name}"
                raise MappingError(f"{fields_path}: {where}: no format {item.time_format_name!r}")
    daily = platform.daily
    wanted = (*required, daily.report_map, daily.check_map) if daily else required
    if platform.keys is not None:
        wanted = (*wanted, platform.keys.viewer_map, platform.keys.download_map)
    wanted = (*wanted, *(query.map for query in platform.queries.values()))
    for kind in wanted:
        if kind not in fields.maps:
            raise MappingError(f'{fields_path}: maps."{kind}": missing (the uplink sends it)')
    for kind, record_map in fields.maps.items():
        if record_map.endpoint and record_map.endpoint not in platform.endpoints:
            where = f'maps."{kind}".endpoint'
            reason = f"{record_map.endpoint!r} is not an [endpoints] entry of {PLATFORM_FILE}"
            raise MappingError(f"{fields_path}: {where}: {reason}")
        table = fields.tables.get(record_map.endpoint, {})
        for rule in record_map.fields:
            top = rule.target.split(".", 1)[0]
            if record_map.endpoint and top not in table:
                where = f'maps."{kind}".{rule.target}'
                reason = f"{top!r} is not a field of tables.{record_map.endpoint}"
                raise MappingError(f"{fields_path}: {where}: {reason}")
    return MappingSet(folder, platform, fields.tables, fields.maps)


def _all_fields(table: dict[str, TableField]) -> list[TableField]:
    found: list[TableField] = []
    for item in table.values():
        found.append(item)
        found += _all_fields(dict(item.children))
    return found


def answer_path(body: Any, path: str) -> Any:
    """The value at a dotted path of a JSON answer (None where absent)."""
    node = body
    for step in filter(None, path.split(".")):
        node = node.get(step) if isinstance(node, dict) else None
    return node
