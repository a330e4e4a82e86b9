"""Sans-I/O: request bodies from outbox payloads, answers and DICOM statuses to outcomes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.dispatch.outcomes import Delivered, Outcome, Reject, Retry
from agent.uplinks.kit.answers import BUSY, AnswerRules, CodeRule, judge, read_envelope
from agent.uplinks.kit.fieldfile import load_field_file
from agent.uplinks.kit.fieldmap import apply
from agent.uplinks.kit.fields import is_empty
from agent.uplinks.remote_imaging import dictionaries
from agent.uplinks.remote_imaging.config import RemoteImagingConfig
from agent.uplinks.remote_imaging.fields import DATETIME, PUSH, STATISTICS_ITEM, validate

PUSH_KIND = "exam.push"
STATISTICS_KIND = "exam.statistics"
INSTANCE_KIND = "dicom.instance"
REPORT_IMAGE_KIND = "report.image"  # a report's image, sent as Secondary Capture after the push
PATH_TYPES = {"jpg": "JPG", "bmp": "BMP"}  # rptImgType of files listed by path (BMP/JPG/DICOM)
JOIN_KEYS = ("studyUID", "accessionNo")  # the exam document's join keys: not seed fields
STATUS_OK, STATUS_FAILED, STATUS_SERVER, STATUS_OTHER = 0, 1, 500, 999
DICOM_WARNINGS = frozenset({0x0001, 0xB000, 0xB006, 0xB007})
EXPECTED_TAGS = ("PatientID", "StudyInstanceUID", "AccessionNumber")
EXAM_MAP = load_field_file(Path(__file__).with_name("exam.toml")).maps["exam.push"]
# The seed's answers: {status, message, result}, or the same inside `content` (§3.2.2.4).
ANSWERS = AnswerRules(
    roots=("", "content"),
    code_key="status",
    message_key="message",
    data_key="result",
    code_label="status",
    delivered_codes=frozenset({STATUS_OK}),
    token_statuses=frozenset({401, 403}),
)


def build_push(
    payload: Mapping[str, Any], config: RemoteImagingConfig
) -> tuple[dict[str, Any], list[str]]:
    """The exam/push body (seed §3.2.3.1) and every way it breaks the seed's table."""
    body, problems = _exam_fields(payload)
    if body is None:
        return {}, problems
    # The exam's own hospital (several behind one front-end, §3.2.3.3), else this uplink's.
    if is_empty(body.get("hospitalCode")):
        body["hospitalCode"] = config.hospital_code
    elif config.hospital_codes and body["hospitalCode"] not in config.hospital_codes:
        problems = [*problems, "hospitalCode: not one of this uplink's hospital_codes"]
    info = dict(body["examInfo"]) if isinstance(body.get("examInfo"), Mapping) else {}
    if is_empty(info.get("reqHospitalCode")):
        info["reqHospitalCode"] = body["hospitalCode"]
    if is_empty(info.get("reqHospitalName")) and config.hospital_name:
        info["reqHospitalName"] = config.hospital_name
    study = payload.get("study")
    if config.image_mode == "none":
        pass  # the push alone: no imageList
    elif isinstance(study, Mapping):
        # The platform matches the images' PatientID against examInfo.patientID: DICOM wins.
        if not is_empty(study.get("patient_id")):
            info["patientID"] = study["patient_id"]
        body["imageList"] = image_list(study, info.get("patientID"), config)
        counted, unmapped = seed_modalities(study, config)
        if unmapped and not counted:
            shown = ", ".join(sorted(unmapped))
            problems = [*problems, f"imageList.modality: {shown} has no seed code (modality_map)"]
    elif config.image_mode in ("qr", "url"):  # images only in the hospital's PACS, if any
        outside = _outside_images(payload, info.get("patientID"), config)
        if outside:
            body["imageList"] = outside
    _list_report_images(body, payload.get("report_images"), config)
    problems = [*problems, *translate(info, config)]
    if "examInfo" in body:
        body["examInfo"] = info
    return body, problems + validate(PUSH, body, config.length_unit)


def by_path(name: str, config: RemoteImagingConfig) -> str | None:
    """The seed's rptImgType of a report image listed by path (JPG, BMP), None if it goes as
    DICOM (report_images = "dicom", or a PNG)."""
    if config.report_images != "path":
        return None
    return PATH_TYPES.get(name.rsplit(".", 1)[-1].lower())


