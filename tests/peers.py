"""Real test peers (socat, mosquitto, dcmtk, systemd): found, or fail under CI, or skip."""

from __future__ import annotations

import os
import shutil

import pytest


def required_tool(command: str, package: str) -> str:
    """The path of `command`; under CI=true a missing one fails the test instead of skipping."""
    path = shutil.which(command) or shutil.which(command, path="/usr/sbin:/usr/local/sbin:/sbin")
    if path is None:
        message = f"{command} is not installed (apt-get install -y {package})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; it is required under CI=true")
        pytest.skip(message)
    return path
