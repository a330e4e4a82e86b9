"""The neutral records the reprocessing domain queues: its own words, mapped by each uplink.

Every payload carries `vocabulary` = REPROCESSING_RECORDS and, when the domain configures one,
the institution it belongs to (`institution_code`, `institution_credit_code`; else the uplink
sends its own); times are ISO 8601 with the offset of the
domain's time zone (`reprocessing.timezone`). The message kind names the record; its fields:
"""

from __future__ import annotations

from typing import Final

REPROCESSING_RECORDS: Final = "reprocessing/1"
"""The `vocabulary` of a neutral record; a payload without it predates them (platform fields)."""

RECORD_FIELDS: Final[dict[str, dict[str, str]]] = {
    "uploadReadData": {
        "cycle_id": "the cleaning cycle (make_clean_id)",
        "at": "when the scope was read (a tap, or a washer phase's start)",
        "scope_rfid": "the scope's tag",
        "reader_id": "the platform's id of the reader (or washer phase)",
        "user": "who tapped, else the default upload user",
    },
    "uploadUseStepData": {
        "cycle_id": "the cycle the scope was cleaned in ('' when none)",
        "patient_id": "the patient's HIS number",
        "patient_name": "the patient's name (optional)",
        "scope_number": "the scope's number",
        "user": "who used it",
    },
    "uploadEnzymeWashData": {
        "cycle_id": "the cycle",
        "scope_ref": "the scope as reprocessing.scope_ref names it (tag or number)",
        "scope_number": "the scope's number (optional: records queued before; also below)",
        "scope_rfid": "the scope's tag (optional)",
        "scope_steel_number": "its steel-stamp number, when configured (optional)",
        "user": "who washed",
        "started_at": "start of the enzyme step",
        "ended_at": "its end",
        "temperature_c": "temperature, °C, as text (optional)",
    },
    "sterProcess": {
        "cycle_id": "the cycle",
        "scope_ref": "the scope as reprocessing.scope_ref names it",
        "scope_number": "the scope's number (optional: records queued before; also below)",
        "scope_rfid": "the scope's tag (optional)",
        "scope_steel_number": "its steel-stamp number, when configured (optional)",
        "user": "who disinfected",
        "started_at": "start of the step",
        "ended_at": "its end",
        "agent": "disinfectant or sterilant",
        "ratio_number": "the disinfectant batch (optional)",
    },
    "endoscopeSave": {
        "cabinet": "the storage cabinet",
        "scope_ref": "the scope as reprocessing.scope_ref names it",
        "scope_number": "the scope's number (optional: records queued before; also below)",
        "scope_rfid": "the scope's tag (optional)",
        "scope_steel_number": "its steel-stamp number, when configured (optional)",
        "stored_at": "put in",
        "taken_at": "taken out",
    },
    "addEndoSocopeInfo": {
        "scope_number": "number",
        "scope_rfid": "tag",
        "type_name": "type (optional)",
        "brand": "brand (optional)",
        "steel_number": "steel-stamp number (optional)",
        "alias": "alias (optional)",
        "bought_on": "purchase date, ISO 8601 (optional)",
        "durable_years": "service life in years (optional)",
        "scope_status": "0 in service, 1 defective",
    },
    "addCardReaderInfo": {
        "reader_id": "the platform's id of the reader (or washer phase)",
        "step_id": "the step it records",
        "step_name": "the step's name",
    },
    "addCleanStepInfo": {
        "step_id": "the step",
        "step_name": "its name",
        "order": "its place in the cycle",
        "min_interval_s": "shortest time since the step before, seconds (optional)",
        "parent": "the parent step (optional)",
    },
    "uploadDisinfectData": {
        "ratio_number": "the disinfectant batch tested",
        "duration_min": "disinfection time, minutes",
        "disinfectant": "a Disinfectant value (agent.vocabulary.steps)",
        "photo_url": "where the test strip's photo is served (optional)",
        "tested_at": "when it was tested",
        "frequency": "tests a day, as text",
        "result": "pass or fail",
    },
    "rinseWater": {
        "device": "the water device",
        "status": "normal or fault",
        "filter": "its filter: normal or replace (optional)",
    },
    "cleaningEffectTesting": {
        "scope_ref": "the scope as reprocessing.scope_ref names it (else the number entered)",
        "scope_number": "the scope's number (optional: a configured scope)",
        "scope_rfid": "the scope's tag (optional)",
        "scope_steel_number": "its steel-stamp number, when configured (optional)",
        "tested_at": "when it was tested",
        "inspector": "who tested",
        "photo_url_1": "the first photo's address; photo_url_2, photo_url_3 optional",
        "result": "pass or fail",
    },
}
