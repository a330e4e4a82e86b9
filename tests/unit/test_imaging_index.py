"""The imaging handler through a real journal: index, duplicates, stability, forwarding plans."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.events import Event
from agent.imaging.config import ImagingConfig
from agent.imaging.handler import ImagingHandler
from agent.journal.alerts import open_alerts
from agent.journal.writer import Journal

STUDY = "1.2.826.0.1.3680043.8.498.100"
T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def stored(
    sop: str,
    *,
    series: str = "1",
    series_number: int | None = 1,
    number: int | None = 1,
    study: str = STUDY,
    accession: str = "ACC001",
    at: datetime = T0,
    path: str | None = None,
    modality: str = "CT",
) -> Event:
    """A dicom.stored event as the DICOM source emits it (contracts), received at `at`."""
    payload = {
        "path": path or f"/var/lib/edge-agent/spool/{study}/{sop}.dcm",
        "size": 1000 + len(sop),
        "transfer_syntax": "1.2.840.10008.1.2.1",
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
        "sop_instance_uid": f"{study}.{series}.{sop}",
        "study_uid": study,
        "series_uid": f"{study}.{series}",
        "patient_id": "P001",
        "patient_name": "ZHANG^SAN",
        "patient_birth_date": "19800101",
        "patient_sex": "M",
        "accession_number": accession,
        "study_id": "1",
        "study_date": "20261123",
        "study_time": "100000",
        "study_description": "CHEST",
        "referring_physician": "",
        "modality": modality,
        "series_number": series_number,
        "series_description": f"series {series}",
        "body_part": "CHEST",
        "instance_number": number,
        "calling_ae": "CT01",
        "received_via": "c-store",
    }
    return Event("dicom.stored", "pacs", payload, occurred_at=at, received_at=at)


def exam_doc(
    exam_no: str = "E001",
    *,
    status: str = "70",
    apply_no: str = "A001",
    exam_class: str = "CT",
    time: str = "2026-11-23 10:00:00",
    impression: str = "no finding",
    **top: Any,
) -> dict[str, Any]:
    """An exam document with the seed's field names (what POST /api/v1/exams accepts)."""
    return {
        "examNo": exam_no,
        "patientInfo": {"sickId": "P001", "name": "张三", "sex": "男", "birthDate": "1980-01-01"},
        "examInfo": {
            "applyNo": apply_no,
            "patientID": "CT000001",
            "examStatus": status,
            "examTime": time,
            "examClass": exam_class,
            "examItemList": [{"itemCode": "CT01", "itemName": "胸部CT平扫"}],
            "examOrganList": [{"organName": "胸部"}],
            "reqHospitalName": "某某县人民医院",
        },
        "reportList": {"impression": impression, "reportTime": time},
        **top,
    }


def exam(doc: dict[str, Any], at: datetime = T0) -> Event:
    return Event("imaging.exam", "api", doc, occurred_at=at, received_at=at)


@dataclass
class Index:
    """The handler's journal and what it holds."""

    journal: Journal

    async def ingest(self, *events: Event) -> None:
        await self.journal.ingest(list(events))

    async def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return await self.journal.run(lambda conn: conn.execute(sql, args).fetchall())

    async def stable(self, study: str = STUDY, at: datetime | None = None) -> None:
        """What the scheduler emits once the study went quiet."""
        ((last,),) = await self.rows(
            "SELECT last_received FROM im_studies WHERE study_uid = ?", study
        )
        when = at or datetime.fromisoformat(last) + timedelta(seconds=61)
        payload = {"study_uid": study, "last_received": last}
        await self.ingest(Event("imaging.study_stable", "imaging", payload, received_at=when))

    async def messages(self, uplink: str = "remote_imaging") -> list[tuple[str, str, Any]]:
        """(kind, order_key, payload) queued for `uplink`, in queue order."""
        return [
            (kind, key, json.loads(payload))
            for kind, key, payload in await self.rows(
                "SELECT kind, order_key, payload FROM outbox WHERE uplink = ? ORDER BY id", uplink
            )
        ]

    async def sent(self, uplink: str = "remote_imaging") -> list[str]:
        """A short form of the queue: "push:<instance_count>" or the instance's SOP UID tail."""
        return [
            f"push:{p['study']['instance_count']}"
            if kind == "exam.push"
            else p["sop_uid"].removeprefix(f"{STUDY}.")
            for kind, _, p in await self.messages(uplink)
        ]


