"""Local API for PACS: the insurance cloud's viewer-plugin launch (seed 004 §4.4.3.1) built inside
the agent, so PACS needs no SM2: POST the doctor's data, get the three launch forms."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import structlog
from aiohttp import web
from pydantic import ValidationError

from agent.web.bodies import read_json_object
from agent.web.context import answer, refused

log = structlog.get_logger(__name__)
Launch = Callable[[Mapping[str, Any]], dict[str, str]]
PATH = "/api/v1/insurance/plugin-launch"


def add_viewer_launch_route(app: web.Application, launch: Launch) -> None:
    """Register the launch route (the app's token middleware protects it)."""
    app.router.add_post(PATH, partial(build_launch, launch))


async def build_launch(launch: Launch, request: web.Request) -> web.Response:
    """POST {hisUserId, type, doctorName, …, doctorIdCardNo}: 200 {command_line, url, http?}."""
    try:
        forms = launch(await read_json_object(request))
    except ValidationError as err:
        raise refused(err) from err
    log.info("insurance.plugin_launch_built")  # nothing of the doctor: the ID number least
    return answer(forms)
