"""What the report service maps: the neutral exam record with the values seed 004 derives (pure)."""

from __future__ import annotations

from typing import Any

from agent.vocabulary.exams import ExamRecord

RESIDENT_ID_CARD = "1"  # the national ID-document code of the resident identity card


def report_view(record: ExamRecord, hospital_id: str) -> dict[str, Any]:
    """The record, plus: hospital_id, id_card_no, sex/patient_type ("unknown" when absent),
    body_parts (names joined), refunded_at (the latest item refund), result ("uncertain" when
    absent) and each item's refunded flag ("1"/"0")."""
    view: dict[str, Any] = dict(record)
    patient = record.get("patient", {})
    order = record.get("order", {})
    items = order.get("items", [])
    view["hospital_id"] = hospital_id
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
    refunds = [item["refunded_at"] for item in items if item.get("refunded_at")]
    view["refunded_at"] = max(refunds, default=None)
    view["result"] = record.get("report", {}).get("result", "uncertain")
    view["order"] = {
        **order,
        "items": [{**item, "refunded": "1" if item.get("refunded_at") else "0"} for item in items],
    }
    return view
