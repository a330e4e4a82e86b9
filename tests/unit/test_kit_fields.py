"""The kit's field tables: validation, mapping operations, and field files read from TOML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.uplinks.kit.fieldfile import FieldFileError, load_field_file, parse_field_file
from agent.uplinks.kit.fieldmap import FieldMap, RecordMap, apply
from agent.uplinks.kit.fields import Checks, Field, TimeFormat, table, validate

CHECKS = Checks(formats={"DT": TimeFormat("%Y-%m-%d %H:%M:%S")})
TABLE = table(
    [
        Field("code", "VC(8)", required=True),
        Field("kind", "C(1)", choices=("0", "1")),
        Field("count", "N(4)"),
        Field("price", "N(6,2)"),
        Field("weight", "N..3"),
        Field("at", "DT"),
        Field("day", "C(10)", format="day"),
        Field("items", "array", children=table([Field("name", "S..4", required=True)])),
    ]
)


def test_a_valid_record_has_no_problem():
    record = {
        "code": "A1",
        "kind": "1",
        "count": 12,
        "price": "12.50",
        "weight": 1.5,
        "at": "2024-01-01 08:00:00",
        "items": [{"name": "abc"}],
    }
    assert validate(TABLE, record, CHECKS) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"code": None}, "code: required field is missing"),
        ({"code": "  "}, "code: required field is missing"),
        ({"code": "123456789"}, "code: 9 characters, at most 8 allowed (VC(8))"),
        ({"code": 5}, "code: bad type int (expected VC(8))"),
        ({"code": ["a"]}, "code: bad type list (expected VC(8))"),
        ({"kind": "10"}, "kind: 2 characters, exactly 1 required"),
        ({"kind": "2"}, "kind: must be one of 0, 1"),
        ({"count": 12345}, "count: more than 4 digits (N(4))"),
        ({"count": "x"}, "count: not a number (expected N(4))"),
        ({"count": float("inf")}, "count: not a number (expected N(4))"),
        ({"count": True}, "count: bad type bool (expected N(4))"),
        ({"price": "1.234"}, "price: more than 2 decimals (N(6,2))"),
        ({"price": 12345.5}, "price: more than 4 digits (N(6,2))"),
        ({"weight": "12.34"}, "weight: more than 3 digits (N..3)"),
        ({"at": "2024-01-01"}, "at: not a date-time in the format '%Y-%m-%d %H:%M:%S'"),
        ({"items": [{}]}, "items[0].name: required field is missing"),
        ({"items": {"name": "a"}}, "items: not an array"),
    ],
)
def test_each_rule_names_the_field_never_the_value(change, problem):
    record = {"code": "A1", **change}
    assert validate(TABLE, record, CHECKS) == [problem]


def test_length_in_utf8_bytes_integers_as_text_strays_and_skipped_fields():
    fields = table([Field("name", "S..6"), Field("sign", "S..4", required=True)])
    assert validate(fields, {"name": "张三"}, Checks(skip=frozenset({"sign"}))) == []
    utf8 = Checks(length_unit="utf8_bytes", skip=frozenset({"sign"}))
    assert validate(fields, {"name": "张三三"}, utf8) == ["name: 9 bytes, at most 6 allowed (S..6)"]
    assert validate(fields, {"name": 42, "sign": "s"}, Checks(integers_as_text=True)) == []
    strays = Checks(strays="the test's table")
    assert validate(fields, {"sign": "s", "nmae": "x"}, strays) == [
        "nmae: not a field of the test's table"
    ]


def test_a_named_format_without_a_definition_is_used_as_the_pattern():
    assert validate(TABLE, {"code": "A", "day": "2024-01-01"}, CHECKS) == [
        "day: not a date-time in the format 'day'"
    ]
    days = Checks(formats={"day": TimeFormat("%Y-%m-%d", "a date")})
    assert validate(TABLE, {"code": "A", "day": "2024-01-01"}, days) == []
    assert validate(TABLE, {"code": "A", "day": "01/01/2024"}, days) == [
        "day: not a date '%Y-%m-%d'"
    ]


def test_an_unknown_type_notation_or_a_repeated_name_fails_where_the_table_is_written():
    with pytest.raises(ValueError, match="unknown type 'VARCHAR'"):
        Field("x", "VARCHAR")
    with pytest.raises(ValueError, match="x: listed twice"):
        table([Field("x", "S..1"), Field("x", "S..2")])


# --- mapping ---------------------------------------------------------------------------------

RECORD = {"cycle": "C-1", "at": "2024-01-01T08:05:09+08:00", "state": "broken", "empty": ""}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (FieldMap("cleanId", source="cycle"), {"cleanId": "C-1"}),  # rename
        (FieldMap("stepId", constant=3), {"stepId": 3}),  # constant
        (FieldMap("time", source="at", format="%Y%m%d%H%M%S"), {"time": "20240101080509"}),
        (FieldMap("time", source="at", format="DT"), {"time": "2024-01-01 08:05:09"}),
        (FieldMap("status", source="state", translate={"ok": "0", "broken": "1"}), {"status": "1"}),
        (FieldMap("gone", source="empty"), {}),  # absent or empty: left out
        (FieldMap("gone", source="missing"), {}),
    ],
    ids=["rename", "constant", "pattern", "named", "translate", "empty", "missing"],
)
def test_each_mapping_operation(rule, expected):
    assert apply(RecordMap("x", (rule,)), RECORD, {"DT": "%Y-%m-%d %H:%M:%S"}) == (expected, [])


def test_take_from_another_field_keeps_map_order_and_reads_a_source_twice():
    rules = (FieldMap("b", source="cycle"), FieldMap("a", source="cycle"))
    fields, problems = apply(RecordMap("x", rules), RECORD)
    assert (list(fields.items()), problems) == ([("b", "C-1"), ("a", "C-1")], [])


def test_mapping_problems_name_the_field_never_the_value():
    rules = (
        FieldMap("status", source="cycle", translate={"ok": "0"}),
        FieldMap("time", source="cycle", format="%Y"),
        FieldMap("day", source="at", format="D"),
    )
    _, problems = apply(RecordMap("x", rules), RECORD)
    assert problems == [
        "status: cycle has no translation",
        "time: cycle is not an ISO 8601 date-time",
        "day: no format named 'D'",
    ]
    with pytest.raises(ValueError, match="exactly one of source and constant"):
        FieldMap("x", source="a", constant="b")


# --- field files ---------------------------------------------------------------------------

GOOD = """
[tables.push]
fields = [
  { name = "code", type = "VC(8)", required = true, description = "编号" },
  { name = "kind", type = "C(1)", choices = ["0", "1"] },
  { name = "items", type = "array", children = [{ name = "name", type = "S..4" }] },
]

