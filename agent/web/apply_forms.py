"""Local API for RIS registration: 基卫 apply forms (seed 003 §3.1) looked up through the agent
(which holds the AES key), journaled, and listed again from the store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Annotated, Any, Literal

import structlog
from aiohttp import web
from pydantic import Field, ValidationError

from agent.errors import AgentError
from agent.events import Event
from agent.imaging.apply_forms import COLUMNS, find_forms
from agent.imaging.handler import APPLY_FORMS
from agent.inputs import Body
from agent.web.bodies import only_query, query_int, read_json_object
from agent.web.context import EMIT_KEY, QUERY_KEY, answer, refused

log = structlog.get_logger(__name__)
Lookup = Callable[[Mapping[str, Any]], Awaitable[list[dict[str, str]]]]
PATH = "/api/v1/apply-forms"
LOOKUP_KEY = web.AppKey("apply_form_lookup", object)


class ApplyFormQuery(Body):
    """§3.1.3.1.1: every field optional (可空 N means "may be empty" in the seed's sense)."""

    medicarecode: Annotated[str, Field(max_length=64)] | None = None  # 病人卡号
    yyid00: Annotated[str, Field(max_length=32)] | None = None  # 医院id (default: config)
    businesstype: Literal["1", "2"] | None = None  # 1 门诊, 2 住院
    type: Literal["1", "2"] | None = None  # 1 心电, 2 影像


def add_apply_form_routes(app: web.Application, lookup: Lookup | None) -> None:
    """GET the stored forms; POST …/lookup asks 基卫 (only when an uplink has it enabled)."""
    app.router.add_get(PATH, list_forms)
    if lookup is not None:
        app[LOOKUP_KEY] = lookup
        app.router.add_post(f"{PATH}/lookup", lookup_forms)


async def lookup_forms(request: web.Request) -> web.Response:
    """POST {medicarecode, yyid00, businesstype, type} (each optional): 200 {"forms": [...]} as
    基卫 answered, journaled first (the source of applyNo); 502 when 基卫 cannot be had."""
    only_query(request)
    try:
        query = ApplyFormQuery.model_validate(await read_json_object(request))
    except ValidationError as err:
        raise refused(err) from err
    given = query.model_dump(exclude_none=True)
    lookup: Any = request.app[LOOKUP_KEY]
    try:
        forms = await lookup(given)
    except AgentError as err:
        log.warning("jiwei.lookup_failed", error=str(err))
        return answer({"error": str(err)}, status=502)
    if forms:
        await request.app[EMIT_KEY](Event(APPLY_FORMS, "api", {"forms": forms}))
    log.info("jiwei.forms_found", count=len(forms))  # the forms carry patient data: not logged
    return answer({"forms": forms})


async def list_forms(request: web.Request) -> web.Response:
    """GET ?medicarecode=&yyid00=&businesstype=&type=&fkey=&limit=: stored forms, newest first."""
    only_query(request, *COLUMNS, "limit")
    where = {k: v for k, v in request.query.items() if k in COLUMNS}
    limit = query_int(request, "limit", 50, 1, 500)
    forms = await request.app[QUERY_KEY](partial(find_forms, where=where, limit=limit))
    return answer({"forms": forms})
