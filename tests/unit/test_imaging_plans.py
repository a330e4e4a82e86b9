"""Per-uplink forwarding plans: an uplink in forward_to gets only what its plan asks for."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from agent.config import load_config
from agent.errors import ConfigError
from agent.events import Event
from agent.imaging.config import ImagingConfig
from agent.imaging.handler import ImagingHandler
from agent.imaging.plans import CLASSIC, PRODUCED, Offer, resolve
from agent.plugins import PLUGIN_KINDS, SEED_003_PLAN, UPLINKS
from tests.unit.test_imaging_index import Index, exam, exam_doc, stored

# Two made-up platform types beside the real ones: one takes only the exam pushes, one only the
# statistics (as a seed 001-like daily-report platform would).
KINDS = {
    **PLUGIN_KINDS,
    "uplinks": {
        **UPLINKS,
        "pushes_only": replace(UPLINKS["http"], plan=frozenset({Offer.EXAM_PUSH})),
        "stats_only": replace(UPLINKS["http"], plan=frozenset({Offer.STATISTICS, "other.kind"})),
        "indexer": replace(UPLINKS["http"], plan=frozenset({Offer.REPORT_AUDITED})),
    },
}


def load_imaging(tmp_path: Path, uplinks: dict[str, str], forward_to: list[str]) -> ImagingConfig:
    """The [domains.imaging] table of a config with `uplinks` (name -> type), loaded with KINDS."""
    tables = "".join(
        f'[uplinks.{name}]\ntype = "{kind}"\nurl = "https://{name}.example/in"\n'
        for name, kind in uplinks.items()
    )
    path = tmp_path / "agent.toml"
    imaging = f'[domains.imaging]\ntype = "imaging"\nforward_to = {json.dumps(forward_to)}\n'
    path.write_text(tables + imaging, encoding="utf-8")
    section = load_config(path, KINDS).domains["imaging"]
    assert isinstance(section, ImagingConfig)
    return section


async def test_uplinks_with_different_plans_receive_different_messages(tmp_path, open_journal):
    uplinks = {"cloud": "http", "pusher": "pushes_only", "counter": "stats_only"}
    section = load_imaging(tmp_path, uplinks, ["cloud", "pusher", "counter"])
    index = Index(await open_journal.open(handlers=(ImagingHandler("imaging", section),)))
    await index.ingest(exam(exam_doc(accessionNo="ACC001")), stored("1"), stored("2"))
    await index.stable()
    due = {"date": "2026-11-23", "slot": "12:00"}
    await index.ingest(Event("imaging.statistics_due", "imaging", due))

    def kinds(messages: list[tuple[str, str, object]]) -> list[str]:
        return [kind for kind, _, _ in messages]

    assert kinds(await index.messages("cloud")) == [
        "exam.push",
        "dicom.instance",
        "dicom.instance",
        "exam.statistics",
    ]
    assert kinds(await index.messages("pusher")) == ["exam.push"]
    assert kinds(await index.messages("counter")) == ["exam.statistics"]
    # Images not asked for are not recorded as forwarded either: nothing is owed or pretended.
    assert await index.rows("SELECT DISTINCT uplink FROM im_forwarded") == [("cloud",)]


async def test_an_audited_report_is_offered_once_per_content_images_or_not(tmp_path, open_journal):
    section = load_imaging(tmp_path, {"cloud": "http", "index": "indexer"}, ["cloud", "index"])
    index = Index(await open_journal.open(handlers=(ImagingHandler("imaging", section),)))
    draft = exam_doc("E1", status="60", accessionNo="ACC001")
    await index.ingest(exam(draft))  # a preliminary report: not audited yet
    assert await index.messages("index") == []
    final = exam_doc("E1", status="70", accessionNo="ACC001")
    final["reportList"]["affirmTime"] = "2026-11-23 11:00:00"
    await index.ingest(exam(final), exam(final))  # the same audited report posted twice
    await index.ingest(exam_doc_event(final, patient_age="47岁"))  # not the report: no news
    final["reportList"]["impression"] = "右下肺炎 (修订)"
    await index.ingest(exam(final))  # changed after its audit: a new message
    messages = await index.messages("index")
    assert [(kind, key) for kind, key, _ in messages] == [("report.audited", "exam:E1")] * 2
    first, revised = (payload for _, _, payload in messages)
    assert first["study"] is None  # no image received for it (yet): sent all the same
    assert first["record"]["report"]["audited_at"] == "2026-11-23T11:00:00"
    assert first["record"]["accession"] == "ACC001" and first["record"]["status"] == "final"
    assert revised["record"]["report"]["impression"] == "右下肺炎 (修订)"
    assert [kind for kind, _, _ in await index.messages("cloud")] == []  # not in its plan


def exam_doc_event(document: dict[str, object], patient_age: str) -> Event:
    changed = json.loads(json.dumps(document))
    changed["patientInfo"]["age"] = patient_age
    return exam(changed)


def test_the_plans_are_resolved_when_the_config_is_loaded(tmp_path):
    section = load_imaging(tmp_path, {"cloud": "http", "counter": "stats_only"}, ["counter"])
    assert section.plans() == {"counter": frozenset({Offer.STATISTICS})}


def test_an_uplink_whose_plan_offers_nothing_produced_is_a_config_error(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(
        '[uplinks.bus]\ntype = "mqtt"\nurl = "mqtt://127.0.0.1:1883"\ntopic_prefix = "edge"\n'
        '[uplinks.cloud]\ntype = "http"\nurl = "https://cloud.example/in"\n'
        '[domains.imaging]\ntype = "imaging"\nforward_to = ["cloud", "bus"]\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path, PLUGIN_KINDS)
    (line,) = raised.value.problems
    assert line.startswith(f"{path}: domains.imaging: forward_to: bus: the uplink's type asks")


def test_the_existing_platforms_plans():
    assert UPLINKS["remote_imaging"].plan == SEED_003_PLAN == CLASSIC | {Offer.EXAM_WITHOUT_IMAGES}
    assert UPLINKS["http"].plan == CLASSIC  # the generic JSON POST: what it had before plans
    others = {Offer.REPORT_AUDITED, Offer.STUDY_DELETED, Offer.REPORT_FILES}
    assert CLASSIC | others | {Offer.EXAM_WITHOUT_IMAGES} == PRODUCED
    assert {Offer.REPORT_AUDITED, Offer.STUDY_DELETED} == UPLINKS["insurance_imaging"].plan
    assert UPLINKS["mqtt"].plan == UPLINKS["zhejiang_endoscope"].plan == frozenset()


def test_offers_imaging_does_not_produce_do_not_count():
    lab_only = {"sharing": frozenset({"lab.reports"})}  # another domain's offer
    with pytest.raises(ValueError, match="sharing"):
        resolve(["sharing"], lab_only)
    assert resolve(["gone"], {}) == {}  # not an uplink: the config reports that itself


def test_a_config_validated_without_the_registry_sends_the_classic_three_to_every_uplink():
    section = ImagingConfig.model_validate({"type": "imaging", "forward_to": ["a", "b"]})
    assert section.plans() == {"a": CLASSIC, "b": CLASSIC}
