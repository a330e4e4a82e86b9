"""Load and validate the TOML config; every configuration error surfaces here, at start."""

from __future__ import annotations

import os
import re
import stat
import sys
import tempfile
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from agent.errors import ConfigError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
MAX_SECRET_BYTES = 64 * 1024  # a token, a key or a PEM certificate chain fits many times


def default_state_dir() -> Path:
    """/var/lib/edge-agent; %ProgramData%\\edge-agent\\state on Windows."""
    if sys.platform == "win32":
        from agent.windows.paths import default_state_dir as windows_state_dir

        return windows_state_dir()
    return Path("/var/lib/edge-agent")


class UnreadSecret(SecretStr):
    """A secret's reference (`credential:NAME`…) left unread: its section is disabled, or
    `check-config --no-secrets`. Never used to talk to anything."""


def too_short(secret: SecretStr | None) -> bool:
    """Whether a token read from the config is shorter than MIN_TOKEN_LENGTH (unread: no)."""
    if secret is None or isinstance(secret, UnreadSecret):
        return False
    return len(secret.get_secret_value()) < MIN_TOKEN_LENGTH


def _resolve_secret(value: Any, info: ValidationInfo) -> SecretStr:
    """Turn `env:NAME`, `credential:NAME`, `file:PATH` or a literal into the secret's value."""
    if isinstance(value, SecretStr):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string: env:NAME, credential:NAME, file:PATH or the value")
    context = info.context or {}
    # A disabled section never uses its secrets, and `check-config --no-secrets` checks a config
    # where they are not: the reference itself stands in for the value.
    if context.get("skip_secrets") or info.data.get("enabled") is False:
        return UnreadSecret(value)
    environ: Mapping[str, str] = context.get("environ", os.environ)
    base: Path = context.get("base_dir", Path.cwd())
    scheme, _, rest = value.partition(":")
    if scheme == "env":
        if rest not in environ:
            raise ValueError(f"environment variable {rest} is not set")
        return SecretStr(environ[rest])
    if scheme == "credential":
        directory = environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise ValueError(
                f"credential {rest!r} needs $CREDENTIALS_DIRECTORY (systemd LoadCredential=)"
            )
        return _read_secret_file(Path(directory) / rest)
    if scheme == "file":
        return _read_secret_file(base / rest)
    return SecretStr(value)


def _read_secret_file(path: Path) -> SecretStr:
    # Opened without blocking and checked before reading: a FIFO or /dev/zero named by mistake
    # must fail the start with a reason, not hang it or read without end. Binary on Windows, whose
    # text mode would turn CRLF into LF and stop at a Ctrl-Z byte.
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as err:
        raise ValueError(f"cannot read secret file {path}: {err.strerror or err}") from err
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"secret file {path} is not a regular file")
        data = os.read(fd, MAX_SECRET_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET_BYTES:
        raise ValueError(f"secret file {path} is over {MAX_SECRET_BYTES // 1024} KiB")
    try:
        text = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as err:
        raise ValueError(f"secret file {path} is not UTF-8 text") from err
    if not text:
        raise ValueError(f"secret file {path} is empty")
    return SecretStr(text)


def _relative_to_config(value: Path, info: ValidationInfo) -> Path:
    base: Path = (info.context or {}).get("base_dir", Path.cwd())
    return (base / value).resolve() if not value.is_absolute() else value


def _writable_dir(value: Path) -> Path:
    try:
        value.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=value, prefix=".write-check-"):
            pass
    except OSError as err:
        raise ValueError(f"{value} is not a writable directory: {err.strerror or err}") from err
    return value


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"unknown time zone {value!r}") from err
    return value


Secret = Annotated[SecretStr, BeforeValidator(_resolve_secret)]
ConfigPath = Annotated[Path, AfterValidator(_relative_to_config)]
StateDir = Annotated[Path, AfterValidator(_relative_to_config), AfterValidator(_writable_dir)]
Seconds = Annotated[float, Field(gt=0)]
TimeZoneName = Annotated[str, AfterValidator(_known_zone)]  # an IANA zone, e.g. Asia/Shanghai


