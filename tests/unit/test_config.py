"""Config: every problem reported as `FILE: key.path: reason`; secrets from env, files, systemd."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import load_config
from agent.errors import ConfigError
from agent.plugins import PLUGIN_KINDS

UPLINK = """
[uplinks.cloud]
type = "http"
url = "https://cloud.example/ingest"
"""


def write(tmp_path: Path, text: str, name: str = "agent.toml") -> Path:
    path = tmp_path / name
    path.write_text(f'[agent]\nstate_dir = "state"\n{text}', encoding="utf-8")
    return path


def problems(path: Path, **environ: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, PLUGIN_KINDS, environ=environ)
    return info.value.problems


def test_minimal_config_gets_documented_defaults(tmp_path):
    config = load_config(write(tmp_path, UPLINK), PLUGIN_KINDS, environ={})
    assert config.agent.state_dir == tmp_path / "state"  # relative to the config file
    assert config.journal.retention_days == 1096  # three years, WS 507-2016 §7.6
    uplink = config.uplinks["cloud"]
    assert (uplink.concurrency, uplink.dead_letter_blocks_key) == (4, False)
    assert getattr(uplink, "verify_tls", None) is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (UPLINK + "urll = 'x'\n", "uplinks.cloud.urll: unknown key"),
        ("[journal]\nretention_days = 'long'\n", "journal.retention_days: Input should be"),
        (UPLINK + "concurrency = 0\n", "uplinks.cloud.concurrency: Input should be greater"),
        (UPLINK.replace('"http"', '"carrier-pigeon"'), "uplinks.cloud.type: must be one of"),
        ("[uplinks.cloud]\ntype = 'http'\n", "uplinks.cloud.url: required key is missing"),
        ("[agent.extra]\n", "agent.agent: unknown key"),
    ],
)
def test_each_problem_names_file_key_and_reason(tmp_path, text, expected):
    if text.startswith("[agent.extra]"):
        path = tmp_path / "agent.toml"
        path.write_text("[agent]\nagent = 1\n", encoding="utf-8")
    else:
        path = write(tmp_path, text)
    found = problems(path)
    assert any(line.startswith(f"{path}: {expected}") for line in found), found


def test_all_problems_are_listed_at_once(tmp_path):
    path = write(tmp_path, UPLINK + "concurrency = 'many'\n[log]\nlevel = 'chatty'\n")
    found = problems(path)
    assert [line.split(": ")[1] for line in found] == ["uplinks.cloud.concurrency", "log.level"]


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text("[agent\n", encoding="utf-8")
    (line,) = problems(path)
    assert line.startswith(f"{path}: invalid TOML")


def test_secret_from_environment(tmp_path):
    path = write(tmp_path, UPLINK + 'client_secret = "env:CLOUD_SECRET"\n')
    config = load_config(path, PLUGIN_KINDS, environ={"CLOUD_SECRET": "from-env-123"})
    assert config.secrets() == ["from-env-123"]
    assert problems(path) == [
        f"{path}: uplinks.cloud.client_secret: environment variable CLOUD_SECRET is not set"
    ]


def test_secret_from_file_relative_to_config(tmp_path):
    (tmp_path / "cloud.secret").write_text("from-file-456\n", encoding="utf-8")
    path = write(tmp_path, UPLINK + 'client_secret = "file:cloud.secret"\n')
    assert load_config(path, PLUGIN_KINDS, environ={}).secrets() == ["from-file-456"]


def test_missing_secret_file(tmp_path):
    path = write(tmp_path, UPLINK + 'client_secret = "file:nowhere.secret"\n')
    (line,) = problems(path)
    assert line.startswith(f"{path}: uplinks.cloud.client_secret: cannot read secret file")


def test_secret_from_systemd_credentials_directory(tmp_path):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "cloud_secret").write_text("from-systemd-789", encoding="utf-8")
    path = write(tmp_path, UPLINK + 'client_secret = "credential:cloud_secret"\n')
    config = load_config(path, PLUGIN_KINDS, environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert config.secrets() == ["from-systemd-789"]
    (line,) = problems(path)
    assert "needs $CREDENTIALS_DIRECTORY" in line


def test_unwritable_state_dir(tmp_path):
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    path = tmp_path / "agent.toml"
    # A path below a regular file cannot be created, even by root.
    path.write_text('[agent]\nstate_dir = "a-file/state"\n', encoding="utf-8")
    (line,) = problems(path)
    assert line.startswith(f"{path}: agent.state_dir: ") and "not a writable directory" in line


@pytest.mark.parametrize("command", ["run", "check-config"])
@pytest.mark.parametrize(
    ("text", "key"),
    [
        (UPLINK + "urll = 'x'\n", "uplinks.cloud.urll"),
        (UPLINK + "concurrency = 'many'\n", "uplinks.cloud.concurrency"),
        (UPLINK + 'client_secret = "file:missing.secret"\n', "uplinks.cloud.client_secret"),
        ("", "agent.state_dir"),  # unwritable: see below
    ],
)
def test_bad_config_fails_run_and_check_config_with_one_line(tmp_path, capsys, command, text, key):
    path = write(tmp_path, text)
    if key == "agent.state_dir":
        (tmp_path / "a-file").write_text("", encoding="utf-8")
        path.write_text('[agent]\nstate_dir = "a-file/state"\n', encoding="utf-8")
    argv = ["run", "--config", str(path)] if command == "run" else ["check-config", str(path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{path}: {key}: "), err


def test_check_config_prints_effective_config_with_secrets_masked(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CLOUD_SECRET", "very-secret-value")
    path = write(tmp_path, UPLINK + 'client_secret = "env:CLOUD_SECRET"\n')
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "very-secret-value" not in out
    assert 'client_secret = "**********"' in out
    assert "[uplinks.cloud]" in out and "retention_days = 1096" in out


def test_check_config_reads_credentials_from_a_folder_outside_systemd(tmp_path, capsys):
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "cloud_secret").write_text("from-the-folder", encoding="utf-8")
    path = write(tmp_path, UPLINK + 'client_secret = "credential:cloud_secret"\n')
    argv = ["check-config", "-c", str(path), "--credentials-dir", str(creds)]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith(f"# {path}: OK (secrets masked)")
    assert main([*argv[:-1], str(tmp_path / "elsewhere")]) == 2
    assert "uplinks.cloud.client_secret" in capsys.readouterr().err


def test_a_disabled_section_does_not_need_its_secrets(tmp_path):
    text = UPLINK + 'enabled = false\nclient_secret = "credential:not_installed"\n'
    config = load_config(write(tmp_path, text + '[api]\ntoken = "env:UNSET"\n'), PLUGIN_KINDS)
    assert not config.uplinks["cloud"].enabled
    enabled = write(tmp_path, UPLINK + 'client_secret = "credential:not_installed"\n')
    assert "needs $CREDENTIALS_DIRECTORY" in problems(enabled)[0]


def test_check_config_without_secrets_checks_everything_else(tmp_path, capsys):
    secret = 'client_secret = "credential:cloud_secret"\n'
    path = write(tmp_path, UPLINK + secret + '[api]\nenabled = true\ntoken = "env:UNSET"\n')
    assert main(["check-config", str(path), "--no-secrets"]) == 0
    assert "secrets not read" in capsys.readouterr().out
    broken = write(tmp_path, UPLINK + secret + "concurrency = 0\n", "broken.toml")
    assert main(["check-config", "-c", str(broken), "--no-secrets"]) == 2
    assert capsys.readouterr().err.startswith(f"{broken}: uplinks.cloud.concurrency: ")


def test_api_needs_a_token_when_enabled(tmp_path):
    path = write(tmp_path, "[api]\nenabled = true\n")
    (line,) = problems(path)
    assert line == f"{path}: api: token is required when the API is enabled"


def test_a_short_api_token_is_refused_without_showing_it(tmp_path):
    path = write(tmp_path, '[api]\nenabled = true\ntoken = "123456"\n')
    (line,) = problems(path)
    assert line.startswith(f"{path}: api: token is too short: at least 16 characters")
    assert "123456" not in line


def test_uplinks_named_by_domains_and_alerts_must_exist(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(
        '[alerts]\npublish_to = ["bus"]\n'
        '[domains.imaging]\ntype = "imaging"\nforward_to = ["cloud"]\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path, PLUGIN_KINDS)
    assert raised.value.problems == [
        f"{path}: alerts.publish_to: no uplink named bus",
        f"{path}: domains.imaging: no uplink named cloud",
    ]


def test_toml_nested_beyond_reason_is_a_config_problem_not_a_traceback(tmp_path, capsys):
    path = write(tmp_path, "x = " + "[" * 3000 + "]" * 3000 + "\n")
    (line,) = problems(path)
    assert line == f"{path}: invalid TOML: nested too deeply"
    assert main(["check-config", str(path)]) == 2
    assert capsys.readouterr().err == f"{path}: invalid TOML: nested too deeply\n"


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "directory"])
def test_a_secret_file_must_be_a_regular_file(tmp_path, special):
    if sys.platform == "win32":
        pytest.skip("/dev/zero and FIFOs: POSIX")
    target = {"/dev/zero": Path("/dev/zero"), "fifo": tmp_path / "fifo", "directory": tmp_path}
    if special == "fifo":
        os.mkfifo(tmp_path / "fifo")  # nobody writes: reading it would wait for ever
    path = write(tmp_path, UPLINK + f'client_secret = "file:{target[special]}"\n')
    (line,) = problems(path)
    assert line.startswith(f"{path}: uplinks.cloud.client_secret: secret file {target[special]}")
    assert line.endswith("is not a regular file")


def test_a_secret_file_has_a_size_limit(tmp_path):
    (tmp_path / "huge.secret").write_bytes(b"x" * (64 * 1024 + 1))
    path = write(tmp_path, UPLINK + 'client_secret = "file:huge.secret"\n')
    (line,) = problems(path)
    assert line.endswith("secret file " + str(tmp_path / "huge.secret") + " is over 64 KiB")


@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "9" * 400 + ".0"])
def test_numbers_must_be_finite(tmp_path, value):
    path = write(tmp_path, UPLINK + f"send_timeout = {value}\n")
    (line,) = problems(path)
    assert line.startswith(f"{path}: uplinks.cloud.send_timeout: Input should be a finite number")


def test_the_spool_disk_alerts_must_come_before_the_c_store_reserve(tmp_path):
    path = write(
        tmp_path,
        """
[sources.pacs_in]
type = "dicom_scp"
ae_title = "EDGE"
allowed_calling_aes = ["PACS"]
min_free_mb = 3000

[domains.imaging]
type = "imaging"
forward_to = []
disk_warning_free_mb = 4096
disk_critical_free_mb = 2048
""",
    )
    assert problems(path) == [
        f"{path}: domains.imaging.disk_critical_free_mb: must be above"
        " sources.pacs_in.min_free_mb (3000 MiB): the alert must come before C-STORE answers"
        " 0xA700"
    ]
    path.write_text(
        path.read_text().replace("disk_critical_free_mb = 2048", "disk_critical_free_mb = 3500")
    )
    load_config(path, PLUGIN_KINDS, environ={})  # reserve < critical < warning
    path.write_text(
        path.read_text().replace("disk_critical_free_mb = 3500", "disk_critical_free_mb = 4096")
    )
    assert problems(path) == [
        f"{path}: domains.imaging: disk_critical_free_mb must be below disk_warning_free_mb"
    ]
