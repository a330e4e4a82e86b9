"""Where the service's config, state and logs live on Windows (%ProgramData%\\edge-agent)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

FALLBACK_PROGRAM_DATA = r"C:\ProgramData"


def program_data(environ: Mapping[str, str] | None = None) -> Path:
    """%ProgramData%\\edge-agent (C:\\ProgramData\\edge-agent when the variable is unset)."""
    environ = os.environ if environ is None else environ
    return Path(environ.get("ProgramData") or FALLBACK_PROGRAM_DATA) / "edge-agent"


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """%ProgramData%\\edge-agent\\agent.toml."""
    return program_data(environ) / "agent.toml"


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """%ProgramData%\\edge-agent\\state: the journal, spools and quarantine."""
    return program_data(environ) / "state"


def default_log_file(environ: Mapping[str, str] | None = None) -> Path:
    """%ProgramData%\\edge-agent\\logs\\edge-agent.log."""
    return program_data(environ) / "logs" / "edge-agent.log"


def resolve_config_path(
    start_args: Sequence[str],
    registry_value: str | None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The config the service loads: `--config` among the start parameters, else the path saved
    at install (registry Parameters\\config), else %EDGE_AGENT_CONFIG%, else the default."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("--config", "-c")
    try:
        known, _ = parser.parse_known_args(list(start_args))
    except argparse.ArgumentError:
        known = argparse.Namespace(config=None)
    for candidate in (known.config, registry_value, environ.get("EDGE_AGENT_CONFIG")):
        if candidate:
            return _expand(candidate, environ)
    return str(default_config_path(environ))


def _expand(value: str, environ: Mapping[str, str]) -> str:
    """Expand %NAME% from `environ` (REG_SZ values are stored unexpanded)."""
    parts = value.split("%")
    out = [parts[0]]
    for i in range(1, len(parts), 2):
        name = parts[i]
        rest = parts[i + 1] if i + 1 < len(parts) else None
        if rest is None:  # an unpaired %: keep it
            out.append("%" + name)
            break
        out.append(environ.get(name, f"%{name}%") if name else "%")
        out.append(rest)
    return "".join(out)