[maps."domain.thing"]
endpoint = "push"
fields = [
  { target = "code", source = "id" },
  { target = "kind", source = "state", translate = { ok = "0", broken = "1" } },
]
"""


def test_a_field_file_gives_tables_and_maps(tmp_path: Path):
    path = tmp_path / "platform.toml"
    path.write_text(GOOD, "utf-8")
    loaded = load_field_file(path)
    push = loaded.tables["push"]
    assert list(push) == ["code", "kind", "items"]
    assert push["code"] == Field("code", "VC(8)", True, "编号")
    assert list(push["items"].children) == ["name"]
    fields, problems = apply(loaded.maps["domain.thing"], {"id": "A1", "state": "ok"})
    assert (fields, problems) == ({"code": "A1", "kind": "0"}, [])
    assert validate(push, fields, Checks()) == []


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("tables = 3", "tables: must be a table"),
        ("[other]", "other: unknown key (tables, maps)"),
        ("[tables.push]", "tables.push.fields: missing"),
        ("[tables.push]\nfields = [{ type = 'S..1' }]", "tables.push.fields[0].name: missing"),
        (
            "[tables.push]\nfields = [{ name = 'a', type = 'VARCHAR' }]",
            "tables.push.fields[0].type: unknown type 'VARCHAR'",
        ),
        (
            "[tables.push]\nfields = [{ name = 'a', type = 'S..1', required = 'yes' }]",
            "tables.push.fields[0].required: must be true or false",
        ),
        (
            "[tables.push]\nfields = [{ name = 'a', type = 'S..1', size = 3 }]",
            "tables.push.fields[0].size: unknown key (",
        ),
        (
            "[tables.push]\nfields = [{ name = 'a', type = 'S..1' }, { name = 'a', type = 'N.1' }]",
            "tables.push.fields[1].name: 'a' listed twice",
        ),
        (
            "[tables.push]\nfields = [{ name = 'a', type = 'array', children = [{ name = 'b' }] }]",
            "tables.push.fields[0].children[0].type: missing",
        ),
        (
            "[tables.push]\nfields = []\n[maps.k]\nendpoint = 'pull'\nfields = []",
            "maps.k.endpoint: 'pull' is not a table of this file",
        ),
        ("[maps.k]\nendpoint = 'x'\nfields = [{ target = 'a' }]", "maps.k.fields[0]: give exactly"),
        (
            "[maps.k]\nendpoint = 'x'\nfields = [{ target = 'a', constant = true }]",
            "maps.k.fields[0].constant: must be a string or a number",
        ),
        (
            "[maps.k]\nendpoint = 'x'\nfields = [{ target = 'a', source = 'b', translate = 1 }]",
            "maps.k.fields[0].translate: must be a table",
        ),
        ("[maps.k]\nfields = 1", "maps.k.fields: must be an array"),
        (
            "[maps.k]\nfields = [{ target = 'a', source = 'b', each = 'nope' }]",
            "maps.k.fields[0].each: 'nope' is not a map of this file",
        ),
        (
            "[maps.k]\nfields = [{ target = 'a', source = 'b', each = 'j' }]\n"
            "[maps.j]\nfields = [{ target = 'a', source = 'b', each = 'k' }]",
            "maps.j.fields[0].each: 'k' maps itself",
        ),
        (
            "[maps.k]\nfields = [{ target = 'a', source = 'b', each = 'j', format = 'DT' }]\n"
            "[maps.j]\nfields = []",
            "maps.k.fields[0]: each maps a source list, without translate/format",
        ),
        ("tables = [", "toml: "),
    ],
)
def test_a_bad_field_file_says_file_key_and_reason(text, error):
    with pytest.raises(FieldFileError) as caught:
        parse_field_file(text, "platform.toml")
    assert str(caught.value).startswith(f"platform.toml: {error}")


def test_an_unreadable_field_file_is_named(tmp_path: Path):
    missing = tmp_path / "absent.toml"
    with pytest.raises(FieldFileError, match=f"^{missing}: FileNotFoundError: cannot be read$"):
        load_field_file(missing)


def test_nested_sources_and_targets_and_a_map_for_each_element():
    loaded = parse_field_file(
        """
