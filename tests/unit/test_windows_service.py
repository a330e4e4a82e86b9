"""The Windows service on Linux: pywin32's modules are faked at the OS-API boundary.

The fakes stand for what pywin32 hands Python: win32service's constants and error,
win32serviceutil's ServiceFramework and SCM calls, servicemanager's event log. `host_service`
does what PythonService.cpp's service_main does around SvcRun (report START_PENDING, call
SvcRun, report STOPPED — with ERROR_SERVICE_SPECIFIC_ERROR if SvcRun raised).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest
import structlog

from agent.logs import MASK, configure_logging
from agent.sdnotify import Notifier
from agent.windows import CONFIG_OPTION, SERVICE_CLASS, SERVICE_NAME
from agent.windows.commands import NOT_WINDOWS, add_service_parser, cmd_service
from agent.windows.host import EXIT_CONFIG, EXIT_OK, ServiceHost, State
from agent.windows.logfile import LogFileSettings, add_log_file, log_file_settings
from agent.windows.paths import default_config_path, default_state_dir, resolve_config_path

START_PENDING, RUNNING, STOP_PENDING, STOPPED = 2, 4, 3, 1
ERROR_SERVICE_SPECIFIC_ERROR = 1066


class Win32Error(Exception):
    """pywintypes.error: (winerror, funcname, strerror)."""

    def __init__(self, winerror: int, funcname: str, strerror: str) -> None:
        super().__init__(winerror, funcname, strerror)
        self.winerror, self.funcname, self.strerror = winerror, funcname, strerror


class FakeSCM:
    """The service control manager as win32serviceutil sees it: records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.statuses: list[tuple[int, int]] = []  # (state, wait hint) as reported
        self.lock = threading.Lock()
        self.options: dict[str, Any] = {}
        self.query_states: list[int] = [RUNNING]
        self.fail: dict[str, Win32Error] = {}
        self.events: list[tuple[str, str]] = []

    def record(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((name, args, kwargs))
        if name in self.fail:
            raise self.fail[name]

    def named(self, name: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        return [(a, k) for n, a, k in self.calls if n == name]

    def states(self) -> list[int]:
        with self.lock:
            return [state for state, _ in self.statuses]


@pytest.fixture
def scm(monkeypatch: pytest.MonkeyPatch) -> FakeSCM:
    """Fake servicemanager, win32service and win32serviceutil in sys.modules."""
    fake = FakeSCM()

    win32service = types.ModuleType("win32service")
    win32service.error = Win32Error  # type: ignore[attr-defined]
    for name, value in {
        "SERVICE_STOPPED": STOPPED,
        "SERVICE_START_PENDING": START_PENDING,
        "SERVICE_STOP_PENDING": STOP_PENDING,
        "SERVICE_RUNNING": RUNNING,
        "SERVICE_AUTO_START": 2,
        "SERVICE_DEMAND_START": 3,
    }.items():
        setattr(win32service, name, value)

    servicemanager = types.ModuleType("servicemanager")
    servicemanager.LogInfoMsg = lambda msg: fake.events.append(("info", msg))  # type: ignore[attr-defined]
    servicemanager.LogErrorMsg = lambda msg: fake.events.append(("error", msg))  # type: ignore[attr-defined]

    class ServiceFramework:
        def __init__(self, args: list[str]) -> None:
            fake.record("RegisterServiceCtrlHandler", args[0])

        def ReportServiceStatus(
            self, state: int, waitHint: int = 5000, win32ExitCode: int = 0, svcExitCode: int = 0
        ) -> None:
            with fake.lock:
                fake.statuses.append((state, waitHint))

    util = types.ModuleType("win32serviceutil")
    util.ServiceFramework = ServiceFramework  # type: ignore[attr-defined]

    def recorder(name: str, result: Any = None) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            fake.record(name, *args, **kwargs)
            return result() if callable(result) else result

        return call

    def query(*args: Any) -> tuple[int, ...]:
        fake.record("QueryServiceStatus", *args)
        state = fake.query_states.pop(0) if len(fake.query_states) > 1 else fake.query_states[0]
        return (16, state, 0, 0, 0, 0, 0)

    def set_option(name: str, option: str, value: Any) -> None:
        fake.record("SetServiceCustomOption", name, option, value)
        fake.options[option] = value

    def get_option(name: str, option: str, default: Any = None) -> Any:
        return fake.options.get(option, default)

    for name in ("InstallService", "ChangeServiceConfig", "StartService", "StopService"):
        setattr(util, name, recorder(name))
    util.RemoveService = recorder("RemoveService")  # type: ignore[attr-defined]
    util.QueryServiceStatus = query  # type: ignore[attr-defined]
    util.SetServiceCustomOption = set_option  # type: ignore[attr-defined]
    util.GetServiceCustomOption = get_option  # type: ignore[attr-defined]

    for module in (win32service, servicemanager, util):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    return fake


@pytest.fixture
def restore_logging():
    """configure_logging changes process-wide state: put it back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    saved = structlog.get_config()
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**saved)


def host_service(cls: type, args: list[str], scm: FakeSCM) -> tuple[int, int]:
    """PythonService.cpp service_main: START_PENDING, SvcRun(), then STOPPED (error if raised)."""
    instance = cls(args)
    with scm.lock:
        scm.statuses.append((START_PENDING, 5000))
    try:
        instance.SvcRun()
    except Exception:
        final = (STOPPED, ERROR_SERVICE_SPECIFIC_ERROR)
    else:
        final = (STOPPED, 0)
    with scm.lock:
        scm.statuses.append((final[0], 0))
    return final


def write_config(tmp_path: Path, body: str = "") -> Path:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\nshutdown_timeout = 2.0\n{body}',
        encoding="utf-8",
    )
    return config


def wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


# --- importable anywhere ----------------------------------------------------------------------


def test_service_module_imports_on_linux_without_pywin32():
    for name in ("servicemanager", "win32service", "win32serviceutil"):
        assert name not in sys.modules
    module = importlib.import_module("agent.windows.service")
    assert module.build_service_class  # the class itself needs pywin32
    with pytest.raises(ModuleNotFoundError):
        module.build_service_class()


def test_pythonservice_finds_the_class_by_its_registry_string(scm, monkeypatch):
    module = importlib.import_module("agent.windows.service")
    monkeypatch.setattr(module, "_built", {})
    module_name, _, class_name = SERVICE_CLASS.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    assert cls._svc_name_ == "EdgeAgent"
    assert cls._svc_display_name_ == "edge-agent: hospital front-end agent"
    assert hasattr(cls, "SvcStop") and hasattr(cls, "SvcShutdown")


# --- config path, defaults --------------------------------------------------------------------


def test_config_path_start_argument_then_registry_then_environment_then_default():
    env = {"ProgramData": "/pd", "SITE": "/site"}
    assert resolve_config_path(["--config", "/a.toml"], "/b.toml", env) == "/a.toml"
    assert resolve_config_path([], r"%SITE%\agent.toml", env) == r"/site\agent.toml"
    assert resolve_config_path([], None, {**env, "EDGE_AGENT_CONFIG": "/c.toml"}) == "/c.toml"
    assert resolve_config_path(["--bogus"], None, env) == str(Path("/pd/edge-agent/agent.toml"))
    assert default_config_path(env) == Path("/pd/edge-agent/agent.toml")
    assert default_state_dir(env) == Path("/pd/edge-agent/state")


# --- the service: ready, stop, config error -----------------------------------------------------


def test_service_runs_the_agent_reports_running_after_ready_and_stops_on_scm_request(
    scm, tmp_path, monkeypatch, restore_logging
):
    from agent.windows.service import build_service_class

    monkeypatch.setenv("ProgramData", str(tmp_path / "programdata"))
    config = write_config(tmp_path, "[api]\nenabled = false\n")
    scm.options[CONFIG_OPTION] = str(config)  # what `service install --config` saved
    cls = build_service_class()
    result: list[tuple[int, int]] = []
    thread = threading.Thread(target=lambda: result.append(host_service(cls, [SERVICE_NAME], scm)))
    instance_holder: list[Any] = []
    original_init = cls.__dict__["__init__"]

    def capture(self: Any, args: list[str]) -> None:
        original_init(self, args)
        instance_holder.append(self)

    monkeypatch.setattr(cls, "__init__", capture)
    thread.start()
    wait_for(lambda: RUNNING in scm.states())
    # READY came after the journal opened and the state directory was locked.
    assert (tmp_path / "state" / "journal.db").exists()
    assert (tmp_path / "state" / "agent.lock").exists()
    assert scm.states()[: scm.states().index(RUNNING)] == [START_PENDING] * scm.states().index(
        RUNNING
    )

    started = time.monotonic()
    instance_holder[0].SvcStop()  # the SCM's control thread
    thread.join(timeout=2.0 + 20.0)
    assert not thread.is_alive()
    assert time.monotonic() - started < 2.0 + 5.0  # shutdown_timeout plus closing, at most
    assert result == [(STOPPED, 0)]
    stop_hints = [hint for state, hint in scm.statuses if state == STOP_PENDING]
    assert stop_hints and min(stop_hints) >= 2_000
    assert scm.states()[-1] == STOPPED
    assert ("info", f"edge-agent started with {config}") in scm.events
    assert not [e for e in scm.events if e[0] == "error"]
    log = tmp_path / "programdata" / "edge-agent" / "logs" / "edge-agent.log"
    events = [json.loads(line)["event"] for line in log.read_text(encoding="utf-8").splitlines()]
    assert "agent.started" in events and events[-1] == "agent.stopped"


def test_config_error_goes_to_the_event_log_and_the_service_stops_with_an_error(
    scm, tmp_path, monkeypatch
):
    from agent.windows.service import build_service_class

    config = write_config(tmp_path, '[journal]\nretention_days = "forever"\nbogus = 1\n')
    cls = build_service_class()
    final = host_service(cls, [SERVICE_NAME, "--config", str(config)], scm)
    assert final == (STOPPED, ERROR_SERVICE_SPECIFIC_ERROR)
    assert RUNNING not in scm.states()
    [(kind, message)] = scm.events
    assert kind == "error"
    assert f"{config}: journal.retention_days:" in message
    assert f"{config}: journal.bogus: unknown key" in message


def test_missing_config_file_is_a_config_error(scm, tmp_path):
    from agent.windows.service import build_service_class

    final = host_service(
        build_service_class(), [SERVICE_NAME, "--config", str(tmp_path / "nope.toml")], scm
    )
    assert final == (STOPPED, ERROR_SERVICE_SPECIFIC_ERROR)
    assert "nope.toml: cannot read" in scm.events[0][1]


class SlowAgent:
    """An agent whose start the test controls: READY only when `release` is set."""

    def __init__(self, config: Any, notifier: Notifier) -> None:
        self.notifier = notifier
        self.release = threading.Event()
        self.stop_requests: list[str] = []
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        self.stop_requests.append(threading.current_thread().name)
        self._stop.set()

    async def run(self) -> None:
        while not self.release.is_set():
            await asyncio.sleep(0.01)
        self.notifier.notify("READY=1", "STATUS=running")
        await self._stop.wait()
        self.notifier.notify("STOPPING=1")


class Recorder:
    def __init__(self) -> None:
        self.reports: list[tuple[State, int]] = []
        self.events: list[tuple[str, str]] = []

    def report(self, state: State, hint: int) -> None:
        self.reports.append((state, hint))

    def info(self, message: str) -> None:
        self.events.append(("info", message))

    def error(self, message: str) -> None:
        self.events.append(("error", message))


def make_host(tmp_path: Path, recorder: Recorder, agents: list[SlowAgent]) -> ServiceHost:
    def make(config: Any, notifier: Notifier) -> SlowAgent:
        agent = SlowAgent(config, notifier)
        agents.append(agent)
        return agent

    return ServiceHost(
        write_config(tmp_path),
        recorder.report,
        recorder,
        setup_logging=lambda config: None,
        make_agent=make,
        pulse=0.02,
    )


def test_running_is_reported_only_after_ready_and_start_pending_keeps_checkpointing(tmp_path):
    recorder, agents = Recorder(), list[SlowAgent]()
    host = make_host(tmp_path, recorder, agents)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(host.run()), name="service")
    thread.start()
    wait_for(lambda: agents and len(recorder.reports) >= 3)
    assert {state for state, _ in recorder.reports} == {State.START_PENDING}
    assert all(hint >= 30_000 for _, hint in recorder.reports)
    agents[0].release.set()
    wait_for(lambda: (State.RUNNING, 0) in recorder.reports)
    host.stop()
    thread.join(timeout=5)
    assert codes == [EXIT_OK]
    states = [state for state, _ in recorder.reports]
    assert states.index(State.RUNNING) < states.index(State.STOP_PENDING)
    # The stop crossed threads: request_stop ran on the service's loop thread, not the caller's.
    assert agents[0].stop_requests == ["service"]


def test_stop_before_ready_never_reports_running(tmp_path):
    recorder, agents = Recorder(), list[SlowAgent]()
    host = make_host(tmp_path, recorder, agents)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(host.run()))
    thread.start()
    wait_for(lambda: agents)
    host.stop()
    agents[0].release.set()
    thread.join(timeout=5)
    assert codes == [EXIT_OK]
    assert State.RUNNING not in [state for state, _ in recorder.reports]
    assert (State.STOP_PENDING, host.stop_hint_ms) in recorder.reports
    assert host.stop_hint_ms == (2.0 + 20.0) * 1000


def test_host_returns_config_exit_code(tmp_path):
    recorder = Recorder()
    config = tmp_path / "agent.toml"
    config.write_text("[agent]\nshutdown_timeout = -1\n", encoding="utf-8")
    host = ServiceHost(config, recorder.report, recorder, setup_logging=lambda c: None)
    assert host.run() == EXIT_CONFIG
    assert recorder.events[0][0] == "error"
    assert "agent.shutdown_timeout" in recorder.events[0][1]


# --- the rotating log file ---------------------------------------------------------------------


def test_log_file_has_json_lines_with_redaction_and_rotates(tmp_path, restore_logging):
    import io

    configure_logging("info", "console", secrets=["file-secret-value"], stream=io.StringIO())
    path = tmp_path / "logs" / "edge-agent.log"
    add_log_file(LogFileSettings(path, max_bytes=2048, backups=2), only=True)
    log = structlog.get_logger("t")
    logging.getLogger("aiohttp.client").warning("refused: file-secret-value")
    log.info("uplink.sent", access_token="abc", detail="patient_name=张三 phone 13812345678")
    for n in range(40):
        log.info("filler", n=n, text="x" * 80)
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["edge-agent.log", "edge-agent.log.1", "edge-agent.log.2"]
    text = "".join(p.read_text(encoding="utf-8") for p in path.parent.iterdir())
    for secret in ("file-secret-value", "abc", "张三", "13812345678"):
        assert secret not in text
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines and all(line["event"] == "filler" for line in lines)


def test_log_file_lines_keep_the_first_events_until_rotation(tmp_path, restore_logging):
    import io

    configure_logging("info", "json", stream=io.StringIO())
    path = tmp_path / "edge-agent.log"
    add_log_file(LogFileSettings(path))
    structlog.get_logger("t").info("agent.started", token="tok-123456")
    [line] = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    assert line["event"] == "agent.started" and line["token"] == MASK
    assert line["level"] == "info" and "timestamp" in line


def test_log_file_settings_come_from_the_log_section_or_the_default(tmp_path):
    section = types.SimpleNamespace(file=tmp_path / "a.log", file_max_bytes=10, file_backups=3)
    assert log_file_settings(section) == LogFileSettings(tmp_path / "a.log", 10, 3)
    assert log_file_settings(types.SimpleNamespace()) is None
    assert log_file_settings(types.SimpleNamespace(), tmp_path / "d.log") == LogFileSettings(
        tmp_path / "d.log"
    )


# --- the CLI ------------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_service_parser(parser.add_subparsers(required=True))
    return parser.parse_args(argv)


def test_cli_refuses_on_linux(capsys):
    args = parse("service", "install")
    assert args.func(args, platform="linux") == 2
    assert capsys.readouterr().err.strip() == NOT_WINDOWS
    assert "win32serviceutil" not in sys.modules


def test_install_registers_the_class_and_saves_the_config_path(scm, tmp_path, capsys):
    config = write_config(tmp_path)
    args = parse("service", "install", "--config", str(config), "--startup", "manual")
    assert cmd_service(args, platform="win32") == 0
    [(positional, keywords)] = scm.named("InstallService")
    assert positional == (SERVICE_CLASS, "EdgeAgent", "edge-agent: hospital front-end agent")
    assert keywords["startType"] == 3 and keywords["delayedstart"] is False
    assert keywords["description"]
    assert scm.named("SetServiceCustomOption") == [(("EdgeAgent", "config", str(config)), {})]
    assert "installed" in capsys.readouterr().out


def test_install_again_updates_the_service(scm, tmp_path):
    scm.fail["InstallService"] = Win32Error(1073, "CreateService", "The service exists")
    args = parse("service", "install", "-c", str(write_config(tmp_path)), "--startup", "delayed")
    assert cmd_service(args, platform="win32") == 0
    [(positional, keywords)] = scm.named("ChangeServiceConfig")
    assert positional == (SERVICE_CLASS, "EdgeAgent")
    assert keywords["startType"] == 2 and keywords["delayedstart"] is True


def test_install_refuses_a_missing_config(scm, tmp_path, capsys):
    args = parse("service", "install", "--config", str(tmp_path / "none.toml"))
    assert cmd_service(args, platform="win32") == 2
    assert not scm.named("InstallService")
    assert "check-config" in capsys.readouterr().err


def test_start_waits_for_running(scm, capsys):
    scm.query_states = [START_PENDING, START_PENDING, RUNNING]
    assert cmd_service(parse("service", "start"), platform="win32", sleep=lambda s: None) == 0
    assert scm.named("StartService") == [(("EdgeAgent",), {})]
    assert len(scm.named("QueryServiceStatus")) == 3


def test_start_that_ends_stopped_points_at_the_event_log(scm, capsys):
    scm.query_states = [START_PENDING, STOPPED]
    assert cmd_service(parse("service", "start"), platform="win32", sleep=lambda s: None) == 1
    assert "Event Viewer" in capsys.readouterr().err


def test_stop_remove_and_status(scm, capsys):
    scm.query_states = [STOP_PENDING, STOPPED]
    assert cmd_service(parse("service", "stop"), platform="win32", sleep=lambda s: None) == 0
    assert scm.named("StopService") == [(("EdgeAgent",), {})]

    scm.query_states = [STOPPED]
    scm.fail["StopService"] = Win32Error(1062, "ControlService", "The service has not started")
    assert cmd_service(parse("service", "remove"), platform="win32", sleep=lambda s: None) == 0
    assert scm.named("RemoveService") == [(("EdgeAgent",), {})]

    scm.options[CONFIG_OPTION] = r"D:\edge\agent.toml"
    assert cmd_service(parse("service", "status"), platform="win32") == 3
    scm.query_states = [RUNNING]
    assert cmd_service(parse("service", "status"), platform="win32") == 0
    out = capsys.readouterr().out
    assert "EdgeAgent: running" in out and r"config: D:\edge\agent.toml" in out


def test_scm_errors_are_explained(scm, capsys):
    scm.fail["StartService"] = Win32Error(5, "OpenSCManager", "Access is denied.")
    assert cmd_service(parse("service", "start"), platform="win32") == 1
    assert "Run as administrator" in capsys.readouterr().err
    scm.fail["StartService"] = Win32Error(1060, "OpenService", "does not exist")
    assert cmd_service(parse("service", "start"), platform="win32") == 4
    assert "not installed" in capsys.readouterr().err