class Section(BaseModel):
    """A config table: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class AgentSection(Section):
    """[agent]"""

    state_dir: StateDir = default_state_dir()
    shutdown_timeout: Seconds = 10.0
    stats_interval: Annotated[float, Field(ge=0)] = 60.0


class LogSection(Section):
    """[log]"""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"
    # Also write JSON lines to this file, rotated by size (the Windows service logs only there,
    # by default to %ProgramData%\edge-agent\logs\edge-agent.log).
    file: ConfigPath | None = None
    file_max_bytes: Annotated[int, Field(ge=64 * 1024)] = 10 * 1024 * 1024
    file_backups: Annotated[int, Field(ge=0, le=1000)] = 10


class JournalSection(Section):
    """[journal]"""

    retention_days: Annotated[int, Field(ge=1)] = 1096
    purge_interval: Seconds = 3600.0
    max_batch: Annotated[int, Field(ge=1, le=100_000)] = 1024
    # The retention deletes this many rows per transaction, pausing purge_pause s between two,
    # then returns vacuum_pages free pages per step to the filesystem (0: never).
    purge_batch: Annotated[int, Field(ge=1, le=100_000)] = 100
    purge_pause: Annotated[float, Field(ge=0, le=60)] = 0.1
    vacuum_pages: Annotated[int, Field(ge=0, le=1_000_000)] = 64


class SupervisorSection(Section):
    """[supervisor]"""

    restart_initial: Seconds = 1.0
    restart_max: Seconds = 60.0
    stable_after: Seconds = 10.0


class PluginSection(Section):
    """Common keys of every [uplinks.*], [sources.*], [simulators.*] and [domains.*] table."""

    type: str
    enabled: bool = True

    def uplinks_used(self) -> list[str]:
        """Uplinks this table names (checked against [uplinks.*] at load)."""
        return []


class UplinkSection(PluginSection):
    """Delivery settings every uplink has; platform plugins add their own keys."""

    concurrency: Annotated[int, Field(ge=1, le=256)] = 4
    send_timeout: Seconds = 60.0
    retry_base: Seconds = 1.0
    retry_cap: Seconds = 300.0
    breaker_threshold: Annotated[int, Field(ge=1)] = 5
    breaker_open_seconds: Seconds = 30.0
    dead_letter_blocks_key: bool = False
    # Messages of one order key sent one after another by one task and settled in one commit.
    send_run: Annotated[int, Field(ge=1, le=1000)] = 1
    # Answers the uplink cannot read (an HTML page with 200, JSON cut short) in a row before the
    # message becomes a dead letter with an alert (uplink_answer_unreadable).
    unreadable_answer_attempts: Annotated[int, Field(ge=1)] = 10


MIN_TOKEN_LENGTH = 16


class ApiSection(Section):
    """[api]: the local HTTP API hospital systems and the dashboard use."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8700
    token: Secret | None = None  # required when enabled: every request carries it
    max_body: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    health_without_token: bool = True  # GET /metrics and /healthz need no token
    # One photo of a quality record; multipart photos are streamed, not bounded by max_body.
    max_photo_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 8 * 1024 * 1024
    # One report file of an exam (PDF, report image); streamed, not bounded by max_body.
    max_report_file_bytes: Annotated[int, Field(ge=1024, le=256 * 1024 * 1024)] = 32 * 1024 * 1024
    dashboard: bool = True  # serve the web dashboard (/, /alerts, …) on this port
    dashboard_read_only_open: bool = False  # its pages viewable without logging in
    dashboard_session_hours: Annotated[float, Field(gt=0, le=168)] = 12.0  # login lifetime

    @model_validator(mode="after")
    def _token_when_enabled(self) -> ApiSection:
        if self.enabled and self.token is None:
            raise ValueError("token is required when the API is enabled")
        if too_short(self.token):
            raise ValueError(
                f"token is too short: at least {MIN_TOKEN_LENGTH} characters, since it unlocks"
                " every write (make one with: openssl rand -hex 24)"
            )
        return self


class AlertsSection(Section):
    """[alerts]: where alerts go besides the journal, the local API and the dashboard."""

    publish_to: list[str] = []  # uplinks (e.g. an mqtt uplink) every new alert is queued for


class StatusSection(Section):
    """[status]: scope state and agent health, published to uplinks (retained on MQTT)."""

    publish_to: list[str] = []  # uplinks (e.g. an mqtt uplink) following scope state and health
    health_interval: Seconds = 30.0  # how often health is looked at; published when it changes
    health_heartbeat: Seconds = 3600.0  # and at least this often


