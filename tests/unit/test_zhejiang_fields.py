"""The seed's field tables as data: parsing of its types, and every kind of violation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.uplinks.zhejiang_endoscope import codec
from agent.uplinks.zhejiang_endoscope.config import ZhejiangEndoscopeConfig
from agent.uplinks.zhejiang_endoscope.examples import EXAMPLES
from agent.uplinks.zhejiang_endoscope.fields import (
    AUTH_FIELDS,
    ENDPOINTS,
    INSTITUTION_FIELDS,
    FieldSpec,
    validate,
)

UNIQUE = "330100123"
CREDIT = "12330000470000000X"
SEED_ENDPOINTS = [
    "uploadReadData",
    "uploadUseStepData",
    "addEndoSocopeInfo",
    "addCardReaderInfo",
    "addCleanStepInfo",
    "uploadEnzymeWashData",
    "uploadDisinfectData",
    "sterProcess",
    "rinseWater",
    "endoscopeSave",
    "cleaningEffectTesting",
]


def config(**overrides: Any) -> ZhejiangEndoscopeConfig:
    return ZhejiangEndoscopeConfig.model_validate(
        {
            "type": "zhejiang_endoscope",
            "base_url": "http://127.0.0.1:9/openapi",
            "access_key": "ak",
            "access_secret": "sk-secret",
            "unique_code": UNIQUE,
            "credit_code": CREDIT,
            **overrides,
        }
    )


def domain_fields(endpoint: str) -> list[FieldSpec]:
    skip = {*AUTH_FIELDS, *INSTITUTION_FIELDS}
    return [s for s in ENDPOINTS[endpoint] if s.name not in skip]


def cases(predicate: Any) -> list[Any]:
    return [
        pytest.param(e, s, id=f"{e}.{s.name}")
        for e in ENDPOINTS
        for s in domain_fields(e)
        if predicate(s)
    ]


def test_every_endpoint_of_the_seed_has_a_table_and_an_example():
    assert list(ENDPOINTS) == SEED_ENDPOINTS
    assert set(EXAMPLES) == set(ENDPOINTS)
    for endpoint, table in ENDPOINTS.items():
        names = [s.name for s in table]
        assert len(names) == len(set(names)), endpoint
        assert names[0] == "sign"
        assert "uniqueCode" in names and "creditCode" in names


@pytest.mark.parametrize(
    ("seed_type", "base", "length", "exact"),
    [
        ("S..64", "S", 64, False),
        ("S.100", "S", 100, False),
        ("S9", "S", 9, True),
        ("S18", "S", 18, True),
        ("N.1", "N", 1, False),
        ("N..32", "N", 32, False),
        ("DT", "T", None, False),
        ("date", "T", None, False),
    ],
)
def test_seed_types_are_read_as_stated(seed_type, base, length, exact):
    spec = FieldSpec("x", seed_type, True, "")
    assert (spec.base, spec.max_length, spec.exact) == (base, length, exact)


@pytest.mark.parametrize("endpoint", SEED_ENDPOINTS)
def test_each_example_builds_a_valid_form_with_the_institution_codes(endpoint):
    form, problems = codec.build_form(endpoint, EXAMPLES[endpoint], config())
    assert problems == []
    assert form["uniqueCode"] == UNIQUE and form["creditCode"] == CREDIT
    assert all(isinstance(v, str) for v in form.values())
    assert not set(form) & set(AUTH_FIELDS)


def test_the_payloads_own_institution_code_wins_and_empty_optionals_are_left_out():
    payload = {**EXAMPLES["sterProcess"], "creditCode": "91330000MA00000001", "ratioNumber": ""}
    form, problems = codec.build_form("sterProcess", payload, config())
    assert problems == []
    assert form["creditCode"] == "91330000MA00000001"
    assert "ratioNumber" not in form


def test_numbers_are_written_without_a_trailing_point_zero():
    payload = {**EXAMPLES["uploadDisinfectData"], "disinfectDuration": 5.0, "result": 1.0}
    form, problems = codec.build_form("uploadDisinfectData", payload, config())
    assert problems == []
    assert (form["disinfectDuration"], form["result"]) == ("5", "1")


@pytest.mark.parametrize(("endpoint", "spec"), cases(lambda s: s.required))
@pytest.mark.parametrize("absent", ["missing", None, "", "  "])
def test_a_missing_required_field_is_named(endpoint, spec, absent):
    payload = dict(EXAMPLES[endpoint])
    if absent == "missing":
        payload.pop(spec.name, None)
    else:
        payload[spec.name] = absent
    _, problems = codec.build_form(endpoint, payload, config())
    assert problems == [f"{spec.name}: required field is missing"]


@pytest.mark.parametrize(("endpoint", "spec"), cases(lambda s: s.base == "S"))
def test_an_over_long_string_is_named(endpoint, spec):
    payload = {**EXAMPLES[endpoint], spec.name: "x" * (spec.max_length + 1)}
    _, problems = codec.build_form(endpoint, payload, config())
    assert len(problems) == 1
    assert problems[0].startswith(f"{spec.name}: {spec.max_length + 1} characters")


@pytest.mark.parametrize(("endpoint", "spec"), cases(lambda s: s.base == "N"))
def test_a_number_with_too_many_digits_or_no_number_is_named(endpoint, spec):
    for bad in ("1" * (spec.max_length + 1), "abc", "1e3", float("nan")):
        payload = {**EXAMPLES[endpoint], spec.name: bad}
        _, problems = codec.build_form(endpoint, payload, config())
        assert len(problems) == 1 and problems[0].startswith(f"{spec.name}: "), (bad, problems)


@pytest.mark.parametrize(("endpoint", "spec"), cases(lambda s: s.base == "T"))
def test_a_date_time_in_another_format_is_named(endpoint, spec):
    for bad in ("2024/01/01 08:00", "1704067200000", "2024-01-01T08:00:00"):
        payload = {**EXAMPLES[endpoint], spec.name: bad}
        _, problems = codec.build_form(endpoint, payload, config())
        assert problems == [f"{spec.name}: not a date-time in the format '%Y-%m-%d %H:%M:%S'"], bad


def test_dt_and_date_formats_are_configurable_apart():
    formats = config(time_format="%Y%m%d%H%M%S", date_format="%Y-%m-%d")
    payload = {**EXAMPLES["endoscopeSave"], "storeTime": "2024-01-01", "takeoutTime": "2024-01-02"}
    assert codec.build_form("endoscopeSave", payload, formats)[1] == []
    payload = {**EXAMPLES["uploadReadData"], "collectionTime": "20240101080000"}
    assert codec.build_form("uploadReadData", payload, formats)[1] == []
    payload = {**EXAMPLES["uploadReadData"], "collectionTime": "2024-01-01"}
    assert codec.build_form("uploadReadData", payload, formats)[1] == [
        "collectionTime: not a date-time in the format '%Y%m%d%H%M%S'"
    ]


@pytest.mark.parametrize(("endpoint", "spec"), cases(lambda s: True))
@pytest.mark.parametrize("bad", [True, ["a"], {"a": 1}], ids=["bool", "list", "dict"])
def test_a_value_of_the_wrong_type_is_named(endpoint, spec, bad):
    payload = {**EXAMPLES[endpoint], spec.name: bad}
    _, problems = codec.build_form(endpoint, payload, config())
    assert problems == [f"{spec.name}: bad type {type(bad).__name__} (expected {spec.seed_type})"]


def test_a_float_in_a_string_field_is_a_bad_type():
    payload = {**EXAMPLES["rinseWater"], "wteNumber": 1.5}
    _, problems = codec.build_form("rinseWater", payload, config())
    assert problems == ["wteNumber: bad type float (expected S..13)"]


@pytest.mark.parametrize(
    ("endpoint", "name", "bad"),
    [
        ("addEndoSocopeInfo", "status", 2),
        ("rinseWater", "status", 0),
        ("uploadDisinfectData", "disinfectantConc", 7),
        ("sterProcess", "type", 3),
        ("cleaningEffectTesting", "result", 9),
    ],
)
def test_a_value_outside_the_seeds_enumeration_is_named(endpoint, name, bad):
    _, problems = codec.build_form(endpoint, {**EXAMPLES[endpoint], name: bad}, config())
    assert len(problems) == 1 and problems[0].startswith(f"{name}: must be one of")


def test_institution_codes_must_have_the_seeds_exact_lengths():
    payload = {**EXAMPLES["rinseWater"], "uniqueCode": "12345678"}
    _, problems = codec.build_form("rinseWater", payload, config())
    assert problems == ["uniqueCode: 8 characters, exactly 9 required"]


def test_unknown_fields_auth_fields_and_unknown_endpoints_are_named():
    payload = {**EXAMPLES["rinseWater"], "wteNumbr": "W01", "accessToken": "t", "sign": "s"}
    _, problems = codec.build_form("rinseWater", payload, config())
    assert problems == [
        "wteNumbr: not a field of rinseWater",
        "sign: set by the uplink, not the payload",
        "accessToken: set by the uplink, not the payload",
    ]
    assert codec.build_form("uploadData", {}, config())[1] == [
        "unknown endpoint 'uploadData' (not in the seed)"
    ]


def test_validate_reports_every_violation_at_once():
    problems = validate("rinseWater", {"status": 5, "uniqueCode": "x" * 9})
    assert problems == [
        "wteNumber: required field is missing",
        "status: must be one of 1, 2",
        "creditCode: required field is missing",
    ]


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("unique_code", "12345678", "at least 9"),
        ("credit_code", "12345", "should match pattern"),
        ("sign_scheme", "sha1", "must be one of: md5_key_secret_timestamp"),
        ("auth_where_unlisted", "query", "'field', 'header' or 'omit'"),
    ],
)
def test_config_checks_the_institution_codes_and_the_scheme(key, value, reason):
    with pytest.raises(ValueError, match=reason):
        config(**{key: value})


def test_the_platform_page_renders_every_field_of_every_endpoint():
    page = (Path(__file__).parents[2] / "docs/platforms/zhejiang_endoscope.md").read_text("utf-8")
    sections = page.split("#### ")[1:]
    assert [s.split("`")[1] for s in sections] == list(ENDPOINTS)
    for section, (endpoint, table) in zip(sections, ENDPOINTS.items(), strict=True):
        rows = [line for line in section.splitlines() if line.startswith("| `")]
        assert len(rows) == len(table), endpoint
        for row, spec in zip(rows, table, strict=True):
            required = "Y" if spec.required else "N"
            assert row.startswith(f"| `{spec.name}` | `{spec.seed_type}` | {required} |"), row
            assert spec.description in row