def _list_report_images(body: dict[str, Any], images: Any, config: RemoteImagingConfig) -> None:
    """reportList.reportImage entries for the report images: sent into the study (DICOM, with
    their SOP Instance UIDs; store mode), or by path; beside those the exam document lists."""
    if not isinstance(images, list) or not images:
        return
    report = dict(body.get("reportList") or {})
    listed = [dict(e) for e in report.get("reportImage") or [] if isinstance(e, Mapping)]
    known = {e.get("sopInstanceUID") for e in listed} | {e.get("rptImgPath") for e in listed}
    for image in images:
        if not isinstance(image, Mapping):
            continue
        name = str(image.get("name") or "")
        kind = by_path(name, config)
        if kind is not None:
            path = config.report_image_path_prefix + name
            if path not in known:
                listed.append({"rptImgType": kind, "rptImgPath": path})
        elif config.image_mode == "store" and image.get("sop_uid") not in known:
            listed.append(
                {"rptImgType": "DICOM", "rptImgPath": name,
                 "sopInstanceUID": image.get("sop_uid")}
            )  # fmt: skip
    if not listed:
        return
    report["reportImage"] = listed
    body["reportList"] = report


def _outside_images(
    payload: Mapping[str, Any], patient_id: Any, config: RemoteImagingConfig
) -> list[dict[str, Any]]:
    """imageList of an exam whose study is not in our spool: what its document says (studyUID,
    accessionNo), with imageUrl in "url" mode; none without a studyUID."""
    record = payload.get("record")
    exam = payload.get("exam")
    source = record if isinstance(record, Mapping) else {}
    document = exam if isinstance(exam, Mapping) else {}
    study_uid = source.get("study_uid") or document.get("studyUID")
    if is_empty(study_uid):
        return []
    accession = source.get("accession") or document.get("accessionNo") or ""
    return image_list({"study_uid": study_uid, "accession": accession}, patient_id, config)


def translate(info: dict[str, Any], config: RemoteImagingConfig) -> list[str]:
    """Put examInfo's coded fields in the §3.2.4 dictionaries' codes; what has none, named."""
    problems: list[str] = []
    posted = info.get("examClass")
    if config.check_exam_class and isinstance(posted, str) and posted:
        code = dictionaries.exam_class(posted, config.exam_classes())
        if code is None:
            problems.append(
                f"examInfo.examClass: {posted!r} is not in WNCV5103_01 (exam_class_map)"
            )
        else:
            info["examClass"] = code
    organs = info.get("examOrganList")
    if config.organ_names == "codes" and isinstance(organs, list):
        coded = []
        for n, organ in enumerate(organs):
            name = organ.get("organName") if isinstance(organ, Mapping) else None
            code = dictionaries.organ_code(str(name or ""))
            if code is None:
                problems.append(f"examInfo.examOrganList[{n}].organName: not a §3.2.4.2 body part")
            coded.append(
                {**organ, "organName": code or name} if isinstance(organ, Mapping) else organ
            )
        info["examOrganList"] = coded
    category = info.get("specimenCategory")
    known = category in dictionaries.SPECIMEN_CATEGORIES
    if config.check_specimen_category and not is_empty(category) and not known:
        problems.append("examInfo.specimenCategory: not a §3.2.4.3 specimen category")
    return problems


def seed_modalities(
    study: Mapping[str, Any], config: RemoteImagingConfig
) -> tuple[Counter[str], set[str]]:
    """The study's images per seed modality code, and its DICOM modalities that have none."""
    mapping = config.modalities()
    counted: Counter[str] = Counter()
    unmapped: set[str] = set()
    for item in study.get("series") or []:
        if isinstance(item, Mapping):
            modality = str(item.get("modality") or "")
            if modality in mapping:
                counted[mapping[modality]] += int(item.get("instance_count") or 0)
            elif modality:
                unmapped.add(modality)
    for modality in study.get("modalities") or []:
        if str(modality) in mapping:
            counted.setdefault(mapping[str(modality)], 0)
        elif modality:
            unmapped.add(str(modality))
    return counted, unmapped


