"""The documented install starts: the tree docs/operations.md lays out (owners and modes as
there and in systemd/), the package installed into its own virtualenv, and the unit's
ExecStartPre and ExecStart command lines run as the service user, as systemd would. It needs
root: like the install, it creates the edge-agent user (systemd-sysusers) on this machine."""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers import required_tool

if sys.platform == "win32":  # (and grp, pwd above do not exist there)
    pytest.skip("the systemd install: Linux only (docs/windows.md)", allow_module_level=True)

ROOT = Path(__file__).parents[2]
UNIT = ROOT / "systemd" / "edge-agent.service"
SYSUSERS = ROOT / "systemd" / "edge-agent.sysusers.conf"
EXAMPLE = ROOT / "config" / "agent.example.toml"
USER = "edge-agent"


def unit_lines(key: str) -> list[str]:
    """Every `key=` value of the shipped unit."""
    prefix = f"{key}="
    lines = UNIT.read_text(encoding="utf-8").splitlines()
    return [line.removeprefix(prefix) for line in lines if line.startswith(prefix)]


def needed_credentials() -> set[str]:
    """The credential:NAME secrets of the example config's enabled sections."""
    config = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    found: set[str] = set()

    def walk(value: object, enabled: bool) -> None:
        if isinstance(value, dict):
            enabled = enabled and value.get("enabled", True) is not False
            for item in value.values():
                walk(item, enabled)
        elif isinstance(value, list):
            for item in value:
                walk(item, enabled)
        elif enabled and isinstance(value, str) and value.startswith("credential:"):
            found.add(value.removeprefix("credential:"))

    walk(config, True)
    return found


def test_the_unit_loads_exactly_the_credentials_the_example_config_needs():
    loaded = {line.split(":", 1)[0] for line in unit_lines("LoadCredential")}
    assert loaded == needed_credentials()


@pytest.fixture(scope="module")
def installed() -> Iterator[Path]:
    """/opt, /etc and /var/lib of the documented install, in a folder every user can reach."""
    if os.geteuid() != 0:
        message = "the install test needs root (it creates the service user and owns files)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    subprocess.run([required_tool("systemd-sysusers", "systemd"), str(SYSUSERS)], check=True)
    root = Path(tempfile.mkdtemp(prefix="edge-install-"))
    root.chmod(0o755)
    venv = root / "opt" / "edge-agent" / ".venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(ROOT)]
    subprocess.run(pip, check=True)
    uid, gid = pwd.getpwnam(USER).pw_uid, grp.getgrnam(USER).gr_gid
    etc = root / "etc" / "edge-agent"
    (etc / "credentials").mkdir(parents=True)
    os.chown(etc, 0, gid)  # install -d -m 0750 -g edge-agent /etc/edge-agent
    etc.chmod(0o750)
    (etc / "credentials").chmod(0o700)
    state = root / "var" / "lib" / "edge-agent"  # StateDirectory=: systemd makes it the user's
    state.mkdir(parents=True)
    os.chown(state, uid, gid)
    state.chmod(0o750)
    text = EXAMPLE.read_text(encoding="utf-8").replace('"/var/lib/edge-agent"', f'"{state}"')
    config = etc / "agent.toml"
    config.write_text(text, encoding="utf-8")
    os.chown(config, 0, gid)  # install -m 0640 -g edge-agent
    config.chmod(0o640)
    # LoadCredential=: root reads /etc/edge-agent/credentials, the service gets its own copies.
    handed = root / "run" / "credentials" / "edge-agent.service"
    handed.mkdir(parents=True)
    for name in needed_credentials():
        (etc / "credentials" / name).write_text(f"{name}-value-0123456789", encoding="utf-8")
        shutil.copy(etc / "credentials" / name, handed / name)
        os.chown(handed / name, uid, gid)
    os.chown(handed, uid, gid)
    handed.chmod(0o500)
    yield root
    shutil.rmtree(root)


def as_service(root: Path, line: str) -> list[str]:
    """A unit command line for this tree, run as the service user with its credentials."""
    command = line.replace("/opt/edge-agent", str(root / "opt" / "edge-agent"))
    command = command.replace("/etc/edge-agent", str(root / "etc" / "edge-agent"))
    credentials = root / "run" / "credentials" / "edge-agent.service"
    setpriv = required_tool("setpriv", "util-linux")
    return [
        *(setpriv, "--reuid", USER, "--regid", USER, "--init-groups"),
        *("env", f"CREDENTIALS_DIRECTORY={credentials}", "PYTHONUNBUFFERED=1"),
        *shlex.split(command),
    ]


def test_the_documented_install_passes_its_pre_flight_check(installed):
    (pre,) = unit_lines("ExecStartPre")
    checked = subprocess.run(
        as_service(installed, pre), check=False, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    assert "OK (secrets masked)" in checked.stdout


async def test_the_documented_install_starts_and_stops_as_the_service_user(installed):
    (start,) = unit_lines("ExecStart")
    notify = installed / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as ready:
        ready.bind(str(notify))
        notify.chmod(0o666)
        ready.setblocking(False)
        argv = as_service(installed, start)
        argv[argv.index("env") + 1 : argv.index("env") + 1] = [f"NOTIFY_SOCKET={notify}"]
        agent = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        try:
            async with asyncio.timeout(60):
                said = await asyncio.get_running_loop().sock_recv(ready, 4096)
            assert b"READY=1" in said
        finally:
            agent.terminate()
            output, _ = await agent.communicate()
    assert agent.returncode == 0, output.decode(errors="replace")
    journal = installed / "var" / "lib" / "edge-agent" / "journal.db"
    assert journal.stat().st_uid == pwd.getpwnam(USER).pw_uid  # written by the service user
