"""The domain's neutral records (agent.vocabulary.records) → the seed's fields, as data."""

from __future__ import annotations

from agent.uplinks.kit.fieldmap import FieldMap, RecordMap
from agent.vocabulary.steps import Disinfectant

_INSTITUTION = (
    FieldMap("uniqueCode", source="institution_code"),
    FieldMap("creditCode", source="institution_credit_code"),
)
_RESULT = {"fail": 0, "pass": 1}
_STATUS = {"normal": 1, "fault": 2, "replace": 2}


def _map(endpoint: str, *fields: FieldMap) -> RecordMap:
    return RecordMap(endpoint, (*fields, *_INSTITUTION))


MAPS: dict[str, RecordMap] = {
    "uploadReadData": _map(
        "uploadReadData",
        FieldMap("cleanId", source="cycle_id"),
        FieldMap("collectionTime", source="at", format="DT"),
        FieldMap("deviceRfidNumber", source="scope_rfid"),
        FieldMap("readerId", source="reader_id"),
        FieldMap("uploadUser", source="user"),
    ),
    "uploadUseStepData": _map(
        "uploadUseStepData",
        FieldMap("cleanId", source="cycle_id"),
        FieldMap("identityId", source="patient_id"),
        FieldMap("name", source="patient_name"),
        FieldMap("number", source="scope_number"),
        FieldMap("uploadUser", source="user"),
    ),
    "uploadEnzymeWashData": _map(
        "uploadEnzymeWashData",
        FieldMap("rfidNumber", source="scope_ref"),
        FieldMap("userName", source="user"),
        FieldMap("cleanId", source="cycle_id"),
        FieldMap("startTime", source="started_at", format="DT"),
        FieldMap("endTime", source="ended_at", format="DT"),
        FieldMap("temp", source="temperature_c"),
    ),
    "sterProcess": _map(
        "sterProcess",
        FieldMap("cleanId", source="cycle_id"),
        FieldMap("rfidNumber", source="scope_ref"),
        FieldMap("userName", source="user"),
        FieldMap("startTime", source="started_at", format="date"),
        FieldMap("endTime", source="ended_at", format="date"),
        FieldMap("type", source="agent", translate={"disinfectant": 0, "sterilant": 1}),
        FieldMap("ratioNumber", source="ratio_number"),
    ),
    "endoscopeSave": _map(
        "endoscopeSave",
        FieldMap("storagetNumber", source="cabinet"),
        FieldMap("rfidNumber", source="scope_ref"),
        FieldMap("storeTime", source="stored_at", format="date"),
        FieldMap("takeoutTime", source="taken_at", format="date"),
    ),
    "addEndoSocopeInfo": _map(
        "addEndoSocopeInfo",
        FieldMap("number", source="scope_number"),
        FieldMap("rfidNumber", source="scope_rfid"),
        FieldMap("typeName", source="type_name"),
        FieldMap("model", source="brand"),
        FieldMap("steelNumber", source="steel_number"),
        FieldMap("aliasName", source="alias"),
        FieldMap("buyDate", source="bought_on", format="%Y-%m-%d 00:00:00"),
        FieldMap("durableYears", source="durable_years"),
        FieldMap("status", source="scope_status"),
    ),
    "addCardReaderInfo": _map(
        "addCardReaderInfo",
        FieldMap("rfidNumber", source="reader_id"),
        FieldMap("stepId", source="step_id"),
        FieldMap("stepName", source="step_name"),
        FieldMap("status", constant=0),  # the agent knows no broken reader
    ),
    "addCleanStepInfo": _map(
        "addCleanStepInfo",
        FieldMap("stepId", source="step_id"),
        FieldMap("stepName", source="step_name"),
        FieldMap("orderId", source="order"),
        FieldMap("orderTime", source="min_interval_s"),
        FieldMap("parentId", source="parent"),
    ),
    "uploadDisinfectData": _map(
        "uploadDisinfectData",
        FieldMap("ratioNumber", source="ratio_number"),
        FieldMap("disinfectDuration", source="duration_min"),
        FieldMap(
            "disinfectantConc",
            source="disinfectant",
            translate={d.value: d.platform_code for d in Disinfectant},
        ),
        FieldMap("imageUrl", source="photo_url"),
        FieldMap("uploadTime", source="tested_at", format="date"),
        FieldMap("frequency", source="frequency"),
        FieldMap("result", source="result", translate=_RESULT),
    ),
    "rinseWater": _map(
        "rinseWater",
        FieldMap("wteNumber", source="device"),
        FieldMap("status", source="status", translate=_STATUS),
        FieldMap("dfcwStatus", source="filter", translate=_STATUS),
    ),
    "cleaningEffectTesting": _map(
        "cleaningEffectTesting",
        FieldMap("rfidNumber", source="scope_ref"),
        FieldMap("testingTime", source="tested_at", format="date"),
        FieldMap("inspector", source="inspector"),
        FieldMap("pic1", source="photo_url_1"),
        FieldMap("pic2", source="photo_url_2"),
        FieldMap("pic3", source="photo_url_3"),
        FieldMap("result", source="result", translate=_RESULT),
    ),
}