def _exam_fields(payload: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """The exam's fields: mapped from the neutral `record`, or (queued before records) the
    document as posted, which has the seed's names."""
    record = payload.get("record")
    if isinstance(record, Mapping):
        return apply(EXAM_MAP, record, {"DT": DATETIME})
    exam = payload.get("exam")
    if not isinstance(exam, Mapping):
        return None, ["exam: required field is missing"]
    return {k: v for k, v in exam.items() if k not in JOIN_KEYS}, []


def image_list(
    study: Mapping[str, Any], patient_id: Any, config: RemoteImagingConfig
) -> list[dict[str, Any]]:
    """imageList: one entry for the study, or one per modality (`image_list`)."""
    per_modality, _ = seed_modalities(study, config)
    base: dict[str, Any] = {
        "imageType": config.image_type,
        "patientID": patient_id,
        "studyUID": study.get("study_uid"),
    }
    accession = study.get("accession")
    if not is_empty(accession):
        base["accessionNo"] = accession
    if config.image_url_template is not None:
        base["imageUrl"] = config.image_url_template.format(
            study_uid=study.get("study_uid") or "", accession=accession or ""
        )
    total = int(study.get("instance_count") or sum(per_modality.values()))
    if config.image_list == "per_modality" and per_modality:
        return [
            {**base, "imageCount": count, "modality": modality}
            for modality, count in per_modality.items()
        ]
    entry = dict(base)
    if "instance_count" in study or "series" in study:  # unknown for images kept elsewhere
        entry["imageCount"] = total
    if per_modality:  # the modality with the most images; the first listed on a tie
        entry["modality"] = max(per_modality, key=lambda m: per_modality[m])
    return [entry]


def build_statistics(
    payload: Mapping[str, Any], config: RemoteImagingConfig
) -> tuple[list[dict[str, Any]], list[str]]:
    """The uploadStatistics array (seed §3.2.3.3), hospitalCode added, and its violations."""
    items = payload.get("items")
    if not isinstance(items, list):
        return [], ["items: not an array"]
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for index, item in enumerate(items):
        row = {"hospitalCode": config.hospital_code, **(item if isinstance(item, Mapping) else {})}
        posted = row.get("examClass")
        if config.check_exam_class and isinstance(posted, str) and posted:
            code = dictionaries.exam_class(posted, config.exam_classes())
            if code is None:
                problems.append(f"[{index}].examClass: {posted!r} is not in WNCV5103_01")
            row["examClass"] = code or posted
        problems += validate(STATISTICS_ITEM, row, config.length_unit, f"[{index}].")
        # Classes the dictionary merges (DR and CR are both X-Ray) are one row: counts added.
        key = (row.get("examDate"), row.get("hospitalCode"), row.get("examClass"))
        if key in merged and isinstance(row.get("accordCount"), int):
            merged[key]["accordCount"] = int(merged[key]["accordCount"]) + row["accordCount"]
            continue
        merged[key] = row
        rows.append(row)
    # Classes with no exam are reported with 0 for every date the slot covers, per hospital.
    dates = payload.get("dates") or [payload.get("date")]
    others = {str(r["hospitalCode"]) for r in rows if r.get("hospitalCode") != config.hospital_code}
    hospitals = [config.hospital_code, *sorted(others)]
    present = {(r.get("examDate"), r.get("hospitalCode"), r.get("examClass")) for r in rows}
    for date in (d for d in dates if isinstance(d, str)):
        for hospital in hospitals:
            for exam_class in config.statistics_classes:
                if (date, hospital, exam_class) not in present:
                    rows.append(
                        {"hospitalCode": hospital, "examDate": date,
                         "examClass": exam_class, "accordCount": 0}
                    )  # fmt: skip
    for row in rows:
        count = row.get("accordCount")
        if isinstance(count, int | str) and not isinstance(count, bool):
            row["accordCount"] = str(count) if config.statistics_count_as_string else int(count)
    return rows, problems


def parse_answer(text: str) -> tuple[int | None, str, Any]:
    """(status, message, result) of the seed's answer; status None when it is not one."""
    env = read_envelope(ANSWERS, text)
    return env.code, env.message, env.data


def parse_token(result: Any) -> str | None:
    """`result.token`; also a bare string, or the first element of an array (§3.2.2.2)."""
    if isinstance(result, list) and result:
        result = result[0]
    if isinstance(result, str):
        return result or None
    if isinstance(result, dict) and isinstance(result.get("token"), str):
        return result["token"] or None
    return None


def answer_rules(config: RemoteImagingConfig) -> AnswerRules:
    """The seed's answer rules with the keywords this config names."""
    busy = CodeRule(
        BUSY,
        codes=frozenset({STATUS_SERVER, STATUS_OTHER}),
        keywords=tuple(config.busy_keywords),
        reason="platform error: ",
    )
    return replace(ANSWERS, token_keywords=tuple(config.token_error_keywords), rules=(busy,))


def http_outcome(
    config: RemoteImagingConfig, status: int, text: str, retry_after: float | None = None
) -> Outcome:
    """Map one HTTP answer of exam/push or uploadStatistics to an outcome."""
    return judge(answer_rules(config), status, text, retry_after)


def dicom_outcome(status: int | None, comment: str = "") -> Outcome:
    """Map a C-STORE response status (None: no response) to an outcome."""
    if status is None:
        return Retry("no C-STORE response (association aborted or dimse_timeout)")
    shown = f"C-STORE status 0x{status:04X}{f' ({comment})' if comment else ''}"
    if status == 0x0000:
        return Delivered(shown)
    if status in DICOM_WARNINGS:
        return Delivered(f"{shown}: warning, stored")
    if 0xA700 <= status <= 0xA7FF:
        return Retry(f"{shown}: out of resources")
    return Reject(f"{shown}: refused")


def tag_mismatches(expect: Mapping[str, Any], found: Mapping[str, str]) -> list[str]:
    """Tags of the file that differ from what the push carried (names only, never values)."""
    return [
        tag
        for tag in EXPECTED_TAGS
        if tag in expect and str(expect[tag] or "").strip() != (found.get(tag) or "").strip()
    ]