class Config(Section):
    """The whole validated configuration."""

    path: Path
    agent: AgentSection = AgentSection()
    log: LogSection = LogSection()
    journal: JournalSection = JournalSection()
    supervisor: SupervisorSection = SupervisorSection()
    api: ApiSection = ApiSection()
    alerts: AlertsSection = AlertsSection()
    status: StatusSection = StatusSection()
    # SerializeAsAny: dump each plugin's own keys too, not only the base section's.
    uplinks: dict[str, SerializeAsAny[UplinkSection]] = {}
    sources: dict[str, SerializeAsAny[PluginSection]] = {}
    simulators: dict[str, SerializeAsAny[PluginSection]] = {}
    domains: dict[str, SerializeAsAny[PluginSection]] = {}

    @model_validator(mode="after")
    def _named_uplinks_exist(self) -> Config:
        wanted = [("alerts.publish_to", n) for n in self.alerts.publish_to]
        wanted += [("status.publish_to", n) for n in self.status.publish_to]
        for name, domain in self.domains.items():
            wanted += [(f"domains.{name}", n) for n in domain.uplinks_used()]
        unknown = [f"{where}: no uplink named {n}" for where, n in wanted if n not in self.uplinks]
        if unknown:
            raise ValueError("; ".join(unknown))
        return self

    @property
    def database_path(self) -> Path:
        """Where the journal lives."""
        return self.agent.state_dir / "journal.db"

    def secrets(self) -> list[str]:
        """Every secret value in the config, so logging can redact it wherever it appears."""
        found: list[str] = []
        _collect_secrets(self, found)
        return found


def _collect_secrets(value: object, found: list[str]) -> None:
    if isinstance(value, SecretStr):
        found.append(value.get_secret_value())
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _collect_secrets(getattr(value, name), found)
    elif isinstance(value, dict):
        for item in value.values():
            _collect_secrets(item, found)
    elif isinstance(value, list | tuple):
        for item in value:
            _collect_secrets(item, found)


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML document at `path`; ConfigError `FILE: reason` if it cannot be had."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError([f"{path}: cannot read: {err.strerror or err}"]) from err
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError([f"{path}: invalid TOML: {err}"]) from err
    except RecursionError as err:  # tomllib parses nested arrays and tables recursively
        raise ConfigError([f"{path}: invalid TOML: nested too deeply"]) from err


class PluginType(Protocol):
    """What the loader needs of a plugin type: the model its config section validates with."""

    @property
    def model(self) -> type[PluginSection]:
        """The pydantic model of `[<kind>.<name>]` with this `type`."""
        ...

    @property
    def plan(self) -> frozenset[str]:
        """What an uplink of this type asks the domains for (their offers); empty for others."""
        ...

    @property
    def check_feeder(self) -> Callable[[Any, Any], list[str]] | None:
        """An uplink type's check of a section that names it (uplink, feeder) → "key: reason"
        lines about the feeder's values the platform would refuse; None: no check."""
        ...


# Plugin section ("uplinks", "sources", …) -> type name -> plugin type; the wiring passes its
# registry in (agent.plugins.PLUGIN_KINDS), so the core never imports the plugins.
PluginKinds = Mapping[str, Mapping[str, PluginType]]


def load_config(
    path: Path,
    plugins: PluginKinds,
    environ: Mapping[str, str] | None = None,
    *,
    skip_secrets: bool = False,
) -> Config:
    """Read and validate `path`; raise ConfigError listing every problem as `FILE: key: reason`.
    With `skip_secrets` no secret is read (their references are checked for form only)."""
    raw = read_toml(path)
    context = {
        "base_dir": path.parent.resolve(),
        "environ": environ or os.environ,
        "skip_secrets": skip_secrets,
        # Domains resolve their forward_to against these (agent/imaging/plans.py).
        "uplink_plans": _uplink_plans(raw, plugins),
        # Where the agent keeps its files, for plugins that read them (e.g. report PDFs).
        "state_dir": _state_dir_of(raw, path.parent.resolve()),
    }
    problems: list[str] = []
    for section, registry in plugins.items():
        table = raw.get(section)
        if not isinstance(table, dict):
            continue
        for name, entry in list(table.items()):
            model, plugin_problems = _validate_plugin(
                path, section, name, entry, registry=registry, context=context
            )
            problems.extend(plugin_problems)
            if model is None:
                del table[name]  # still validate everything else, so every problem is listed
            else:
                table[name] = model
    problems.extend(_check_feeders(path, raw, plugins))
    problems.extend(_check_disk_levels(path, raw))
    try:
        config = Config.model_validate({**raw, "path": path}, context=context)
    except ValidationError as err:
        problems.extend(_describe(path, err, ()))
    if not problems:
        return config
    raise ConfigError(problems)