def config(**options: Any) -> ImagingConfig:
    return ImagingConfig.model_validate({"type": "imaging", **options})


@pytest.fixture
async def index(open_journal) -> Index:
    return Index(await open_journal.open(handlers=(ImagingHandler("imaging", config()),)))


async def make_index(open_journal, **options: Any) -> Index:
    return Index(await open_journal.open(handlers=(ImagingHandler("imaging", config(**options)),)))


async def test_instances_become_patient_study_series_and_instance_rows(index):
    await index.ingest(
        stored("1", number=1),
        stored("2", number=2, at=T0 + timedelta(seconds=5)),
        stored("3", series="2", series_number=2, modality="SR", at=T0 + timedelta(seconds=3)),
    )
    assert await index.rows("SELECT * FROM im_patients") == [("P001", "ZHANG^SAN", "19800101", "M")]
    ((patient, accession, count, modalities, first, last, state, generation),) = await index.rows(
        "SELECT patient_id, accession, instance_count, modalities, first_received,"
        " last_received, state, generation FROM im_studies"
    )
    assert (patient, accession, count, modalities) == ("P001", "ACC001", 3, "CT\\SR")
    assert (first, last) == (
        T0.isoformat(timespec="microseconds"),
        (T0 + timedelta(seconds=5)).isoformat(timespec="microseconds"),
    )
    assert (state, generation) == ("receiving", 0)
    assert await index.rows("SELECT modality, number FROM im_series ORDER BY number") == [
        ("CT", 1),
        ("SR", 2),
    ]
    rows = await index.rows("SELECT sop_uid, number, path, size, calling_ae FROM im_instances")
    assert len(rows) == 3 and rows[0][2].endswith("/1.dcm") and rows[0][4] == "CT01"
    assert await index.messages() == []  # nothing is forwarded before the study is stable


async def test_keep_first_keeps_the_old_row_and_notes_the_orphan_once_per_study(index):
    await index.ingest(stored("1"))
    await index.ingest(stored("1", path="/spool/again-1.dcm", at=T0 + timedelta(seconds=9)))
    await index.ingest(stored("1", path="/spool/again-2.dcm", at=T0 + timedelta(seconds=9)))
    ((path, count, last),) = await index.rows(
        "SELECT i.path, s.instance_count, s.last_received FROM im_instances i"
        " JOIN im_studies s USING (study_uid)"
    )
    assert path.endswith(f"{STUDY}/1.dcm") and count == 1
    assert last == T0.isoformat(timespec="microseconds")  # a duplicate does not delay stability
    alerts = await index.journal.run(open_alerts)
    assert [(a["code"], a["severity"], a["subject"]) for a in alerts] == [
        ("dicom_duplicate_kept_first", "warning", f"study:{STUDY}")
    ]
    assert "ZHANG" not in str(alerts) and "P001" not in str(alerts)


async def test_overwrite_replaces_the_row_and_reopens_a_stable_study(open_journal):
    index = await make_index(open_journal, duplicates="overwrite")
    await index.ingest(stored("1"))
    await index.stable()
    later = T0 + timedelta(minutes=5)
    await index.ingest(stored("1", path="/spool/newer.dcm", at=later))
    assert await index.rows(
        "SELECT i.path, i.received_at, s.instance_count, s.state FROM im_instances i"
        " JOIN im_studies s USING (study_uid)"
    ) == [("/spool/newer.dcm", later.isoformat(timespec="microseconds"), 1, "receiving")]
    assert await index.journal.run(open_alerts) == []


async def test_an_instance_overwritten_after_it_was_forwarded_is_forwarded_again(open_journal):
    index = await make_index(open_journal, duplicates="overwrite")
    await index.ingest(exam(exam_doc(accessionNo="ACC001")), stored("1"), stored("2", number=2))
    await index.stable()
    later = T0 + timedelta(hours=1)
    await index.ingest(stored("1", path="/spool/corrected.dcm", at=later))
    await index.stable()
    assert await index.sent() == ["push:2", "1.1", "1.2", "1.1"]
    assert (await index.messages())[-1][2]["path"] == "/spool/corrected.dcm"
    await index.ingest(stored("1", path="/spool/again.dcm", at=later + timedelta(hours=1)))
    await index.stable()
    assert await index.sent() == ["push:2", "1.1", "1.2", "1.1", "1.1"]


