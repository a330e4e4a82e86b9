"""Receipt parsers on fixtures: good, failed, truncated, mis-encoded, garbage, incomplete."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from drivers.washer.capture import Receipts
from drivers.washer.folder import WasherFolderConfig
from drivers.washer.formats import csv_log, thermal_cn, xml_log
from drivers.washer.formats.template import TemplateConfig, TemplateParser
from drivers.washer.receipt import ReceiptError, decode
from tests.unit.test_washer_template import CF200

FIXTURES = Path(__file__).parents[1] / "fixtures" / "washer"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def text(name: str) -> str:
    return decode((FIXTURES / name).read_bytes(), "gb18030")


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_thermal_oer_aw_receipt():
    cycle = thermal_cn.parse(text("thermal_oer_aw.txt"), SHANGHAI)
    assert (cycle.washer, cycle.program, cycle.cycle_number) == ("AW-02", "标准程序1", "004512")
    assert (cycle.operator, cycle.scope) == ("张丽", "GIF-H290 2901234")
    assert cycle.started_at == utc(2024, 5, 13, 1, 12, 5)
    assert cycle.ended_at == utc(2024, 5, 13, 1, 41, 50)
    kinds = [(p.name, p.kind.value) for p in cycle.phases]
    assert kinds == [
        ("测漏", "leak_test"),
        ("初洗", "clean"),
        ("酶洗", "enzyme"),
        ("漂洗", "rinse"),
        ("消毒", "disinfect"),
        ("终末漂洗", "final_rinse"),
        ("酒精", "dry"),
        ("吹干", "dry"),
    ]
    disinfect = cycle.phases[4]
    assert (disinfect.disinfectant, disinfect.concentration_pct) == ("opa", 0.55)
    assert disinfect.temperature_c == 22.6
    assert cycle.phases[0].temperature_c is None and cycle.phases[1].disinfectant is None
    assert cycle.leak_test == "pass" and cycle.result == "pass" and cycle.error_code == ""
    assert [(c.name, c.result) for c in cycle.channels] == [
        ("活检管道", "pass"),
        ("送气送水管道", "pass"),
        ("吸引管道", "pass"),
    ]


def test_thermal_xinhua_receipt_with_inline_parameters():
    cycle = thermal_cn.parse(text("thermal_xinhua.txt"), SHANGHAI)
    assert (cycle.washer, cycle.cycle_number, cycle.operator) == ("XH-3", "20240513-017", "李明")
    disinfect = next(p for p in cycle.phases if p.kind == "disinfect")
    assert (disinfect.disinfectant, disinfect.concentration_pct, disinfect.temperature_c) == (
        "glutaraldehyde",
        2.3,
        20.5,
    )
    assert cycle.leak_test == "pass"  # printed in the 测漏 row
    assert cycle.error_code == "" and cycle.result == "pass"
    assert cycle.started_at == utc(2024, 5, 13, 6, 5, 10)


def test_thermal_laoken_failed_cycle_across_midnight():
    cycle = thermal_cn.parse(text("thermal_laoken_fail.txt"), SHANGHAI)
    assert cycle.result == "fail"
    assert cycle.error_code == "E07 吸引管道堵塞"
    assert [(c.name, c.result) for c in cycle.channels] == [
        ("活检管道", "pass"),
        ("吸引管道", "fail"),
    ]
    disinfect = cycle.phases[-1]
    assert disinfect.started_at == utc(2024, 5, 13, 15, 57, 32)
    assert disinfect.ended_at == utc(2024, 5, 13, 16, 2, 32)  # 00:02:32 the next local day
    assert (disinfect.disinfectant, disinfect.concentration_pct) == ("peracetic_acid", 0.25)


def test_truncated_thermal_receipt_is_rejected():
    whole = text("thermal_oer_aw.txt")
    with pytest.raises(ReceiptError) as err:
        thermal_cn.parse(whole[: whole.index("报警代码")], SHANGHAI)
    assert err.value.reason == "truncated" and "结果" in str(err.value)
    with pytest.raises(ReceiptError) as err:
        thermal_cn.parse(whole[: whole.index("09:28:35  22.6")], SHANGHAI)
    assert err.value.reason == "truncated"


@pytest.mark.parametrize(
    ("line", "reason", "word"),
    [
        ("程序: 标准程序1", "missing_field", "程序"),
        ("循环次数: 004512", "missing_field", "循环次数"),
        ("日期: 2024-05-13", "missing_field", "date"),
    ],
)
def test_missing_fields_are_named(line: str, reason: str, word: str):
    receipt = text("thermal_oer_aw.txt").replace(line + "\n", "")
    with pytest.raises(ReceiptError) as err:
        thermal_cn.parse(receipt, SHANGHAI)
    assert err.value.reason == reason and word in str(err.value)


def test_unknown_phase_and_bad_values_are_named():
    receipt = text("thermal_oer_aw.txt")
    with pytest.raises(ReceiptError, match=r"unknown_phase: .*除垢"):
        thermal_cn.parse(receipt.replace("初洗 ", "除垢 "), SHANGHAI)
    with pytest.raises(ReceiptError, match="bad_value: 结果"):
        thermal_cn.parse(receipt.replace("结果: 合格", "结果: 见记录"), SHANGHAI)
    with pytest.raises(ReceiptError, match="bad_value: 吹干: lasts more than 12 hours"):
        thermal_cn.parse(receipt.replace("09:35:05 09:41:50", "09:35:05 09:31:50"), SHANGHAI)


def test_garbage_is_not_a_receipt():
    with pytest.raises(ReceiptError, match="garbage"):
        thermal_cn.parse("hello world\n12345\n", SHANGHAI)
    with pytest.raises(ReceiptError, match="mis_encoded"):
        decode((FIXTURES / "garbage.bin").read_bytes(), "gb18030")


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        ((FIXTURES / "thermal_oer_aw.utf8.txt").read_bytes(), "invalid gb18030 bytes"),
        # UTF-8 that happens to be valid GB18030 byte pairs:
        ("清洗".encode(), "UTF-8"),
        ((FIXTURES / "thermal_traditional.big5.txt").read_bytes(), ""),
        ("測漏 結果 清洗 機器 程式".encode("big5"), "outside GB2312"),
        (b"\x81\x30", "invalid gb18030 bytes at offset 0"),
    ],
)
def test_mis_encoded_bytes_are_rejected_with_a_reason(data: bytes, detail: str):
    with pytest.raises(ReceiptError) as err:
        decode(data, "gb18030")
    assert err.value.reason == "mis_encoded" and detail in err.value.detail


def test_decode_keeps_rare_names_within_a_normal_receipt():
    receipt = (
        (FIXTURES / "thermal_oer_aw.txt")
        .read_bytes()
        .replace(
            "张丽".encode("gb18030"),
            "张喆".encode("gb18030"),  # 喆: GBK, not GB2312
        )
    )
    assert "张喆" in decode(receipt, "gb18030")


def test_csv_export():
    cycle = csv_log.parse(text("cycle_aw03.csv"), SHANGHAI)
    assert (cycle.washer, cycle.program, cycle.cycle_number) == ("AW-03", "标准程序2", "004513")
    assert cycle.started_at == utc(2024, 5, 13, 2, 2, 11)
    assert cycle.ended_at == utc(2024, 5, 13, 2, 31, 40)
    disinfect = cycle.phases[4]
    assert (disinfect.kind, disinfect.disinfectant, disinfect.concentration_pct) == (
        "disinfect",
        "opa",
        0.56,
    )
    assert cycle.phases[1].temperature_c == 24.1 and cycle.phases[0].temperature_c is None
    assert cycle.leak_test == "pass" and cycle.error_code == "" and len(cycle.channels) == 3


def test_csv_truncated_missing_and_garbage():
    whole = text("cycle_aw03.csv")
    with pytest.raises(ReceiptError, match="truncated: no phase table"):
        csv_log.parse(whole[: whole.index("阶段")], SHANGHAI)
    with pytest.raises(ReceiptError, match="truncated: phase row '吹干'"):
        csv_log.parse(whole[: whole.rindex(",2024-05-13 10:31:40")], SHANGHAI)
    with pytest.raises(ReceiptError, match="missing_field: 结果"):
        csv_log.parse(whole.replace("结果,合格", ""), SHANGHAI)
    with pytest.raises(ReceiptError, match="garbage"):
        csv_log.parse("a;b;c\n1;2;3\n", SHANGHAI)


def test_xml_export():
    cycle = xml_log.parse(text("cycle_aw04.xml"), SHANGHAI)
    assert (cycle.washer, cycle.cycle_number, cycle.operator) == ("AW-04", "004514", "赵强")
    disinfect = cycle.phases[4]
    assert (disinfect.disinfectant, disinfect.concentration_pct) == ("chlorine_dioxide", 0.01)
    assert cycle.ended_at == utc(2024, 5, 13, 3, 29, 45)
    assert cycle.result == "pass" and cycle.error_code == "" and cycle.leak_test == "pass"


def test_xml_truncated_missing_garbage_and_dtd():
    whole = text("cycle_aw04.xml")
    with pytest.raises(ReceiptError, match="truncated"):
        xml_log.parse(whole[: whole.index("<LeakTest>")], SHANGHAI)
    with pytest.raises(ReceiptError, match="missing_field: <Result>"):
        xml_log.parse(whole.replace("<Result>合格</Result>", ""), SHANGHAI)
    with pytest.raises(ReceiptError, match="garbage"):
        xml_log.parse("<html><body>x</body></html>", SHANGHAI)
    with pytest.raises(ReceiptError, match="garbage: DTD"):
        xml_log.parse('<!DOCTYPE x [<!ENTITY a "b">]><WasherCycle/>', SHANGHAI)


CALENDAR_EDGES = {
    "csv 9999": (
        csv_log.parse,
        "程序,P\n循环号,1\n结果,合格\n\n阶段,开始时间,结束时间,温度\n"
        "测漏,9999-12-31 23:59:00,00:01:00,\n",
    ),
    "thermal 9999": (
        thermal_cn.parse,
        "程序: P\n循环号: 1\n日期: 9999-12-31\n测漏 23:50 - 00:10\n结果: 合格\n",
    ),
    "thermal 0001": (
        thermal_cn.parse,
        "程序: P\n循环号: 1\n日期: 0001-01-01\n测漏 00:10 - 00:20\n结果: 合格\n",
    ),
    "template 9999": (
        TemplateParser(TemplateConfig.model_validate(CF200)).parse,
        "机号 7  程序 P\n周期编号 #1\n9999.12.31\n[测漏] 23:50-00:10 T=--\n判定: OK\n",
    ),
    "xml 0001": (
        xml_log.parse,
        '<WasherCycle program="P" cycle="1"><Phases><Phase name="测漏" '
        'start="0001-01-01 00:10:00" end="0001-01-01 00:20:00"/></Phases>'
        "<Result>合格</Result></WasherCycle>",
    ),
}


@pytest.mark.parametrize("case", CALENDAR_EDGES)
def test_dates_at_the_calendars_edges_are_a_receipt_error(case: str):
    parse, receipt = CALENDAR_EDGES[case]
    with pytest.raises(ReceiptError) as err:
        parse(receipt, SHANGHAI)
    assert err.value.reason == "bad_value" and "2000" in err.value.detail


def test_a_number_too_large_to_be_finite_is_a_bad_value():
    receipt = text("cycle_aw03.csv").replace(",24.6,", "," + "9" * 400 + ",")
    assert "9" * 400 in receipt
    with pytest.raises(ReceiptError, match="bad_value: 温度: not a finite number"):
        csv_log.parse(receipt, SHANGHAI)


def test_a_cycle_the_journal_could_not_store_is_rejected_at_capture():
    receipts = Receipts("aer_1", WasherFolderConfig.model_validate(
        {"type": "washer_folder", "path": "/tmp", "format": "csv"}
    ))  # fmt: skip
    good = csv_log.parse(text("cycle_aw03.csv"), SHANGHAI)
    nan_phase = replace(good.phases[0], temperature_c=float("nan"))
    receipts.parse = lambda text, tz: replace(good, phases=(nan_phase,))
    with pytest.raises(ReceiptError) as err:
        receipts.cycle_event((FIXTURES / "cycle_aw03.csv").read_bytes())
    assert err.value.reason == "parser_failed"
