"""What the imaging domain can offer an uplink, and each forward_to uplink's share of it (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class Offer(StrEnum):
    """One kind of message the imaging domain can queue; an uplink's plan names those it wants."""

    # A stable study with a joined exam: each exam's push (seed 003 `exam.push`), again when the
    # exam's content changes.
    EXAM_PUSH = "imaging.exam_push"
    # Each image of such a study, once per received file (seed 003 C-STORE, `dicom.instance`).
    IMAGES = "imaging.images"
    # An exam with a final report and no study in the spool (ECG, pathology, images kept in the
    # hospital's PACS): its push without images (`exam.push`, order key `exam:<examNo>`).
    EXAM_WITHOUT_IMAGES = "imaging.exam_without_images"
    # Per date and exam class, the final reports at statistics_times (`exam.statistics`).
    STATISTICS = "imaging.statistics"
    # An exam's report audited (status final), again when it changes after (`report.audited`,
    # e.g. seed 001's index upload); images or not.
    REPORT_AUDITED = "imaging.report_audited"
    # Images PACS deleted, of one accession (`study.deleted`, seed 004's notice).
    STUDY_DELETED = "imaging.study_deleted"
    # A report PDF of an exam whose report is audited: queued after that exam's
    # `report.audited` (same order key), when either comes last (`report.file`, seed 001).
    REPORT_FILES = "imaging.report_files"


# What every imaging uplink received before plans existed (seed 003's three).
CLASSIC = frozenset({Offer.EXAM_PUSH, Offer.IMAGES, Offer.STATISTICS})
# What the handler queues (a plan may also name other domains' offers: they are cut off).
PRODUCED = CLASSIC | {
    Offer.REPORT_AUDITED,
    Offer.STUDY_DELETED,
    Offer.REPORT_FILES,
    Offer.EXAM_WITHOUT_IMAGES,
}

# Uplink name -> the offers it receives.
Plans = Mapping[str, frozenset[Offer]]


def everything(forward_to: list[str]) -> dict[str, frozenset[Offer]]:
    """Every uplink gets the classic three (a config validated without the plugin registry)."""
    return dict.fromkeys(forward_to, CLASSIC)


def resolve(
    forward_to: list[str], plans: Mapping[str, frozenset[str]]
) -> dict[str, frozenset[Offer]]:
    """Each forward_to uplink's plan cut to what is produced; ValueError naming those left empty.

    `plans` maps every configured uplink to its type's plan; a name it lacks is not an uplink
    (the config reports that itself) and is left out.
    """
    resolved = {u: PRODUCED & plans[u] for u in forward_to if u in plans}
    idle = [u for u, offers in resolved.items() if not offers]
    if idle:
        produced = ", ".join(sorted(PRODUCED))
        raise ValueError(
            f"forward_to: {', '.join(idle)}: the uplink's type asks for none of what imaging"
            f" offers ({produced}); remove it from forward_to"
        )
    return resolved
