"""The write requests' bodies, shared by the API (JSON) and the dashboard's forms."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from agent.inputs import Body


class PatientForUse(Body):
    """The patient the next use of a scope at `reader_id` is for (uploadUseStepData)."""

    reader_id: Annotated[str, Field(min_length=1, max_length=64)]
    patient_id: Annotated[str, Field(min_length=1, max_length=32)]  # identityId: HIS number
    patient_name: Annotated[str, Field(max_length=100)] = ""


class Acknowledgement(Body):
    """Who acknowledges an alert, and what they did about it."""

    multiline = frozenset({"note"})

    by: Annotated[str, Field(min_length=1, max_length=64)]
    note: Annotated[str, Field(max_length=500)] = ""
    group: bool = False  # also every earlier open alert of the same code and subject


AlertId = Annotated[int, Field(ge=1, le=10**18 - 1)]  # a journal row id: at most 18 digits


class BulkAcknowledgement(Acknowledgement):
    """Several open alerts acknowledged at once by one named person."""

    ids: Annotated[
        list[Annotated[int, Field(ge=1, le=10**18)]], Field(min_length=1, max_length=200)
    ]


class Snooze(Body):
    """A named person snoozes a known, accepted condition (same code and subject), and why."""

    multiline = frozenset({"reason"})

    by: Annotated[str, Field(min_length=1, max_length=64)]
    reason: Annotated[str, Field(min_length=3, max_length=500)]
    hours: Annotated[float, Field(gt=0, le=720)] = 24.0


class Override(Body):
    """A named person releases a blocked scope, and why (journaled)."""

    multiline = frozenset({"reason"})

    by: Annotated[str, Field(min_length=1, max_length=64)]
    reason: Annotated[str, Field(min_length=3, max_length=500)]
