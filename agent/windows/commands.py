"""`edge-agent service install|start|stop|remove|status`: the SCM through win32serviceutil."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.windows import CONFIG_OPTION, DESCRIPTION, DISPLAY_NAME, SERVICE_CLASS, SERVICE_NAME
from agent.windows.paths import default_config_path

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3  # as `systemctl status`: 3 not running, 4 no such service
EXIT_NOT_INSTALLED = 4
NOT_WINDOWS = (
    "edge-agent: the Windows service commands run on Windows; "
    "on Linux use systemd: see docs/operations.md"
)
# winerror codes (winerror.h)
ERROR_ACCESS_DENIED = 5
ERROR_SERVICE_NOT_ACTIVE = 1062
ERROR_SERVICE_DOES_NOT_EXIST = 1060
ERROR_SERVICE_EXISTS = 1073
STATE_NAMES = {
    1: "stopped",
    2: "start pending",
    3: "stop pending",
    4: "running",
    5: "continue pending",
    6: "pause pending",
    7: "paused",
}
SERVICE_STOPPED = 1  # winsvc.h, the same on every Windows
SERVICE_RUNNING = 4
POLL = 0.5  # seconds between two status queries


def add_service_parser(commands: Any) -> None:
    """Add `service ACTION` to the CLI's sub-commands."""
    service = commands.add_parser("service", help="install and control the Windows service")
    actions = service.add_subparsers(dest="action", required=True, metavar="ACTION")
    install = actions.add_parser("install", help="register the service (again: update it)")
    install.add_argument(
        "-c",
        "--config",
        type=Path,
        default=default_config_path(),
        help="config file the service loads (%(default)s)",
    )
    install.add_argument(
        "--startup",
        choices=["auto", "delayed", "manual"],
        default="auto",
        help="start at boot (auto, delayed: shortly after boot) or by hand (%(default)s)",
    )
    for name, text in (
        ("start", "start it and wait until it is ready"),
        ("stop", "stop it and wait until it has stopped"),
        ("remove", "stop it and unregister it"),
        ("status", "running or not, and its config"),
    ):
        action = actions.add_parser(name, help=text)
        if name in {"start", "stop", "remove"}:
            action.add_argument("--wait", type=float, default=120.0, help="seconds (%(default)s)")
    service.set_defaults(func=cmd_service)


