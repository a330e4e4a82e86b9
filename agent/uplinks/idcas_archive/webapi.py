"""The IDCAS WebApis HIS and PACS call through the agent (seed 002 §4.8, 4.9, 6.1, 7.1-7.9), as
data: host, method, path, the parameters the seed marks required, and its one-of groups."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from agent.uplinks.idcas_archive.links import LinkError
from agent.uplinks.idcas_archive.pages import CARD_TYPES, REQ_TYPES, SEXES

Host = Literal["gateway", "doc_gateway", "portal"]
TIME_TYPES = frozenset(["0", "1", "2", "3", "6", "7"])
CLIENT_KINDS = frozenset(["1", "2", "3", "4", "5"])
FILE_FORMATS = frozenset(["Jpg", "Pdf"])


@dataclass(frozen=True, slots=True)
class Api:
    """One WebApi: where it is, what it requires, which values it fixes."""

    name: str
    host: Host
    method: Literal["GET", "POST"]
    path: str  # `{id}` is taken from the parameters
    required: tuple[str, ...] = ()
    one_of: tuple[tuple[str, ...], ...] = ()
    choices: tuple[tuple[str, frozenset[str]], ...] = ()
    fixed: tuple[tuple[str, str], ...] = ()
    title: str = ""


RECOGNITION_FIELDS = [
    "visit_id",
    "org_code",
    "depart_code",
    "depart_name",
    "doctor_no",
    "doctor_name",
    "doctor_id_card",
    "card_type",
    "card_no",
    "id_card_no",
    "patient_name",
    "patient_sex",
    "patient_age",
    "age_unit",
    "ip_address",
    "ip_mac",
    "req_type",
]

APIS: dict[str, Api] = {
    a.name: a
    for a in (
        Api("qrcode", "gateway", "POST", "api-idcas/shares/qrcode", title="报告单二维码地址 4.8"),
        Api(
            "image-viewer",
            "portal",
            "GET",
            "observations/image-web-view-url",
            required=("org_code", "accession_number", "patient_id", "modality"),
            fixed=(("need_token", "true"), ("access_source", "third")),
            title="获取影像浏览地址 4.9",
        ),
        Api(
            "recognition",
            "gateway",
            "GET",
            "api-idcas/observations/recognition",
            required=tuple(RECOGNITION_FIELDS),
            choices=(("card_type", CARD_TYPES), ("patient_sex", SEXES), ("req_type", REQ_TYPES)),
            title="获取互认检查（或检验）记录 6.1",
        ),
        Api(
            "exams",
            "gateway",
            "GET",
            "api-idcas/observations/exams",
            required=("time_type", "start_time", "end_time"),
            choices=(("time_type", TIME_TYPES),),
            title="获取市平台检查列表 7.1",
        ),
        Api(
            "province-exams",
            "gateway",
            "GET",
            "api-idcas/observations/observation-change-download-list",
            choices=(("time_type", TIME_TYPES),),
            title="获取省平台检查列表 7.2",
        ),
        Api(
            "all-exams",
            "gateway",
            "GET",
            "api-idcas/observations/observations-from-main-and-changedownload",
            required=("id_card_no",),
            title="获取市平台+省平台检查列表 7.3",
        ),
        Api(
            "exam-detail",
            "gateway",
            "GET",
            "api-idcas/observations/{id}/exam-detail",
            required=("id",),
            choices=(("client_kind", CLIENT_KINDS),),
            title="获取检查详情 7.4",
        ),
        Api(
            "report-view-url",
            "gateway",
            "GET",
            "api-idcas/observations/report-view-url",
            required=("business_id",),
            title="获取检查图文报告浏览地址 7.5",
        ),
        Api(
            "image-view-url",
            "gateway",
            "GET",
            "api-idcas/observations/image-web-view-url",
            required=("business_id",),
            title="获取检查影像浏览地址 7.6",
        ),
        Api(
            "print-exams",
            "doc_gateway",
            "GET",
            "api-document/print/exam-list",
            required=("exam_type", "org_code", "reg_time_begin", "reg_time_end"),
            one_of=(("accession_number", "placer_order_no", "id_card_no"),),
            title="获取打印检查列表 7.7",
        ),
        Api(
            "print-files",
            "doc_gateway",
            "GET",
            "api-document/print/file-list",
            required=("business_id", "file_type"),
            choices=(("file_type", frozenset(["Result"])), ("file_format", FILE_FORMATS)),
            title="获取打印文件列表 7.8",
        ),
        Api(
            "print-flag",
            "doc_gateway",
            "GET",
            "api-document/print/print-flag",
            required=("print_type", "org_code", "print_time", "client_host", "client_name"),
            one_of=(("placer_order_no", "business_id", "accession_number"),),
            choices=(("print_type", frozenset(["Result"])),),
            title="更新报告打印状态 7.9 (through the outbox)",
        ),
    )
}
SYNCHRONOUS = frozenset(APIS) - {"print-flag"}


def api_of(name: str) -> Api:
    """The WebApi called `name`; LinkError naming the known ones if there is none."""
    api = APIS.get(name)
    if api is None:
        raise LinkError([f"api: no WebApi {name!r}; known: {', '.join(sorted(APIS))}"])
    return api


def check(api: Api, values: Mapping[str, Any]) -> dict[str, str]:
    """The parameters as strings; LinkError naming each missing or out-of-dictionary one."""
    params: dict[str, str] = {}
    problems = []
    for name, raw in values.items():
        if raw is None:
            continue
        if isinstance(raw, bool):
            params[name] = "true" if raw else "false"
        elif isinstance(raw, str | int | float):
            params[name] = str(raw).strip()
        else:
            problems.append(f"{name}: must be a string, a number or a boolean")
    params.update(api.fixed)
    problems += [f"{name}: required" for name in api.required if not params.get(name)]
    for group in api.one_of:
        if not any(params.get(name) for name in group):
            problems.append(f"{'|'.join(group)}: one of them is required")
    for name, allowed in api.choices:
        if params.get(name) and params[name] not in allowed:
            problems.append(f"{name}: not one of {', '.join(sorted(allowed))}")
    if "{id}" in api.path and params.get("id") and not params["id"].isdigit():
        problems.append("id: not a whole number (检查归档业务唯一号)")
    item_needed = params.get("req_type") in ("3103", "3104") and api.name == "recognition"
    if item_needed and not params.get("observation_item"):
        problems.append("observation_item: required when req_type is 3103 or 3104")
    if problems:
        raise LinkError(problems)
    return params


def path_of(api: Api, params: dict[str, str]) -> str:
    """The API's path with `{id}` filled (and taken out of the query)."""
    if "{id}" not in api.path:
        return api.path
    return api.path.replace("{id}", params.pop("id"))
