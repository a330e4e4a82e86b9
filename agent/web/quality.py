"""Local API for quality records: validated, photos stored durably, then journaled (201)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import structlog
from aiohttp import web
from pydantic import AfterValidator, ConfigDict, Field, ValidationError

from agent.events import Event, utcnow
from agent.inputs import Body
from agent.reprocessing.quality import CLEANING_EFFECT, DISINFECTANT_TEST, RINSE_WATER
from agent.vocabulary.steps import Disinfectant
from agent.web.bodies import Refused, read_form, read_json_object
from agent.web.context import EMIT_KEY, answer, problems
from agent.web.files import FileStore, file_type

log = structlog.get_logger(__name__)

FUTURE_AWARE = timedelta(minutes=5)  # clock skew between the entering PC and the agent
FUTURE_NAIVE = timedelta(hours=15)  # a local time without offset: any zone is within ±14 h


def _not_future(value: datetime | None) -> datetime | None:
    now = utcnow()
    if value is not None and (
        value - now > FUTURE_AWARE
        if value.tzinfo
        else value - now.replace(tzinfo=None) > FUTURE_NAIVE
    ):
        raise ValueError("lies in the future")
    return value


Person = Annotated[str, Field(min_length=1, max_length=64)]  # a name or a staff id
TestedAt = Annotated[datetime | None, AfterValidator(_not_future)]
# Recorded to the hundredth: the least contact time taken is 0.01 min (5e-324 rounded to 0 before).
Minutes = Annotated[float, Field(ge=0.01, le=1440), AfterValidator(lambda v: round(v, 2))]


class _Record(Body):
    model_config = ConfigDict(str_strip_whitespace=True, coerce_numbers_to_str=True)


class DisinfectantTest(_Record):
    """A disinfectant batch's concentration test (uploadDisinfectData); ≤ 1 test-strip photo."""

    ratio_number: Annotated[str, Field(min_length=1, max_length=64)]  # ≤ 64: sterProcess's limit
    disinfectant: Disinfectant
    duration_minutes: Minutes  # disinfectDuration: the contact time the batch is used with
    tested_at: TestedAt = None  # ISO 8601; without an offset: the centre's local time
    frequency: Annotated[str, Field(min_length=1, max_length=200)]  # tests per day
    passed: bool
    recorded_by: Person


class RinseWaterCheck(_Record):
    """The final-rinse water device's status (rinseWater); no photos."""

    device: Annotated[str, Field(min_length=1, max_length=13)]  # wteNumber, S..13
    status: Literal["normal", "fault"]
    filter: Literal["normal", "replace"] | None = None  # dfcwStatus
    tested_at: TestedAt = None
    recorded_by: Person


class CleaningEffectTest(_Record):
    """A scope's channel cleaning-effect test (cleaningEffectTesting); 1-3 photos."""

    scope: Annotated[str, Field(min_length=1, max_length=64)]  # the scope's number
    tested_at: TestedAt = None
    inspector: Person
    passed: bool
    recorded_by: Person | None = None  # default: the inspector


@dataclass(frozen=True, slots=True)
class Form:
    """One quality endpoint: its event kind, body model and how many photos it takes."""

    kind: str
    model: type[_Record]
    min_photos: int
    max_photos: int


FORMS = {
    "/api/v1/quality/disinfectant-tests": Form(DISINFECTANT_TEST, DisinfectantTest, 0, 1),
    "/api/v1/quality/rinse-water": Form(RINSE_WATER, RinseWaterCheck, 0, 0),
    "/api/v1/quality/cleaning-effect-tests": Form(CLEANING_EFFECT, CleaningEffectTest, 1, 3),
}


def add_quality_routes(app: web.Application, photos_dir: Path, max_photo_bytes: int) -> None:
    """Register the quality-record routes (the app's token middleware protects them)."""
    store = FileStore(photos_dir, max_photo_bytes)
    for path, form in FORMS.items():
        app.router.add_post(path, partial(record_quality, store, form))
    app.router.add_get("/api/v1/quality/photos/{name}", partial(serve_photo, store))


async def record_quality(store: FileStore, form: Form, request: web.Request) -> web.Response:
    """POST a quality record (JSON, multipart or urlencoded): store its photos, journal it, 201."""
    fields, photos, found = await read_body(request, store.max_bytes)
    record: _Record | None = None
    try:
        record = form.model.model_validate(fields)
    except ValidationError as err:
        found = problems(err) + found
    found += photo_problems(form, photos)
    if found or record is None:
        raise Refused(422, found)
    try:
        names = [await store.save(data) for data in photos]
    except OSError as err:
        log.error("quality.photo_not_stored", error=err.strerror or type(err).__name__)
        return answer({"error": "the photo could not be stored"}, status=507)
    payload: dict[str, Any] = record.model_dump(mode="json", exclude_none=True)
    payload.setdefault("tested_at", utcnow().isoformat())
    if isinstance(record, CleaningEffectTest):
        payload.setdefault("recorded_by", record.inspector)
    if form.max_photos:
        payload["photos"] = names
    event = Event(form.kind, "api", payload)
    await request.app[EMIT_KEY](event)
    log.info("quality.recorded", kind=form.kind, photos=len(names))
    return answer({"event_id": event.id, "photos": names}, status=201)


def photo_problems(form: Form, photos: list[bytes]) -> list[str]:
    """Too few or too many photos for the form, and every photo that is not a JPEG or PNG."""
    found = []
    if len(photos) < form.min_photos:
        found.append(f"photo: at least {form.min_photos} required")
    if len(photos) > form.max_photos:
        found.append(f"photo: at most {form.max_photos} allowed")
    found += [
        f"photo {n}: not a JPEG or PNG image"
        for n, data in enumerate(photos, start=1)
        if file_type(data) not in ("jpg", "png")
    ]
    return found


async def read_body(
    request: web.Request, max_photo_bytes: int
) -> tuple[dict[str, Any], list[bytes], list[str]]:
    """(fields, photos, problems) of a JSON, multipart or urlencoded body; Refused when it is
    unusable."""
    if request.content_type == "application/json":
        return _json_photos(await read_json_object(request), max_photo_bytes)
    posted = await read_form(request, {"photo": max_photo_bytes})
    # HTML forms send inputs left blank: they count as not given.
    fields = {k: v for k, v in posted.fields.items() if v.strip()}
    return fields, posted.files.get("photo", []), posted.problems


def _json_photos(
    body: dict[str, Any], max_photo_bytes: int
) -> tuple[dict[str, Any], list[bytes], list[str]]:
    given = body.pop("photos", [])
    if not isinstance(given, list) or not all(isinstance(p, str) for p in given):
        return body, [], ["photos: must be a list of base64 strings"]
    photos: list[bytes] = []
    found: list[str] = []
    for n, given_text in enumerate(given, start=1):
        # A data URL, as a browser's FileReader makes it, carries the base64 after the comma.
        text = given_text.partition(",")[2] if given_text.startswith("data:") else given_text
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            found.append(f"photo {n}: not base64")
            continue
        if len(data) > max_photo_bytes:
            raise Refused(413, [f"photo {n}: larger than {max_photo_bytes} bytes"])
        photos.append(data)
    return body, photos, found


async def serve_photo(store: FileStore, request: web.Request) -> web.StreamResponse:
    """GET a stored photo by its name (`<64 hex>.jpg|png`); anything else is 404."""
    name = request.match_info["name"]
    if name.endswith(".pdf"):
        return answer({"error": "no such photo"}, status=404)
    return await store.serve(name, "photo")
