"""What the results-sharing maps read: an exam's neutral record with the values the platform
needs beside it (pure): our institution, the study's summary, our image links, the file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RESIDENT_ID_CARD = "1"  # the national ID-document code of the resident identity card


def exam_view(
    payload: Mapping[str, Any], org: Mapping[str, str], links: Mapping[str, str]
) -> dict[str, Any]:
    """The record of a `report.audited` or `report.file` message, plus: org (code, name),
    study (the index's summary), links (viewer, uid_query, wado; each with {study_uid} filled),
    id_card_no, sex and patient_type ("unknown" when absent), body_parts (names joined),
    result ("uncertain" when absent)."""
    record: Mapping[str, Any] = payload.get("record") or {}
    view: dict[str, Any] = dict(record)
    patient = record.get("patient") or {}
    order = record.get("order") or {}
    view["org"] = dict(org)
    view["study"] = dict(payload.get("study") or {})
    study_uid = str(record.get("study_uid") or view["study"].get("study_uid") or "")
    if study_uid:
        view["study_uid"] = study_uid
        view["links"] = {k: v.replace("{study_uid}", study_uid) for k, v in links.items() if v}
    view["id_card_no"] = next(
        (
            d.get("number")
            for d in patient.get("documents", [])
            if d.get("type") == RESIDENT_ID_CARD
        ),
        None,
    )
    view["sex"] = patient.get("sex", "unknown")
    view["patient_type"] = patient.get("source", "unknown")
    view["body_parts"] = "、".join(p["name"] for p in order.get("body_parts", []) if p.get("name"))
    view["result"] = (record.get("report") or {}).get("result", "uncertain")
    return view
