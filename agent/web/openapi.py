"""The local API described in OpenAPI 3.1, built from the pydantic models its routes validate with.

`python -m agent.web.openapi` prints it (docs/openapi.json is that output); the running agent
serves it at GET /api/v1/openapi.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel, RootModel

from agent import __version__
from agent.imaging.exam_document import Exam
from agent.inputs import EARLIEST_YEAR
from agent.lab.documents import LabDevice, LabReport, QcRun, Recognition, Viewing
from agent.vocabulary.doctors import DoctorLogin
from agent.web.apply_forms import ApplyFormQuery
from agent.web.context import answer
from agent.web.deletions import Deletion
from agent.web.exams import MAX_LIMIT
from agent.web.models import (
    Acknowledgement,
    BulkAcknowledgement,
    Override,
    PatientForUse,
    Snooze,
)
from agent.web.quality import CleaningEffectTest, DisinfectantTest, RinseWaterCheck

PATH = "/api/v1/openapi.json"
# What agent.inputs.Body refuses beyond the models' own constraints, said in the schema's terms:
# no control or bidirectional-control characters, dates in the years 2000-2099.
PRINTABLE = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069]*$"
IN_YEARS = f"^(?:{str(EARLIEST_YEAR)[:2]})[0-9]{{2}}-"
FORM_TEXT = {  # what pydantic reads from a form's text for a yes/no or a number
    "boolean": "^(?i:true|false|yes|no|on|off|t|f|y|n|1|0)$",
    "number": "^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+)?$",
    "integer": "^[+-]?[0-9]+$",
}
PROBLEM = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "problems": {"type": "array"}},
}
REFUSALS = {
    "400": "The body cannot be read (not UTF-8, not JSON, too deep, a broken form), or a"
    " parameter is out of range",
    "401": "No or a wrong token",
    "413": "The body is larger than [api] max_body",
    "415": "A content type the route does not take",
    "422": "A body that is not what the route takes; every problem is listed",
}


class PlatformParameters(RootModel[dict[str, str | float | None]]):
    """A platform's parameters by name, as its seed names them (IDCAS pages and WebApis:
    docs/platforms/idcas_archive.md); each route names a wrong or missing one with 422."""


class HisOrder(RootModel[dict[str, Any]]):
    """An apply form for the provincial platform (seed 003 §3.4.1.1): {Action, Patient, Exam}
    with the SynApplyInfo XML's element names; coded elements as {code, name}, ExamItems and
    Samples as arrays of objects, ExamOrgan as an array of names."""


@dataclass(frozen=True, slots=True)
class Operation:
    """One route: what it does, the body it takes, its parameters, what it answers."""

    method: str
    path: str
    summary: str
    body: type[BaseModel] | None = None
    photos: bool = False  # also multipart/form-data with `photo` files (quality records)
    files: bool = False  # a report file: multipart `file` parts, or the raw file itself
    parameters: list[dict[str, Any]] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=lambda: {"200": "OK"})
    content: dict[str, Any] | None = None  # a body other than JSON (CSV, a lab PDF)


def _in_path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


CREATED = {"201": "Journaled; forwarded from now on"}
IDCAS_DOWN = "The IDCAS platform cannot be reached now (or gives no token)"
IDCAS_RELAYED = {
    "200": "The platform's {code, msg, data}",
    "404": "No such WebApi",
    "502": "The platform refused: {error, code, msg}",
    "503": IDCAS_DOWN,
}


def _named(name: str) -> dict[str, Any]:
    """A page or WebApi name in the path."""
    return _in_path(name, {"type": "string", "pattern": "^[a-z0-9-]{1,64}$"})


CONTROL = "\\u0000-\\u001f\\u007f"
EXAM_NO = _in_path(
    "exam_no",
    {
        "type": "string",
        "minLength": 1,
        "maxLength": 32,
        "pattern": f"^[^{CONTROL}\\s](?:[^{CONTROL}]*[^{CONTROL}\\s])?$",
    },
)
FILE_NAME = {"type": "string", "pattern": "^[0-9a-f]{64}\\.(pdf|jpg|png|bmp)$"}
REPORT_FILE = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
                "kind": {"enum": ["report_pdf", "report_image"]},
            },
        }
    },
    **{
        kind: {"schema": {"type": "string", "format": "binary"}}
        for kind in ("application/pdf", "image/jpeg", "image/png", "image/bmp")
    },
}
ROW = {"type": "string", "pattern": "^[0-9]{1,18}$"}
LAB_PDF = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {"type": "array", "items": {"type": "string", "format": "binary"}}
            },
        }
    },
    "application/pdf": {"schema": {"type": "string", "format": "binary"}},
}
SHARING_QUERY = {
    "application/json": {
        "schema": {
            "type": "object",
            "description": "id_card_no, patient_name, start_date, end_date (YYYY-MM-DD),"
            " other_org_code, exam_no, report_no, study_uid, domain (exam/lab), region_code:"
            " what the query's map reads",
            "additionalProperties": {"type": "string"},
        }
    }
}
CATALOGUE_CSV = {
    "text/csv": {
        "schema": {
            "type": "string",
            "description": "UTF-8 CSV, header domain,local_code,local_name,platform_code,"
            "platform_name; domain is exam or lab",
        }
    }
}
OPERATIONS = (
    Operation(
        "post",
        "/api/v1/patients",
        "Who the next use of a scope at a reader is for",
        PatientForUse,
        answers=CREATED,
    ),
    Operation("get", "/api/v1/alerts", "Open alerts, newest first"),
    Operation(
        "post",
        "/api/v1/alerts/{alert_id}/acknowledge",
        "A named person acknowledges an open alert",
        Acknowledgement,
        parameters=[_in_path("alert_id", ROW)],
        answers={**CREATED, "404": "No such alert", "409": "Already acknowledged"},
    ),
    Operation(
        "post",
        "/api/v1/alerts/{alert_id}/snooze",
        "A named person snoozes a known condition (not a critical one) for some hours",
        Snooze,
        parameters=[_in_path("alert_id", ROW)],
        answers={**CREATED, "404": "No such alert", "409": "A critical alert is never snoozed"},
    ),
    Operation(
        "post",
        "/api/v1/alerts/acknowledge",
        "A named person acknowledges several open alerts at once",
        BulkAcknowledgement,
        answers={**CREATED, "409": "One of them is not an open alert"},
    ),
    Operation("get", "/api/v1/scopes", "Every scope: cycle, step, verdict, blocked"),
    Operation(
        "post",
        "/api/v1/scopes/{number}/override",
        "A named person releases a blocked scope, with a reason",
        Override,
        parameters=[_in_path("number", {"type": "string"})],
        answers={**CREATED, "404": "No such scope", "409": "The scope is not blocked"},
    ),
    Operation(
        "post", "/api/v1/exams", "An exam and its report from RIS/PACS", Exam, answers=CREATED
    ),
    Operation(
        "get",
        "/api/v1/exams/{exam_no}",
        "One exam's neutral record: patient, order, report, states and times, files",
        parameters=[EXAM_NO],
        answers={"200": "OK", "404": "No such exam"},
    ),
    Operation(
        "post",
        "/api/v1/exams/{exam_no}/files",
        "A report PDF or report image of an exam (multipart `file`, or the raw file)",
        files=True,
        parameters=[
            EXAM_NO,
            {"name": "kind", "in": "query", "schema": {"enum": ["report_pdf", "report_image"]}},
        ],
        answers={**CREATED, "507": "The file could not be stored"},
    ),
    Operation(
        "get",
        "/api/v1/exams/{exam_no}/files",
        "The files attached to an exam",
        parameters=[EXAM_NO],
    ),
    Operation(
        "get",
        "/api/v1/exams/{exam_no}/files/{name}",
        "One file of an exam",
        parameters=[EXAM_NO, _in_path("name", FILE_NAME)],
        answers={
            "200": "The file (application/pdf, image/jpeg, image/png or image/bmp)",
            "404": "No such file for this exam",
        },
    ),
    Operation(
        "get",
        "/api/v1/exams/{number}/qr",
        "The insurance cloud's QR link of an audited report (by exam or accession number)",
        parameters=[_in_path("number", {"type": "string"})],
        answers={"200": "OK", "404": "No QR link (yet) for this exam"},
    ),
    Operation(
        "get",
        "/api/v1/exams/{number}/qr.png",
        "The QR code of that link as a PNG (a qrcode answer's image as the cloud sent it)",
        parameters=[_in_path("number", {"type": "string"})],
        answers={"200": "The image (image/png or image/jpeg)", "404": "No QR link (yet)"},
    ),
    Operation(
        "post",
        "/api/v1/exams/{accession}/deletions",
        "Images PACS deleted (series, instances, or the whole accession): out of the index",
        Deletion,
        parameters=[_in_path("accession", {"type": "string"})],
        answers={**CREATED, "404": "No study with this accession number"},
    ),
    Operation(
        "post",
        "/api/v1/insurance/plugin-launch",
        "The insurance cloud's viewer-plugin launch forms for a doctor (ID number SM2-encrypted)",
        DoctorLogin,
        answers={"200": "{command_line, url, http}"},
    ),
    Operation(
        "get",
        "/api/v1/studies",
        "The studies received last, with their exams and deliveries",
        parameters=[
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            }
        ],
    ),
    Operation(
        "get",
        "/api/v1/studies/{study_uid}",
        "One study: series, exams, deliveries",
        parameters=[_in_path("study_uid", {"type": "string"})],
        answers={"200": "OK", "404": "No such study"},
    ),
    Operation(
        "post",
        "/api/v1/quality/disinfectant-tests",
        "A disinfectant batch's concentration test (at most 1 photo)",
        DisinfectantTest,
        photos=True,
        answers=CREATED,
    ),
    Operation(
        "post",
        "/api/v1/quality/rinse-water",
        "The final-rinse water device's status",
        RinseWaterCheck,
        answers=CREATED,
    ),
    Operation(
        "post",
        "/api/v1/quality/cleaning-effect-tests",
        "A scope's cleaning-effect test (1 to 3 photos)",
        CleaningEffectTest,
        photos=True,
        answers=CREATED,
    ),
    Operation(
        "get",
        "/api/v1/quality/photos/{name}",
        "A stored quality-record photo",
        parameters=[_in_path("name", {"type": "string", "pattern": "^[0-9a-f]{64}\\.(jpg|png)$"})],
        answers={"200": "The photo (image/jpeg or image/png)", "404": "No such photo"},
    ),
    Operation(
        "post",
        "/api/v1/apply-forms/lookup",
        "Ask 基卫 for apply forms (seed 003 §3.1; the agent holds the AES key); journaled, they"
        " give applyNo to exams posted without one. Only with [uplinks.*.jiwei] enabled",
        ApplyFormQuery,
        answers={"200": "{forms: [...]} as 基卫 answered", "502": "基卫 unreachable or refusing"},
    ),
    Operation(
        "get",
        "/api/v1/apply-forms",
        "The 基卫 apply forms looked up so far, newest first",
        parameters=[
            {"name": name, "in": "query", "schema": {"type": "string"}}
            for name in ("fkey", "medicarecode", "yyid00", "businesstype", "type", "applydate")
        ]
        + [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}}],
    ),
    Operation(
        "get",
        "/api/v1/report-viewer-url",
        "The provincial platform's report-viewing URL for HIS (seed 003 §3.4.3, query.htm):"
        " at least one parameter; sick_id and exam_no get the '<医院ID>_' prefix",
        parameters=[
            {"name": name, "in": "query", "schema": {"type": "string"}}
            for name in (
                "pat_local_id",
                "exam_no",
                "sick_id",
                "inpatient_no",
                "outpatient_no",
                "hospital_id",
            )
        ],
        answers={"200": "{url}"},
    ),
    Operation(
        "get",
        "/api/v1/lookback",
        "Clinical lookback (audited): every use of a scope since a time or cycle with the cycle"
        " before it; a patient's scopes; a washer's or disinfectant batch's cycles over a period"
        " and the uses after them (a washer's runs no cycle claimed too: unlinked_run)."
        " Patients masked unless full=true",
        parameters=[
            {
                "name": "kind",
                "in": "query",
                "required": True,
                "schema": {"enum": ["scope", "patient", "washer", "batch"]},
            },
            {
                "name": "subject",
                "in": "query",
                "required": True,
                "schema": {"type": "string"},
                "description": "scope number, RFID or steel number; patient id; washer id; batch",
            },
            {
                "name": "by",
                "in": "query",
                "required": True,
                "schema": {"type": "string"},
                "description": "who asks (kept in the audit trail)",
            },
            *(
                {"name": name, "in": "query", "schema": {"type": "string"}, "description": text}
                for name, text in (
                    ("since", "2026-12-01 or 2026-12-01T08:30 (the centre's wall time)"),
                    ("until", "up to, not including (washer and batch: required with since)"),
                    ("cycle", "scope: from this cycle (cleanId) on, instead of since"),
                )
            ),
            {"name": "format", "in": "query", "schema": {"enum": ["json", "csv"]}},
            {"name": "full", "in": "query", "schema": {"enum": ["true", "false", "1", "0"]}},
        ],
        answers={
            "200": "{question, entries} or the CSV export (Chinese headings)",
            "422": "A missing or malformed value (every problem listed), or a question that"
            " cannot be answered (an unknown cycle, a period without its end)",
        },
    ),
    Operation(
        "post",
        "/api/v1/lab/reports",
        "A lab report with its results from the LIS (uploaded once audited)",
        LabReport,
        answers=CREATED,
    ),
    Operation(
        "post",
        "/api/v1/lab/reports/{report_no}/files",
        "A lab report's PDF (multipart `file`, or the raw PDF); uploaded after the report",
        parameters=[{**EXAM_NO, "name": "report_no"}],
        content=LAB_PDF,
        answers={**CREATED, "507": "The file could not be stored"},
    ),
    Operation(
        "post", "/api/v1/lab/devices", "A lab device (master data)", LabDevice, answers=CREATED
    ),
    Operation("post", "/api/v1/lab/qc", "A lab QC run", QcRun, answers=CREATED),
    Operation(
        "post",
        "/api/v1/lab/catalogue",
        "The exam and lab item catalogue with the platform's codes (CSV); replaces the last",
        content=CATALOGUE_CSV,
        answers={"201": "Journaled: {event_id, items}"},
    ),
    Operation(
        "post",
        "/api/v1/sharing/recognitions",
        "A doctor accepted or refused an outside exam or lab result (mutual recognition)",
        Recognition,
        answers=CREATED,
    ),
    Operation(
        "post",
        "/api/v1/sharing/viewings",
        "A doctor station reminded of, or viewed, a shared exam or lab result",
        Viewing,
        answers=CREATED,
    ),
    Operation(
        "post",
        "/api/v1/sharing/queries/{name}",
        "A doctor station's query to the results-sharing platform (outside exams and labs,"
        " their PDFs, abnormal results, a viewerKey), answered synchronously",
        parameters=[_in_path("name", {"type": "string"})],
        content=SHARING_QUERY,
        answers={
            "200": "{source: platform or local, data: the platform's data}",
            "404": "No such query, or no results_sharing uplink",
            "502": "The platform refused the query (its words)",
            "503": "The platform cannot be reached",
        },
    ),
    Operation(
        "post",
        "/api/v1/sharing/queries/{name}/pdf",
        "A report PDF through a PDF query (exam_pdf, lab_pdf): the first answered record's PDF,"
        " fetched from the platform with its token, or decoded when given in Base64",
        parameters=[_in_path("name", {"type": "string"})],
        content=SHARING_QUERY,
        answers={
            "200": "application/pdf: the report",
            "404": "No such PDF query, no results_sharing uplink, or the platform has no PDF",
            "502": "The platform refused, or what it gave is not a PDF it serves",
            "503": "The platform cannot be reached",
        },
    ),
    Operation("get", PATH, "This description"),
    # IDCAS (seed 002): served when an idcas_archive uplink is configured. GET /idcas/open/{page}
    # (a browser's 302, on this API and on the uplink's HIS-facing listener) is described there.
    Operation(
        "post",
        "/api/v1/idcas/links/{page}",
        "A page of the IDCAS portal, signed now: {page, url}",
        PlatformParameters,
        parameters=[_named("page")],
        answers={"200": "{page, url}", "404": "No such page", "503": IDCAS_DOWN},
    ),
    Operation(
        "get",
        "/api/v1/idcas/webapi/{api}",
        "An IDCAS WebApi relayed (its parameters in the query): the platform's {code, msg, data}",
        parameters=[_named("api")],
        answers=IDCAS_RELAYED,
    ),
    Operation(
        "post",
        "/api/v1/idcas/webapi/{api}",
        "An IDCAS WebApi relayed (its parameters in the body): the platform's {code, msg, data}",
        PlatformParameters,
        parameters=[_named("api")],
        answers=IDCAS_RELAYED,
    ),
    Operation(
        "post",
        "/api/v1/idcas/print-flag",
        "An IDCAS print flag (7.9), journaled and sent by the outbox",
        PlatformParameters,
        answers={"202": "Journaled: {event_id}"},
    ),
    Operation(
        "post",
        "/api/v1/idcas/statistics",
        "A day's counts for the IDCAS statistics (6.2): {day, patients_cnt, work_stations?}",
        PlatformParameters,
        answers={"202": "Journaled: {event_id, day}"},
    ),
    # Seed 003 §3.4 (scenario 3): served when a provincial_imaging uplink is configured.
    Operation(
        "post",
        "/api/v1/his-orders",
        "A HIS apply form (INSERT/UPDATE/DELETE) for the provincial platform's SynApplyInfo,"
        " checked against the seed's element table, journaled, then sent by the outbox",
        HisOrder,
        answers={
            "202": "Journaled: {event_id, apply_no (prefixed), action}",
            "400": "{error, problems}: the body is not a JSON object",
            "422": "{error, problems}: the elements the table refuses, or a query parameter",
        },
    ),
    Operation(
        "get",
        "/api/v1/his-orders",
        "The newest apply forms with their delivery and the platform's exam status",
        parameters=[
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": 500},
            }
        ],
        answers={"200": "{orders: [...]}", "422": "{error, problems}: limit out of range"},
    ),
    Operation(
        "get",
        "/api/v1/his-orders/{apply_no}",
        "One apply form (ApplyNo with or without the '<医院ID>_' prefix): its last action,"
        " delivery {state, last_error, attempts} and exam status 00/20/50/70 (SynStatusInfo)",
        parameters=[_in_path("apply_no", {"type": "string", "minLength": 1})],
        answers={
            "200": "The order's state",
            "404": "No such order",
            "422": "{error, problems}: a query parameter",
        },
    ),
)


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the local API."""
    components: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method] = _operation(operation, components)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "edge-agent local API",
            "version": __version__,
            "description": "Hospital systems post records here; each 2xx means journaled, and"
            " forwarded from then on. docs/operations.md explains every status.",
        },
        "servers": [{"url": "http://127.0.0.1:8700"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation(operation: Operation, components: dict[str, Any]) -> dict[str, Any]:
    refusals = ["401"]
    if operation.parameters:
        refusals.append("400")
    if operation.body is not None or operation.files or operation.content is not None:
        refusals += ["400", "413", "415", "422"]
    problem = {"application/json": {"schema": PROBLEM}}
    answers: dict[str, Any] = {
        status: {"description": REFUSALS[status], "content": problem} for status in refusals
    }
    for status, text in operation.answers.items():
        answers[status] = {"description": text}
        if not status.startswith("2"):
            answers[status]["content"] = problem
    found: dict[str, Any] = {
        "summary": operation.summary,
        "operationId": f"{operation.method}{operation.path}",
        "parameters": operation.parameters,
        "responses": answers,
    }
    if operation.body is not None:
        schema = _schema(operation.body, components)
        content: dict[str, Any] = {"application/json": {"schema": schema}}
        if operation.photos:
            content["multipart/form-data"] = {"schema": _with_photo_files(schema, components)}
        found["requestBody"] = {"required": True, "content": content}
    if operation.files:
        found["requestBody"] = {"required": True, "content": REPORT_FILE}
    if operation.content is not None:
        found["requestBody"] = {"required": True, "content": operation.content}
    return found


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    """`model`'s JSON schema in components (its nested models too); a reference to it."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    # Records from RIS and quality forms may send codes and ids as JSON numbers; they are taken
    # as their text (the models coerce them), so the description says so.
    numbers = bool(model.model_config.get("coerce_numbers_to_str"))
    for name, nested in [*schema.pop("$defs", {}).items(), (model.__name__, schema)]:
        described = _body_rules(nested)
        components[name] = _numbers_as_text(described) if numbers else described
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _numbers_as_text(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_numbers_as_text(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    found = {key: _numbers_as_text(value) for key, value in schema.items()}
    if found.get("type") == "string" and "format" not in found:
        codes = [found["const"]] if "const" in found else found.get("enum", [])
        if codes and all(isinstance(c, str) and c.isdigit() for c in codes):
            return {"anyOf": [found, {"enum": [int(c) for c in codes]}]}
        if not codes:
            return {"anyOf": [found, {"type": "number"}]}
    return found


def _with_photo_files(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """The form variant: `photo` files, and optional fields left blank, as HTML forms send them."""
    name = schema["$ref"].rsplit("/", 1)[1]
    fields = components[name]
    blank = {"type": "string", "maxLength": 0}
    required = fields.get("required", [])
    properties = {
        key: _as_form_text(value) if key in required else {"anyOf": [_as_form_text(value), blank]}
        for key, value in fields["properties"].items()
    }
    photo = {"type": "array", "items": {"type": "string", "contentMediaType": "image/*"}}
    return {**fields, "properties": {**properties, "photo": photo}}


def _as_form_text(schema: Any) -> Any:
    """A form field is text: a yes/no or a number is described by the texts that are taken."""
    if isinstance(schema, dict) and "anyOf" in schema:
        return {**schema, "anyOf": [_as_form_text(option) for option in schema["anyOf"]]}
    if isinstance(schema, dict) and schema.get("type") in FORM_TEXT:
        return {"type": "string", "pattern": FORM_TEXT[schema["type"]]}
    return schema


def _body_rules(schema: Any) -> Any:
    """`schema` with the rules every body follows (agent.inputs.Body) on its string leaves."""
    if isinstance(schema, list):
        return [_body_rules(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    found = {key: _body_rules(value) for key, value in schema.items()}
    kind = found.get("type")
    if not isinstance(kind, str):  # a property named "type" (its schema), not the keyword
        return found
    if kind == "string" and "pattern" not in found and "enum" not in found:
        found["pattern"] = IN_YEARS if found.get("format") in {"date", "date-time"} else PRINTABLE
    elif kind in FORM_TEXT:  # read leniently, as pydantic does: true, "yes", 1; 5, "5"
        lenient = [found, {"type": "string", "pattern": FORM_TEXT[kind]}]
        return {"anyOf": [*lenient, {"enum": [0, 1]}] if kind == "boolean" else lenient}
    return found


async def serve(request: web.Request) -> web.Response:
    """GET /api/v1/openapi.json"""
    return answer(openapi())


if __name__ == "__main__":
    print(json.dumps(openapi(), ensure_ascii=False, indent=2))