[maps.exam]
endpoint = "push"
fields = [
  { target = "examNo", source = "exam_no" },
  { target = "patientInfo.name", source = "patient.name" },
  { target = "patientInfo.sex", source = "patient.sex", translate = { male = "男" } },
  { target = "examInfo.examItemList", source = "order.items", each = "item" },
  { target = "reportList.impression", source = "report.impression" },
]
[maps.item]
fields = [{ target = "itemName", source = "name" }, { target = "itemCode", source = "code" }]
""",
        "p.toml",
    )
    record: dict[str, Any] = {
        "exam_no": "E1",
        "patient": {"name": "张三", "sex": "male"},
        "order": {"items": [{"name": "胸部CT", "code": "C1"}, {"name": "腹部CT"}]},
    }
    fields, problems = apply(loaded.maps["exam"], record)
    assert problems == []
    # No report in the record: no reportList object in the request.
    assert fields == {
        "examNo": "E1",
        "patientInfo": {"name": "张三", "sex": "男"},
        "examInfo": {
            "examItemList": [{"itemName": "胸部CT", "itemCode": "C1"}, {"itemName": "腹部CT"}]
        },
    }
    record["order"] = {"items": [{"name": "x"}, {"code": 1}], "other": 1}
    record["patient"]["sex"] = "unknown"
    _, problems = apply(loaded.maps["exam"], record)
    assert problems == ["patientInfo.sex: patient.sex has no translation"]
    record["order"] = {"items": "胸部CT"}
    _, problems = apply(loaded.maps["exam"], record)
    assert problems == [
        "patientInfo.sex: patient.sex has no translation",
        "examInfo.examItemList: order.items is not a list",
    ]