async def test_the_same_file_indexed_again_is_not_forwarded_again(open_journal):
    index = await make_index(open_journal, duplicates="overwrite")
    await index.ingest(exam(exam_doc(accessionNo="ACC001")), stored("1"))
    await index.stable()
    await index.ingest(stored("1", at=T0 + timedelta(hours=1)))  # a replayed event
    await index.stable()
    assert await index.sent() == ["push:1", "1.1"]


async def test_stable_study_with_exam_queues_the_push_then_every_instance_in_order(index):
    await index.ingest(exam(exam_doc(accessionNo="ACC001")))
    await index.ingest(
        stored("s2i1", series="2", series_number=2, number=1),
        stored("s1i2", series="1", series_number=1, number=2),
        stored("s0i1", series="0", series_number=0, number=1),  # the scanned apply form
        stored("s1i1", series="1", series_number=1, number=1),
        stored("s1i10", series="1", series_number=1, number=10),
    )
    assert await index.messages() == []
    await index.stable()
    assert await index.sent() == ["push:5", "0.s0i1", "1.s1i1", "1.s1i2", "1.s1i10", "2.s2i1"]
    messages = await index.messages()
    assert {key for _, key, _ in messages} == {f"study:{STUDY}"}
    push = messages[0][2]
    assert push["exam"]["examNo"] == "E001" and "study_uid" not in push["exam"]
    study = push["study"]
    assert (study["patient_id"], study["accession"], study["modalities"]) == (
        "P001",
        "ACC001",
        ["CT"],
    )
    assert [(s["number"], s["instance_count"]) for s in study["series"]] == [(0, 1), (1, 3), (2, 1)]
    instance = messages[1][2]
    assert instance["expect"] == {
        "PatientID": "P001",
        "StudyInstanceUID": STUDY,
        "AccessionNumber": "ACC001",
    }
    assert instance["path"].startswith("/") and instance["transfer_syntax"]
    assert await index.rows("SELECT state, generation FROM im_studies") == [("stable", 1)]
    assert len(await index.rows("SELECT * FROM im_forwarded")) == 5


async def test_a_stale_stability_event_changes_nothing(index):
    await index.ingest(exam(exam_doc(accessionNo="ACC001")), stored("1"))
    ((last,),) = await index.rows("SELECT last_received FROM im_studies")
    await index.ingest(stored("2", at=T0 + timedelta(seconds=30)))
    payload = {"study_uid": STUDY, "last_received": last}
    await index.ingest(Event("imaging.study_stable", "imaging", payload))
    assert await index.rows("SELECT state, generation FROM im_studies") == [("receiving", 0)]
    assert await index.messages() == []


async def test_reopened_study_sends_only_its_new_instances_after_a_new_push(index):
    await index.ingest(exam(exam_doc(accessionNo="ACC001")), stored("1"), stored("2", number=2))
    await index.stable()
    await index.ingest(stored("3", number=3, at=T0 + timedelta(hours=1)))
    assert await index.rows("SELECT state FROM im_studies") == [("receiving",)]
    await index.stable()
    assert await index.sent() == ["push:2", "1.1", "1.2", "push:3", "1.3"]
    assert await index.rows("SELECT state, generation FROM im_studies") == [("stable", 2)]


async def test_exam_arriving_after_stability_starts_the_forwarding(index):
    await index.ingest(stored("1"), stored("2", number=2))
    await index.stable()
    assert await index.messages() == []  # stable, but no exam to push yet
    await index.ingest(exam(exam_doc(studyUID=STUDY)))
    assert await index.sent() == ["push:2", "1.1", "1.2"]
    assert await index.rows("SELECT study_uid FROM im_exams") == [(STUDY,)]


async def test_exam_posted_before_its_images_is_joined_by_accession_when_they_arrive(index):
    await index.ingest(exam(exam_doc(accessionNo="ACC001")))
    assert await index.rows("SELECT study_uid, accession FROM im_exams") == [(None, "ACC001")]
    await index.ingest(stored("1"))
    assert await index.rows("SELECT study_uid FROM im_exams") == [(STUDY,)]
    await index.stable()
    assert await index.sent() == ["push:1", "1.1"]


