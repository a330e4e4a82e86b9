"""Neutral reprocessing records → the seed's fields; records queued before the upgrade still go."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest

from agent.uplinks.zhejiang_endoscope import codec
from agent.uplinks.zhejiang_endoscope.codec import SCOPE_NAMES
from agent.uplinks.zhejiang_endoscope.config import SCOPE_REF_DEFAULTS
from agent.uplinks.zhejiang_endoscope.examples import EXAMPLES
from agent.uplinks.zhejiang_endoscope.fields import AUTH_FIELDS, ENDPOINTS
from agent.uplinks.zhejiang_endoscope.records import MAPS
from agent.vocabulary.records import RECORD_FIELDS, REPROCESSING_RECORDS
from agent.vocabulary.steps import Disinfectant
from agent.web.dashboard.views.endoscopes import last_use
from tests.unit.test_zhejiang_fields import CREDIT, UNIQUE, config

INSTITUTION = {
    "vocabulary": REPROCESSING_RECORDS,
    "institution_code": UNIQUE,
    "institution_credit_code": CREDIT,
}
NEUTRAL: dict[str, dict[str, Any]] = {
    "uploadReadData": {
        "cycle_id": "C20240101-0001",
        "at": "2024-01-01T08:00:00+08:00",
        "scope_rfid": "E200001",
        "reader_id": "192.168.1.21",
        "user": "N001",
    },
    "sterProcess": {
        "cycle_id": "C20240101-0001",
        "scope_ref": "E200001",
        "user": "N001",
        "started_at": "2024-01-01T08:10:00+08:00",
        "ended_at": "2024-01-01T08:15:00+08:00",
        "agent": "disinfectant",
        "ratio_number": "RN20240101",
    },
    "rinseWater": {"device": "W01", "status": "normal", "filter": "replace"},
    "addCardReaderInfo": {"reader_id": "R100001", "step_id": 1, "step_name": "初洗"},
}
OLD: dict[str, dict[str, Any]] = {  # the seed's examples, as queued before the upgrade
    **{kind: EXAMPLES[kind] for kind in ("uploadReadData", "sterProcess", "addCardReaderInfo")},
    "rinseWater": {**EXAMPLES["rinseWater"], "dfcwStatus": 2},
}


@pytest.mark.parametrize("kind", list(NEUTRAL))
def test_a_neutral_record_and_its_pre_upgrade_shape_make_the_same_form(kind):
    neutral, problems = codec.build_form(kind, {**INSTITUTION, **NEUTRAL[kind]}, config())
    assert problems == []
    old, problems = codec.build_form(kind, OLD[kind], config())
    assert problems == []
    assert neutral == old
    assert (neutral["uniqueCode"], neutral["creditCode"]) == (UNIQUE, CREDIT)


def test_neutral_times_follow_the_configured_formats():
    formats = config(time_format="%Y%m%d%H%M%S", date_format="%Y-%m-%d")
    read, problems = codec.build_form(
        "uploadReadData", {**INSTITUTION, **NEUTRAL["uploadReadData"]}, formats
    )
    assert problems == [] and read["collectionTime"] == "20240101080000"
    ster, problems = codec.build_form(
        "sterProcess", {**INSTITUTION, **NEUTRAL["sterProcess"]}, formats
    )
    assert problems == [] and (ster["startTime"], ster["endTime"]) == ("2024-01-01", "2024-01-01")


def test_a_neutral_record_that_cannot_be_mapped_is_not_sent():
    record = {**INSTITUTION, **NEUTRAL["sterProcess"], "agent": "steam", "started_at": "08:10"}
    form, problems = codec.build_form("sterProcess", record, config())
    assert form == {}
    assert problems == [
        "startTime: started_at is not an ISO 8601 date-time",
        "type: agent has no translation",
    ]


def test_a_neutral_record_still_meets_the_table():
    record = {**INSTITUTION, **NEUTRAL["uploadReadData"], "reader_id": "R" * 65}
    _, problems = codec.build_form("uploadReadData", record, config())
    assert problems == ["readerId: 65 characters, at most 64 allowed (S..64)"]


def test_every_map_fills_fields_of_its_table_from_the_vocabulary():
    assert set(MAPS) == set(ENDPOINTS) == set(RECORD_FIELDS)
    common = {"institution_code", "institution_credit_code"}
    for kind, record_map in MAPS.items():
        assert record_map.endpoint == kind
        names = {spec.name for spec in ENDPOINTS[kind]} - set(AUTH_FIELDS)
        assert {rule.target for rule in record_map.fields} <= names, kind
        sources = {rule.source for rule in record_map.fields if rule.source}
        vocabulary = set(RECORD_FIELDS[kind])
        if kind == "cleaningEffectTesting":
            vocabulary |= {"photo_url_2", "photo_url_3"}
        if kind in SCOPE_REF_DEFAULTS:  # the uplink picks one of them as scope_ref (scope_refs)
            vocabulary -= set(SCOPE_NAMES.values())
        assert sources == vocabulary | common, kind


@pytest.mark.parametrize(
    "payload",
    [
        {**INSTITUTION, "patient_id": "HIS1", "patient_name": "张三", "user": "N001"},
        {"identityId": "HIS1", "name": "张三", "uploadUser": "N001"},  # queued before the upgrade
    ],
    ids=["neutral", "pre-upgrade"],
)
def test_the_dashboard_reads_the_last_use_in_either_shape(payload):
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, uplink, order_key, kind, payload)")
    conn.execute(
        "INSERT INTO outbox (uplink, order_key, kind, payload) VALUES (?, ?, ?, ?)",
        ("zj", "scope:GIF-1", "uploadUseStepData", json.dumps(payload)),
    )
    assert last_use(conn, "zj", "GIF-1") == ("HIS1", "张三", "N001")


def test_the_disinfectant_dictionary_of_the_map_file_matches_the_vocabulary():
    rule = next(r for r in MAPS["uploadDisinfectData"].fields if r.target == "disinfectantConc")
    assert dict(rule.translate) == {d.value: d.platform_code for d in Disinfectant}


NAMED = {**NEUTRAL["sterProcess"], "scope_ref": "E200001", "scope_number": "GIF-001",
         "scope_rfid": "E200001", "scope_steel_number": "H290123"}  # fmt: skip


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        (None, "GIF-001"),  # the default: the seed's 内镜编号
        ("number", "GIF-001"),
        ("rfid", "E200001"),
        ("steel_number", "H290123"),
        ("domain", "E200001"),  # [domains.*] scope_ref (here: the tag)
    ],
)
def test_each_endpoint_names_the_scope_as_its_scope_refs_choice_says(choice, sent):
    refs = {} if choice is None else {"sterProcess": choice}
    form, problems = codec.build_form(
        "sterProcess", {**INSTITUTION, **NAMED}, config(scope_refs=refs)
    )
    assert (form.get("rfidNumber"), problems) == (sent, [])


def test_a_scope_without_the_chosen_name_is_refused_and_an_old_record_keeps_its_own():
    record = {**INSTITUTION, **NAMED}
    del record["scope_steel_number"]
    steel = config(scope_refs={"endoscopeSave": "steel_number", "sterProcess": "steel_number"})
    _, problems = codec.build_form("sterProcess", record, steel)
    assert problems == [
        "rfidNumber: the scope has no steel_number (scope_refs.sterProcess = 'steel_number')"
    ]
    old = {**INSTITUTION, **NEUTRAL["sterProcess"]}  # queued before records named the scope so
    form, problems = codec.build_form("sterProcess", old, steel)
    assert (form["rfidNumber"], problems) == ("E200001", [])


def test_scope_refs_names_only_endpoints_with_a_scope_field():
    with pytest.raises(ValueError, match="no scope to choose in rinseWater"):
        config(scope_refs={"rinseWater": "number"})
