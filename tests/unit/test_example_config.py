"""config/agent.example.toml is valid and documents every option of every section and plugin."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from agent.config import (
    AgentSection,
    AlertsSection,
    ApiSection,
    JournalSection,
    LogSection,
    StatusSection,
    SupervisorSection,
    load_config,
)
from agent.errors import ConfigError
from agent.plugins import PLUGIN_KINDS

EXAMPLE = Path(__file__).parents[2] / "config" / "agent.example.toml"


def nested_models(model: type[BaseModel]) -> list[type[BaseModel]]:
    """Models used as a field's type, or as the item type of a list field."""
    found = []
    for field in model.model_fields.values():
        for candidate in (field.annotation, *get_args(field.annotation)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                found.append(candidate)
    return found


def test_example_config_is_valid(tmp_path):
    text = EXAMPLE.read_text(encoding="utf-8").replace("/var/lib/edge-agent", str(tmp_path))
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "hospital_bus_secret").write_text("x", encoding="utf-8")
    (tmp_path / "creds" / "zhejiang_access_secret").write_text("x", encoding="utf-8")
    (tmp_path / "creds" / "api_token").write_text("x" * 24, encoding="utf-8")
    (tmp_path / "creds" / "city_imaging_license").write_text("x", encoding="utf-8")
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    config = load_config(
        path,
        PLUGIN_KINDS,
        environ={"CREDENTIALS_DIRECTORY": str(tmp_path / "creds"), "TEST_CLOUD_SECRET": "y"},
    )
    assert config.uplinks and config.sources and config.simulators


def test_example_config_documents_every_option():
    text = EXAMPLE.read_text(encoding="utf-8")
    models: list[type[BaseModel]] = [
        AgentSection,
        LogSection,
        JournalSection,
        SupervisorSection,
        ApiSection,
        AlertsSection,
        StatusSection,
    ]
    models += [plugin.model for registry in PLUGIN_KINDS.values() for plugin in registry.values()]
    models += [nested for model in list(models) for nested in nested_models(model)]
    missing = [
        f"{model.__name__}.{name}"
        for model in models
        for name in model.model_fields
        if not re.search(rf"^#? ?{name} = ", text, re.MULTILINE)
        and not re.search(rf"^\[\[?\w+\.\w+\.{name}\]\]?(\s|$)", text, re.MULTILINE)
    ]
    assert not missing, f"undocumented options: {missing}"


ODD_VALUES = [
    "inf", "nan", "-0", "1e999", "9" * 400, '"\\u0000"', '"file:/dev/zero"', '"env:"', "[[[]]]",
    "{ a = 1 }", '""', "true", "1979-05-27T07:32:00Z", "[" * 3000 + "]" * 3000,
    '"' + "x" * 5000 + '"',
]  # fmt: skip


@st.composite
def mutated_config(draw: st.DrawFn, text: str) -> str:
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, len(lines) - 1))
        line = lines[at]
        match draw(st.sampled_from(["value", "drop", "repeat", "noise"])):
            case "value" if "=" in line:
                lines[at] = line.split("=", 1)[0] + "= " + draw(st.sampled_from(ODD_VALUES))
            case "drop":
                del lines[at]
            case "repeat":
                lines.insert(at, line)
            case _:
                lines.insert(at, draw(st.text(max_size=30)))
    return "\n".join(lines)


@settings(max_examples=60)
@given(data=st.data())
def test_a_mutated_config_is_loaded_or_refused_with_file_key_and_reason(tmp_path_factory, data):
    tmp_path = tmp_path_factory.mktemp("fuzz")
    text = EXAMPLE.read_text(encoding="utf-8").replace("/var/lib/edge-agent", str(tmp_path))
    path = tmp_path / "agent.toml"
    path.write_text(data.draw(mutated_config(text)), encoding="utf-8")
    try:
        load_config(
            path,
            PLUGIN_KINDS,
            environ={"CREDENTIALS_DIRECTORY": str(tmp_path), "TEST_CLOUD_SECRET": "y"},
        )
    except ConfigError as err:
        assert err.problems and all(line.startswith(f"{path}: ") for line in err.problems)
