"""Local API for HIS: the provincial platform's report-viewing URL (seed 003 §3.4.3)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

from aiohttp import web

from agent.web.bodies import Refused, only_query
from agent.web.context import answer

Build = Callable[[Mapping[str, str], str], str]
PATH = "/api/v1/report-viewer-url"
PARAMS = ("pat_local_id", "exam_no", "sick_id", "inpatient_no", "outpatient_no")


def add_report_viewer_route(app: web.Application, build: Build) -> None:
    """GET the URL (the app's token middleware protects it)."""
    app.router.add_get(PATH, partial(viewer_url, build))


async def viewer_url(build: Build, request: web.Request) -> web.Response:
    """GET ?sick_id=&exam_no=&…&hospital_id=: 200 {"url"}; 400 naming what is missing."""
    only_query(request, *PARAMS, "hospital_id")
    given = {k: v for k, v in request.query.items() if k in PARAMS}
    try:
        url = build(given, request.query.get("hospital_id", ""))
    except ValueError as err:
        raise Refused(400, [str(err)]) from err
    return answer({"url": url})
