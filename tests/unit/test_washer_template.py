"""The configurable template format: parsing a new model's receipt and validating templates."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from drivers.washer.folder import WasherFolderConfig
from drivers.washer.formats.template import TemplateConfig, TemplateParser
from drivers.washer.printer import WasherPrinterConfig
from drivers.washer.receipt import ReceiptError, decode

FIXTURES = Path(__file__).parents[1] / "fixtures" / "washer"
CF200: dict[str, Any] = {
    "machine": r"机号\s+(?P<machine>\S+)",
    "program": r"程序\s+(?P<program>\S+)",
    "cycle": r"周期编号\s+#(?P<cycle>\d+)",
    "date": r"^(?P<date>\d{4}\.\d{2}\.\d{2})$",
    "operator": r"操作\s+(?P<operator>\S+)",
    "scope": r"镜号\s+(?P<scope>.+?)\s*$",
    "leak_test": r"测漏=(?P<leak_test>\w+)",
    "channel": r"(?P<name>[A-C])=(?P<result>OK|NG)",
    "error_code": r"故障=(?P<error_code>\S+)",
    "result": r"判定:\s*(?P<result>\S+)",
    "phase_row": r"^\[(?P<name>[^\]]+)\]\s+(?P<start>\d\d:\d\d)-(?P<end>\d\d:\d\d)"
    r"\s+T=(?P<temperature>\S+)(?:\s+药液=(?P<disinfectant>\S+)\s+(?P<concentration>[\d.]+)%)?",
    "date_formats": ["%Y.%m.%d"],
    "phase_kinds": {"冲洗": "rinse", "浸泡消毒": "disinfect", "风干": "dry"},
}


def receipt() -> str:
    return decode((FIXTURES / "template_cf200.txt").read_bytes(), "gb18030")


def test_a_new_model_is_read_by_configuration_alone():
    parser = TemplateParser(TemplateConfig.model_validate(CF200))
    cycle = parser.parse(receipt(), ZoneInfo("Asia/Shanghai"))
    assert (cycle.washer, cycle.program, cycle.cycle_number) == ("No.7", "P3-胃镜", "000982")
    assert (cycle.operator, cycle.scope) == ("周静", "GIF-XP290N 3100221")
    assert [p.kind.value for p in cycle.phases] == [
        "pre_clean",
        "leak_test",
        "enzyme",
        "rinse",
        "disinfect",
        "final_rinse",
        "dry",
    ]
    disinfect = cycle.phases[4]
    assert (disinfect.disinfectant, disinfect.concentration_pct, disinfect.temperature_c) == (
        "opa",
        0.6,
        20.0,
    )
    assert cycle.phases[1].temperature_c is None
    assert cycle.started_at.isoformat() == "2024-05-14T08:01:00+08:00"
    assert cycle.ended_at.isoformat() == "2024-05-14T08:33:00+08:00"
    assert [(c.name, c.result) for c in cycle.channels] == [
        ("A", "pass"),
        ("B", "pass"),
        ("C", "pass"),
    ]
    assert (cycle.leak_test, cycle.error_code, cycle.result) == ("pass", "", "pass")


def test_template_pass_fail_words_and_missing_keys():
    config = TemplateConfig.model_validate(
        {**CF200, "pass_words": ["OK", "PASS"], "fail_words": ["NG", "FAIL"]}
    )
    parser = TemplateParser(config)
    tz = ZoneInfo("Asia/Shanghai")
    assert parser.parse(receipt().replace("判定: OK", "判定: NG"), tz).result == "fail"
    with pytest.raises(ReceiptError, match="truncated: template key result"):
        parser.parse(receipt().replace("判定: OK", ""), tz)
    with pytest.raises(ReceiptError, match="missing_field: template key cycle"):
        parser.parse(receipt().replace("#000982", ""), tz)
    with pytest.raises(ReceiptError, match=r"unknown_phase: .*'冲洗'"):
        TemplateParser(TemplateConfig.model_validate({**CF200, "phase_kinds": {}})).parse(
            receipt(), tz
        )
    with pytest.raises(ReceiptError, match="garbage"):
        parser.parse("nothing to see\n", tz)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cycle": r"周期编号 (?P<cycle>\d+"}, "cycle: invalid regular expression"),
        (
            {"machine": r"机号\s+(\S+)"},
            "machine: the pattern needs the named group(s) (?P<machine>",
        ),
        ({"scope": r"(?P<scope>\S+) (?P<x>\S+)"}, "scope: unknown named group(s) ['x']"),
        ({"phase_row": r"(?P<name>\S+) (?P<start>\S+)"}, "phase_row: the pattern needs"),
        (
            {"channel": r"(?P<name>\S+)"},
            "channel: the pattern needs the named group(s) (?P<result>",
        ),
        ({"phase_kinds": {"存放": "store"}}, "phase_kinds.存放: store is not a washer phase kind"),
        ({"phase_kinds": {"x": "boil"}}, "phase_kinds.x"),
        ({"pass_words": ["OK"], "fail_words": ["OK"]}, "pass_words and fail_words share ['OK']"),
        ({"pass_words": []}, "pass_words"),
        ({"bogus": "x"}, "bogus"),
    ],
)
def test_bad_templates_fail_at_config_time_naming_the_key(change: dict[str, Any], message: str):
    with pytest.raises(ValidationError) as err:
        WasherPrinterConfig.model_validate(
            {
                "type": "washer_printer",
                "url": "serial:///dev/ttyUSB0",
                "format": "template",
                "template": {**CF200, **change},
            }
        )
    assert message in str(err.value)
    assert "template" in str(err.value)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"format": "template"}, "a [template] table is required"),
        ({"template": CF200}, "a [template] table is required"),
        ({"format": "pdf"}, "format"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"encoding": "klingon"}, "unknown encoding"),
        ({"max_bytes": 10}, "max_bytes"),
        ({"url": "http://x"}, "serial://"),
        ({"idle_gap": 0}, "idle_gap"),
        ({"end_marker": "  "}, "end_marker must contain visible text"),
        ({"end_marker": "✓", "encoding": "ascii"}, "end_marker cannot be written in ascii"),
        ({"reconnect_initial": 5, "reconnect_max": 1}, "reconnect_max must be at least"),
    ],
)
def test_printer_config_errors(keys: dict[str, Any], message: str):
    base = {"type": "washer_printer", "url": "tcp://10.0.0.5:9100", "format": "thermal_cn"}
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("(", r"\(")):
        WasherPrinterConfig.model_validate({**base, **keys})


def test_folder_config_defaults_and_errors(tmp_path: Path):
    config = WasherFolderConfig.model_validate(
        {"type": "washer_folder", "path": "exports", "format": "csv"},
        context={"base_dir": tmp_path},
    )
    assert config.path == tmp_path / "exports"
    assert (config.settle, config.encoding, config.timezone) == (2.0, "gb18030", "Asia/Shanghai")
    assert "*.tmp" in config.ignore and "~*" in config.ignore and ".*" in config.ignore
    with pytest.raises(ValidationError, match="ready_suffix needs a name"):
        WasherFolderConfig.model_validate(
            {"type": "washer_folder", "path": "x", "format": "csv", "ready_suffix": "."}
        )
    with pytest.raises(ValidationError, match="retry_max must be at least"):
        WasherFolderConfig.model_validate(
            {
                "type": "washer_folder",
                "path": "x",
                "format": "xml",
                "retry_initial": 9,
                "retry_max": 1,
            }
        )