def _check_feeders(path: Path, raw: dict[str, Any], plugins: PluginKinds) -> list[str]:
    """What each enabled uplink's type finds wrong in the validated sections that feed it."""
    table = raw.get("uplinks")
    uplinks: dict[str, Any] = table if isinstance(table, dict) else {}
    problems: list[str] = []
    for section in plugins:
        feeders = raw.get(section)
        for name, feeder in feeders.items() if isinstance(feeders, dict) else ():
            if not isinstance(feeder, PluginSection) or not feeder.enabled:
                continue
            for used in feeder.uplinks_used():
                uplink = uplinks.get(used)
                if not isinstance(uplink, PluginSection) or not uplink.enabled:
                    continue
                kind = plugins.get("uplinks", {}).get(uplink.type)
                check = kind.check_feeder if kind is not None else None
                lines = check(uplink, feeder) if check is not None else []
                problems.extend(f"{path}: {section}.{name}.{line}" for line in lines)
    return problems


def _check_disk_levels(path: Path, raw: dict[str, Any]) -> list[str]:
    """The spool's disk alerts must fire before intake refuses images: each domain's lowest
    level (disk_critical_free_mb, else disk_warning_free_mb) above every source's C-STORE
    reserve (min_free_mb), since they share the state directory's disk."""
    reserves = [
        (name, reserve)
        for name, section in _enabled(raw, "sources")
        if isinstance(reserve := getattr(section, "min_free_mb", None), int | float)
    ]
    problems: list[str] = []
    for name, section in _enabled(raw, "domains"):
        for key in ("disk_critical_free_mb", "disk_warning_free_mb"):
            level = getattr(section, key, 0)
            if not isinstance(level, int | float) or not level:
                continue
            problems.extend(
                f"{path}: domains.{name}.{key}: must be above sources.{source}.min_free_mb"
                f" ({reserve} MiB): the alert must come before C-STORE answers 0xA700"
                for source, reserve in reserves
                if reserve >= level
            )
            break  # the warning level is above the critical one (checked by the domain)
    return problems


def _enabled(raw: dict[str, Any], section: str) -> list[tuple[str, PluginSection]]:
    """The validated, enabled plugin tables of `section`."""
    table = raw.get(section)
    return [
        (name, entry)
        for name, entry in (table.items() if isinstance(table, dict) else ())
        if isinstance(entry, PluginSection) and entry.enabled
    ]


def _state_dir_of(raw: dict[str, Any], base: Path) -> Path:
    """[agent] state_dir as the config gives it (relative to the config), or the default."""
    table = raw.get("agent")
    given = table.get("state_dir") if isinstance(table, dict) else None
    return base / given if isinstance(given, str) else default_state_dir()


def _uplink_plans(raw: dict[str, Any], plugins: PluginKinds) -> dict[str, frozenset[str]]:
    """Each [uplinks.*] table's name -> its type's plan (a table of no known type is left out)."""
    table, registry = raw.get("uplinks"), plugins.get("uplinks", {})
    if not isinstance(table, dict):
        return {}
    return {
        name: frozenset(registry[kind].plan)
        for name, entry in table.items()
        if isinstance(entry, dict)
        and isinstance(kind := entry.get("type"), str)
        and kind in registry
    }


def _validate_plugin(
    path: Path,
    section: str,
    name: str,
    entry: Any,
    *,
    registry: Mapping[str, PluginType],
    context: dict[str, Any],
) -> tuple[PluginSection | None, list[str]]:
    if not NAME_PATTERN.match(name):
        return None, [f"{path}: {section}.{name}: name must match {NAME_PATTERN.pattern}"]
    kind = entry.get("type") if isinstance(entry, dict) else None
    if not isinstance(kind, str) or kind not in registry:
        known = ", ".join(sorted(registry))
        return None, [f"{path}: {section}.{name}.type: must be one of: {known}"]
    try:
        return registry[kind].model.model_validate(entry, context=context), []
    except ValidationError as err:
        return None, _describe(path, err, (section, name))


def _describe(path: Path, err: ValidationError, prefix: tuple[str, ...]) -> list[str]:
    lines: list[str] = []
    for problem in err.errors(include_url=False):
        key = ".".join(str(part) for part in (*prefix, *problem["loc"]))
        match problem["type"]:
            case "extra_forbidden":
                reason = "unknown key"
            case "missing":
                reason = "required key is missing"
            case _:
                reason = problem["msg"].removeprefix("Value error, ")
        if key:
            lines.append(f"{path}: {key}: {reason}")
        else:  # a whole-file check names its own keys: "alerts.publish_to: …; domains.x: …"
            lines.extend(f"{path}: {part}" for part in reason.split("; "))
    return lines