async def test_exam_posted_after_its_images_is_joined_by_accession(index):
    await index.ingest(stored("1", accession="ACC777"))
    await index.stable()
    await index.ingest(exam(exam_doc(accessionNo="OTHER")))
    assert await index.rows("SELECT study_uid FROM im_exams") == [(None,)]
    await index.ingest(exam(exam_doc("E002", accessionNo="ACC777")))
    assert await index.rows("SELECT exam_no, study_uid FROM im_exams ORDER BY exam_no") == [
        ("E001", None),
        ("E002", STUDY),
    ]
    assert await index.sent() == ["push:1", "1.1"]


async def test_a_new_report_is_pushed_again_without_images_and_a_repeat_is_not(index):
    await index.ingest(exam(exam_doc(status="60", accessionNo="ACC001")), stored("1"))
    await index.stable()
    await index.ingest(exam(exam_doc(status="70", impression="nodule", accessionNo="ACC001")))
    await index.ingest(exam(exam_doc(status="70", impression="nodule", accessionNo="ACC001")))
    pushes = [p for kind, _, p in await index.messages() if kind == "exam.push"]
    assert [p["exam"]["examInfo"]["examStatus"] for p in pushes] == ["60", "70"]
    assert await index.sent() == ["push:1", "1.1", "push:1"]
    # Back to the first content (a report withdrawn): it must be pushed again, not deduplicated.
    await index.ingest(exam(exam_doc(status="60", accessionNo="ACC001")))
    pushes = [p for kind, _, p in await index.messages() if kind == "exam.push"]
    assert [p["exam"]["examInfo"]["examStatus"] for p in pushes] == ["60", "70", "60"]


async def test_every_forward_to_uplink_gets_its_own_plan(open_journal):
    index = await make_index(open_journal, forward_to=["remote_imaging", "archive"])
    await index.ingest(exam(exam_doc(accessionNo="ACC001")), stored("1"))
    await index.stable()
    assert await index.sent("remote_imaging") == await index.sent("archive") == ["push:1", "1.1"]


async def test_statistics_count_final_reports_with_an_apply_number_per_date_and_class(index):
    await index.ingest(
        exam(exam_doc("E1", status="70")),
        exam(exam_doc("E2", status="70")),
        exam(exam_doc("E3", status="60")),  # no final report yet
        exam(exam_doc("E4", status="70", apply_no="")),  # no apply form: not counted
        exam(exam_doc("E5", status="70", exam_class="MR")),
        exam(exam_doc("E6", status="70", time="2026-11-22 23:00:00")),  # the day before
    )
    due = {"date": "2026-11-23", "slot": "12:00"}
    await index.ingest(Event("imaging.statistics_due", "imaging", due))
    await index.ingest(Event("imaging.statistics_due", "imaging", due))  # a second event id
    ((kind, key, payload),) = await index.messages()
    assert (kind, key) == ("exam.statistics", "statistics")
    assert payload == {
        "date": "2026-11-23",
        # The first slot ever also reports the day before, which has an exam no slot counted.
        "dates": ["2026-11-22", "2026-11-23"],
        "items": [
            {"examDate": "2026-11-22", "examClass": "CT", "accordCount": 1},
            {"examDate": "2026-11-23", "examClass": "CT", "accordCount": 2},
            {"examDate": "2026-11-23", "examClass": "MR", "accordCount": 1},
        ],
    }
    assert await index.rows("SELECT dedupe_key FROM outbox") == [("statistics:2026-11-23:12:00",)]


async def test_statistics_days_include_the_days_before(open_journal):
    index = await make_index(open_journal, statistics_days=2)
    await index.ingest(exam(exam_doc("E6", status="70", time="2026-11-22 23:00:00")))
    due = {"date": "2026-11-23", "slot": "20:00"}
    await index.ingest(Event("imaging.statistics_due", "imaging", due))
    ((_, _, payload),) = await index.messages()
    assert payload["items"] == [{"examDate": "2026-11-22", "examClass": "CT", "accordCount": 1}]


