"""The pywin32 service class `EdgeAgent`, built on first access so this module imports anywhere.

pythonservice.exe imports this module and reads `EdgeAgentService` (the PythonClass registry
value); only then are servicemanager, win32service and win32serviceutil imported.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from agent.windows import CONFIG_OPTION, DESCRIPTION, DISPLAY_NAME, SERVICE_NAME
from agent.windows.host import EXIT_OK, ServiceHost, State
from agent.windows.paths import resolve_config_path

_built: dict[str, type] = {}


class ServiceFailedError(RuntimeError):
    """Raised out of SvcRun so pythonservice.exe reports STOPPED with an error code."""


def win32(name: str) -> Any:
    """Import a pywin32 module lazily (typed Any: there are no stubs on Linux)."""
    return importlib.import_module(name)


class ServiceEventLog:
    """The EventLog protocol over servicemanager (source: the service name)."""

    def __init__(self, servicemanager: Any) -> None:
        self._sm = servicemanager

    def info(self, message: str) -> None:
        """An information entry in the Application log."""
        self._sm.LogInfoMsg(message)

    def error(self, message: str) -> None:
        """An error entry in the Application log."""
        self._sm.LogErrorMsg(message)


def build_service_class() -> type:
    """Define EdgeAgentService on win32serviceutil.ServiceFramework (imported now)."""
    servicemanager = win32("servicemanager")
    win32service = win32("win32service")
    win32serviceutil = win32("win32serviceutil")
    states = {
        State.START_PENDING: win32service.SERVICE_START_PENDING,
        State.RUNNING: win32service.SERVICE_RUNNING,
        State.STOP_PENDING: win32service.SERVICE_STOP_PENDING,
    }

    framework: Any = win32serviceutil.ServiceFramework

    class EdgeAgentService(framework):  # type: ignore[misc]
        """edge-agent as a Windows service: the same config and Agent as `edge-agent run`."""

        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = DISPLAY_NAME
        _svc_description_ = DESCRIPTION

        def __init__(self, args: list[str]) -> None:
            super().__init__(args)
            saved = win32serviceutil.GetServiceCustomOption(SERVICE_NAME, CONFIG_OPTION, None)
            self.host = ServiceHost(
                Path(resolve_config_path(args[1:], saved)),
                self._report,
                ServiceEventLog(servicemanager),
            )

        def _report(self, state: State, wait_hint_ms: int) -> None:
            self.ReportServiceStatus(states[state], waitHint=wait_hint_ms)

        def SvcRun(self) -> None:
            # ServiceFramework.SvcRun reports RUNNING before SvcDoRun; RUNNING waits for READY.
            self.ReportServiceStatus(win32service.SERVICE_START_PENDING, waitHint=30_000)
            self.SvcDoRun()

        def SvcDoRun(self) -> None:
            code = self.host.run()
            if code != EXIT_OK:
                raise ServiceFailedError(
                    f"edge-agent stopped with exit code {code}: see the error entry before "
                    "this one and the log file"
                )
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING, waitHint=5_000)

        def SvcStop(self) -> None:
            self.host.stop()

        def SvcShutdown(self) -> None:
            self.host.stop()

    EdgeAgentService.__module__ = __name__
    return EdgeAgentService


def __getattr__(name: str) -> type:
    if name != "EdgeAgentService":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _built:
        _built[name] = build_service_class()
    return _built[name]