def cmd_service(
    args: argparse.Namespace,
    *,
    platform: str = sys.platform,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Run one service action; on anything but Windows, refuse with exit code 2."""
    if platform != "win32":
        print(NOT_WINDOWS, file=sys.stderr)
        return EXIT_USAGE
    import importlib

    scm = ServiceControl(
        importlib.import_module("win32serviceutil"),
        importlib.import_module("win32service"),
        sleep=sleep,
    )
    try:
        code: int = getattr(scm, args.action)(args)
    except scm.error as err:
        return _explain(args.action, err)
    return code


def _explain(action: str, err: Any) -> int:
    number = getattr(err, "winerror", None)
    text = getattr(err, "strerror", None) or str(err)
    if number == ERROR_SERVICE_DOES_NOT_EXIST:
        print(f"edge-agent: service {SERVICE_NAME} is not installed", file=sys.stderr)
        return EXIT_NOT_INSTALLED
    hint = " (run it from an elevated prompt: Run as administrator)"
    hint = hint if number == ERROR_ACCESS_DENIED else ""
    print(f"edge-agent: service {action} failed: {text} ({number}){hint}", file=sys.stderr)
    return EXIT_FAILURE


class ServiceControl:
    """Each action over win32serviceutil; the modules are passed in (fakes in the tests)."""

    def __init__(self, util: Any, svc: Any, *, sleep: Callable[[float], None]) -> None:
        self.util = util
        self.svc = svc
        self.error: type[BaseException] = svc.error
        self._sleep = sleep

    def install(self, args: argparse.Namespace) -> int:
        """Register (or update) the service, hosted by pythonservice.exe, and save --config."""
        config = Path(args.config).absolute()
        if not config.is_file():
            print(
                f"edge-agent: {config}: no such file: copy config/agent.example.toml there, "
                "edit it, and check it with `edge-agent check-config`",
                file=sys.stderr,
            )
            return EXIT_USAGE
        start_type = (
            self.svc.SERVICE_DEMAND_START
            if args.startup == "manual"
            else self.svc.SERVICE_AUTO_START
        )
        delayed = args.startup == "delayed"
        try:
            self.util.InstallService(
                SERVICE_CLASS,
                SERVICE_NAME,
                DISPLAY_NAME,
                startType=start_type,
                description=DESCRIPTION,
                delayedstart=delayed,
            )
            done = "installed"
        except self.error as err:
            if getattr(err, "winerror", None) != ERROR_SERVICE_EXISTS:
                raise
            self.util.ChangeServiceConfig(
                SERVICE_CLASS,
                SERVICE_NAME,
                startType=start_type,
                displayName=DISPLAY_NAME,
                description=DESCRIPTION,
                delayedstart=delayed,
            )
            done = "updated"
        self.util.SetServiceCustomOption(SERVICE_NAME, CONFIG_OPTION, str(config))
        print(f"service {SERVICE_NAME} {done}: startup {args.startup}, config {config}")
        return 0

    def start(self, args: argparse.Namespace) -> int:
        """Start it; succeed once it reports RUNNING (the agent is ready)."""
        self.util.StartService(SERVICE_NAME)
        state, status = self._wait({SERVICE_RUNNING, SERVICE_STOPPED}, args.wait)
        if state == SERVICE_RUNNING:
            print(f"service {SERVICE_NAME} running")
            return 0
        if state == SERVICE_STOPPED:
            print(
                f"edge-agent: service {SERVICE_NAME} stopped while starting (exit code "
                f"{status[3]}/{status[4]}): see Event Viewer > Windows Logs > Application, "
                f"source {SERVICE_NAME}, and the log file",
                file=sys.stderr,
            )
        else:
            print(f"edge-agent: service {SERVICE_NAME} still {STATE_NAMES.get(state, state)}")
        return EXIT_FAILURE

    def stop(self, args: argparse.Namespace) -> int:
        """Ask it to stop; succeed once it reports STOPPED."""
        if not self._request_stop():
            print(f"service {SERVICE_NAME} is not running")
            return 0
        state, _ = self._wait({SERVICE_STOPPED}, args.wait)
        if state == SERVICE_STOPPED:
            print(f"service {SERVICE_NAME} stopped")
            return 0
        print(f"edge-agent: service {SERVICE_NAME} still {STATE_NAMES.get(state, state)}")
        return EXIT_FAILURE

    def remove(self, args: argparse.Namespace) -> int:
        """Stop it if it runs, then unregister it (the config, state and logs stay)."""
        if self._request_stop():
            self._wait({SERVICE_STOPPED}, args.wait)
        self.util.RemoveService(SERVICE_NAME)
        print(f"service {SERVICE_NAME} removed (config, state and logs are kept)")
        return 0

    def status(self, args: argparse.Namespace) -> int:
        """Print the state and config; 0 running, 3 not running, 4 not installed."""
        state = self.util.QueryServiceStatus(SERVICE_NAME)[1]
        config = self.util.GetServiceCustomOption(SERVICE_NAME, CONFIG_OPTION, None)
        print(f"service {SERVICE_NAME}: {STATE_NAMES.get(state, state)}")
        print(f"config: {config or default_config_path()}")
        return 0 if state == SERVICE_RUNNING else EXIT_NOT_RUNNING

    def _request_stop(self) -> bool:
        try:
            self.util.StopService(SERVICE_NAME)
        except self.error as err:
            if getattr(err, "winerror", None) == ERROR_SERVICE_NOT_ACTIVE:
                return False
            raise
        return True

    def _wait(self, wanted: set[int], timeout: float) -> tuple[int, tuple[int, ...]]:
        polls = max(1, math.ceil(timeout / POLL))
        for _ in range(polls):
            status = tuple(self.util.QueryServiceStatus(SERVICE_NAME))
            if status[1] in wanted:
                break
            self._sleep(POLL)
        return status[1], status
