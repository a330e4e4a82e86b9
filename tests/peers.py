"""Real test peers (socat, mosquitto, dcmtk, systemd): found, or fail under CI, or skip."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest


def required_tool(command: str, package: str) -> str:
    """The path of `command`; under CI=true a missing one fails the test instead of skipping."""
    path = shutil.which(command) or shutil.which(command, path="/usr/sbin:/usr/local/sbin:/sbin")
    if path is None:
        _missing(command, package)
    return path


def dcmtk(tool: str) -> str:
    """The path of dcmtk's `tool`, never pynetdicom's same-named Python script (in .venv/bin)."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / tool
        if candidate.is_file() and os.access(candidate, os.X_OK):
            with candidate.open("rb") as binary:
                if binary.read(2) != b"#!":
                    return str(candidate)
    _missing(tool, "dcmtk")


async def run_tool(*argv: str, cwd: Path | None = None) -> str:
    """Run a tool (in `cwd`) to success within 60 s; its output, stderr included."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    return text


def _missing(command: str, package: str) -> NoReturn:
    message = f"{command} is not installed (apt-get install -y {package})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; it is required under CI=true")
    pytest.skip(message)