async def statistics(index: Any, day: str, slot: str) -> dict[str, Any]:
    """The exam.statistics payload the slot queued."""
    await index.ingest(Event("imaging.statistics_due", "imaging", {"date": day, "slot": slot}))
    [found] = await index.rows(
        "SELECT payload FROM outbox WHERE dedupe_key = ?", f"statistics:{day}:{slot}"
    )
    return dict(json.loads(found[0]))


async def test_a_day_s_final_counts_reach_the_platform_with_the_next_day_s_first_slot(index):
    await index.ingest(exam(exam_doc("E1", status="70", time="2026-11-23 09:00:00")))
    assert (await statistics(index, "2026-11-23", "12:00"))["dates"] == ["2026-11-23"]
    assert (await statistics(index, "2026-11-23", "20:00"))["dates"] == ["2026-11-23"]
    # After the day's last slot: an exam of the 23rd (21:30) and a late final report.
    await index.ingest(
        exam(exam_doc("E2", status="70", time="2026-11-23 21:30:00")),
        exam(exam_doc("E3", status="70", time="2026-11-24 08:00:00")),
    )
    next_day = await statistics(index, "2026-11-24", "12:00")
    assert next_day["dates"] == ["2026-11-23", "2026-11-24"]
    assert next_day["items"] == [
        {"examDate": "2026-11-23", "examClass": "CT", "accordCount": 2},
        {"examDate": "2026-11-24", "examClass": "CT", "accordCount": 1},
    ]
    # Reported final once: the day's next slot covers the day only.
    assert (await statistics(index, "2026-11-24", "20:00"))["dates"] == ["2026-11-24"]


async def test_days_the_agent_was_down_for_are_reported_by_the_next_slot(index):
    await index.ingest(exam(exam_doc("E1", status="70", time="2026-11-20 09:00:00")))
    await statistics(index, "2026-11-20", "20:00")
    await index.ingest(exam(exam_doc("E2", status="70", time="2026-11-21 10:00:00")))  # posted late
    back = await statistics(index, "2026-11-23", "12:00")
    assert back["dates"] == ["2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23"]
    assert [i["examDate"] for i in back["items"]] == ["2026-11-20", "2026-11-21"]


async def test_a_slot_with_no_exam_is_queued_with_no_items(index):
    payload = await statistics(index, "2026-11-23", "12:00")
    assert payload == {"date": "2026-11-23", "dates": ["2026-11-23"], "items": []}


@pytest.mark.parametrize(
    ("reason", "code", "shown"),
    [
        ("unparseable", "dicom_rejected", "(unparseable)"),
        ("disk_low", "dicom_disk_low", "disk is (nearly) full"),
        ("sidecar 张三.json: no PatientID", "dicom_rejected", "(unreadable; see the event)"),
    ],
)
async def test_rejected_instance_raises_an_error_alert_without_patient_data(
    index, reason, code, shown
):
    payload = {"reason": reason, "calling_ae": "CT01", "quarantined": "/q/张三_1.jpg"}
    await index.ingest(Event("dicom.rejected", "pacs", payload))
    (alert,) = await index.journal.run(open_alerts)
    assert (alert["code"], alert["severity"], alert["subject"]) == (code, "error", "dicom:pacs")
    assert "AE CT01" in alert["message"] and shown in alert["message"]
    assert "张三" not in alert["message"]


async def test_statistics_of_two_hospitals_are_per_hospital_and_class(index):
    await index.ingest(
        exam(exam_doc("E1", hospitalCode="H1")),
        exam(exam_doc("E2", hospitalCode="H2")),
        exam(exam_doc("E3", hospitalCode="H2", exam_class="MR")),
        exam(exam_doc("E4", hospitalCode="H2", status="60")),
        exam(exam_doc("E5")),  # no hospital named: the uplink's own
    )
    payload = await statistics(index, "2026-11-23", "12:00")
    assert payload["items"] == [
        {"examDate": "2026-11-23", "examClass": "CT", "accordCount": 1},
        {"examDate": "2026-11-23", "examClass": "CT", "accordCount": 1, "hospitalCode": "H1"},
        {"examDate": "2026-11-23", "examClass": "CT", "accordCount": 1, "hospitalCode": "H2"},
        {"examDate": "2026-11-23", "examClass": "MR", "accordCount": 1, "hospitalCode": "H2"},
    ]
