"""The shipped unit passes `systemd-analyze verify` and keeps the hardening the docs promise."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.peers import required_tool

ROOT = Path(__file__).parents[2]
UNIT = ROOT / "systemd" / "edge-agent.service"


def test_the_unit_verifies_cleanly(tmp_path):
    analyze = required_tool("systemd-analyze", "systemd")
    # Installed, the agent lives in /opt/edge-agent; here, in this checkout.
    unit = tmp_path / "edge-agent.service"
    unit.write_text(UNIT.read_text(encoding="utf-8").replace("/opt/edge-agent", str(ROOT)))
    result = subprocess.run(
        [analyze, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"SYSTEMD_LOG_LEVEL": "warning", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # not even a warning (unknown keys warn)


def test_the_unit_is_a_hardened_notify_service():
    settings: dict[str, str] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            settings.setdefault(key.strip(), value.strip())
    expected = {
        "Type": "notify",
        "Restart": "on-failure",
        "User": "edge-agent",
        "StateDirectory": "edge-agent",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "SupplementaryGroups": "dialout",
    }
    assert {k: settings.get(k) for k in expected} == expected
    assert int(settings["WatchdogSec"]) > 0
    assert settings["LoadCredential"].count(":") == 1
