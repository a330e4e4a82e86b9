"""check-config refuses a reprocessing config whose values the Zhejiang platform's tables would
refuse at run time (one dead letter per record), naming the key; one source of the institution
codes; a photo URL the platform can fetch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.config import load_config
from agent.errors import ConfigError
from agent.plugins import PLUGIN_KINDS

DEMO = Path(__file__).parents[2] / "config" / "demo.toml"
PHOTOS = "https://agent.hospital.example/photos/"


def config_text(
    domain: dict[str, Any] | None = None, *, enabled: bool = True, **tables: Any
) -> str:
    """A config: a zhejiang uplink and a reprocessing domain with one station per table."""
    stations = tables.get("stations") or [{"reader": "use", "step_id": 1, "name": "使用",
                                            "order": 1, "kind": "use"}]  # fmt: skip
    lines = [
        "[uplinks.zj]",
        'type = "zhejiang_endoscope"',
        f"enabled = {json.dumps(enabled)}",
        'base_url = "http://127.0.0.1:8790/openapi"',
        'access_key = "k"',
        'access_secret = "s"',
        'unique_code = "330100001"',
        'credit_code = "12330100470000000X"',
        "[domains.endo]",
        'type = "reprocessing"',
        'uplink = "zj"',
    ]
    lines += [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in (domain or {}).items()]
    lines += [
        "[domains.endo.quality]",
        f"photo_base_url = {json.dumps(tables.get('photos', PHOTOS))}",
    ]
    if "institution" in tables:
        lines += ["[domains.endo.institution]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in tables["institution"].items()]
    for array in ("stations", "endoscopes", "staff"):
        for row in stations if array == "stations" else tables.get(array, []):
            lines.append(f"[[domains.endo.{array}]]")
            lines += [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in row.items()]
    return "\n".join(lines) + "\n"


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path, PLUGIN_KINDS, skip_secrets=True)
    except ConfigError as err:
        return [p.removeprefix(f"{path}: ") for p in err.problems]
    return []


def test_a_valid_config_passes_and_the_demo_too(tmp_path):
    assert problems(tmp_path, config_text()) == []
    assert problems(tmp_path, DEMO.read_text(encoding="utf-8")) == []


def test_each_overlong_value_fails_naming_its_key_and_the_seed_field(tmp_path):
    station = {"reader": "use", "step_id": 123456789012, "name": "步" * 65, "order": 1,
               "kind": "use", "cabinet": "C" * 14, "parent": "p" * 65}  # fmt: skip
    scope = {"number": "GIF-1", "rfid": "E2001", "type_name": "胃" * 65, "steel_number": "S" * 65}
    staff = {"rfid": "B1", "id": "N1", "name": "名" * 33}
    found = problems(tmp_path, config_text(stations=[station], endoscopes=[scope], staff=[staff]))
    keys = sorted({p.split(":")[0] for p in found})
    assert keys == [
        "domains.endo.endoscopes.0.steel_number",
        "domains.endo.endoscopes.0.type_name",
        "domains.endo.staff.0.name",
        "domains.endo.stations.0.cabinet",
        "domains.endo.stations.0.name",
        "domains.endo.stations.0.parent",
        "domains.endo.stations.0.step_id",
    ]
    name = [p for p in found if p.startswith("domains.endo.stations.0.name")]
    assert any("addCleanStepInfo.stepName" in p for p in name), name
    assert any("uploadUseStepData.uploadUser" in p for p in found), found  # S..32


def test_a_disabled_uplink_checks_nothing(tmp_path):
    station = {"reader": "use", "step_id": 1, "name": "步" * 65, "order": 1, "kind": "use"}
    assert problems(tmp_path, config_text(enabled=False, stations=[station], photos="")) == []


@pytest.mark.parametrize(
    ("photos", "shown"),
    [("", "empty"), ("photos/", "not an absolute"), ("ftp://x/p/", "not an absolute")],
)
def test_a_photo_url_the_platform_cannot_fetch_fails(tmp_path, photos, shown):
    [problem] = problems(tmp_path, config_text(photos=photos))
    assert problem.startswith(f"domains.endo.quality.photo_base_url: {shown}")


def test_institution_codes_are_configured_once(tmp_path):
    same = {"unique_code": "330100001", "credit_code": "12330100470000000X"}
    assert problems(tmp_path, config_text(institution=same)) == []
    other = {**same, "unique_code": "330100002"}
    [problem] = problems(tmp_path, config_text(institution=other))
    assert problem.startswith("domains.endo.institution.unique_code: differs from the uplink's")


def test_steel_numbers_chosen_for_an_endpoint_must_be_configured(tmp_path):
    text = config_text(endoscopes=[{"number": "GIF-1", "rfid": "E1"}]).replace(
        'credit_code = "12330100470000000X"\n',
        'credit_code = "12330100470000000X"\nscope_refs = { endoscopeSave = "steel_number" }\n',
        1,
    )
    [problem] = problems(tmp_path, text)
    assert problem == (
        "domains.endo.endoscopes.0.steel_number: empty, but scope_refs.endoscopeSave ="
        " 'steel_number' sends it as rfidNumber"
    )
