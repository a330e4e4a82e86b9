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
    result ("uncertain" when absent); a key the record has itself (a lab QC run's result) is
    kept."""
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
    documents = patient.get("documents", [])
    ids = (d.get("number") for d in documents if d.get("type") == RESIDENT_ID_CARD)
    view.setdefault("id_card_no", next(ids, None))
    view.setdefault("sex", patient.get("sex", "unknown"))
    view.setdefault("patient_type", patient.get("source", "unknown"))
    parts = order.get("body_parts", [])
    view.setdefault("body_parts", "、".join(p["name"] for p in parts if p.get("name")))
    view.setdefault("result", (record.get("report") or {}).get("result", "uncertain"))
    return view
