"""The IDCAS portal's pages (seed 002) as data: path, how a link is protected, its parameters in
the seed's URL order, required ones, one-of groups and the dictionaries each page itself lists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# How a page's link is protected:
#   signed   token = 3DES(compact JSON) + sev + timestamp + MD5 sign (4.1, 4.2, 6.3)
#   reminder sev + timestamp + sign over an empty token; values in plain text (4.3)
#   h5       every value 3DES'd on its own, the user access token as `token` (4.4-4.6)
#   h5plain  values in plain text, the user access token as `token` (4.7)
#   plain    no parameter at all (5.1)
Style = Literal["signed", "reminder", "h5", "h5plain", "plain"]

# Dictionaries, per interface (they contradict each other across interfaces: never translated).
EXAM_TYPES = frozenset(
    ["CT", "CR", "DX", "MR", "MG", "NM", "XA", "RF", "US", "ES", "ECG", "PS"]  # 附录 检查类型
)
DEPARTMENTS = frozenset(["RIS", "UIS", "EIS", "PIS", "ECG", "LIS"])  # 附录 检查科室
IDENTITY_TYPES = frozenset(["1", "2", "3", "4", "5", "6", "7", "9"])  # 4.4 证件类型
CARD_TYPES = frozenset(["0", "1", "2", "3", "9"])  # 4.4, 6.1, 6.3 患者诊疗卡类型
H5_PATIENT_CLASSES = frozenset(["1", "2", "3", "4", "9"])  # 4.4: 1门诊 2住院 3急诊 4体检 9其它
SEXES = frozenset(["0", "1", "2"])  # 6.3 患者性别
AGE_UNITS = frozenset(["岁", "月", "天"])  # 6.3 年龄单位
REQ_TYPES = frozenset(["3101", "3103", "3104"])  # 6.3 触发代码
CLINIC_TYPES = frozenset(["0", "1"])  # 4.3: 0 repeat exam, 1 repeat lab (its second example)


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter: required, its dictionary, a date (yyyy-MM-dd), a maximum length."""

    name: str
    required: bool = False
    choices: frozenset[str] = frozenset()
    date: bool = False
    max_length: int | None = None
    number: bool = False  # a JSON number inside the token (6.3 types it short/int)


@dataclass(frozen=True, slots=True)
class Page:
    """One portal page: its URL layout is `layout` (a name, `name=constant`, or `@special`)."""

    name: str
    path: str
    style: Style
    layout: tuple[str, ...]
    query: tuple[Param, ...] = ()  # parameters in the URL (plain, or 3DES'd one by one)
    token: tuple[Param, ...] = ()  # fields of the 3DES'd JSON, in its order
    one_of: tuple[tuple[str, ...], ...] = ()  # at least one of each group
    required_when: tuple[tuple[str, str, str], ...] = ()  # (field, value, then required)
    keep_empty: bool = False  # empty parameters written as `name=` (the seed's examples)
    title: str = ""


def _p(names: str, **kw: object) -> tuple[Param, ...]:
    return tuple(Param(n, **kw) for n in names.split())  # type: ignore[arg-type]


DOCTOR_TOKEN = (
    Param("work_no", required=True, max_length=64),
    Param("org_code", required=True, max_length=64),
    *_p("med_rec_no visit_id accession_number id_card_no patient_name placer_order_no"),
)  # the appendix's order (V1): work_no first, though the table lists org_code first
PATIENT_KEYS = ("med_rec_no", "visit_id", "accession_number", "id_card_no", "patient_name")
RECOGNITION_TOKEN = (
    Param("visit_id", True, max_length=64),
    Param("org_code", True, max_length=64),
    Param("depart_code", True, max_length=64),
    Param("depart_name", True, max_length=64),
    Param("doctor_no", True, max_length=64),
    Param("doctor_name", True, max_length=36),
    Param("doctor_id_card", True, max_length=20),
    Param("card_type", True, CARD_TYPES, number=True),
    Param("card_no", True, max_length=20),
    Param("id_card_no", True, max_length=20),
    Param("patient_name", True, max_length=20),
    Param("patient_sex", True, SEXES, number=True),
    Param("patient_age", True, number=True),
    Param("age_unit", True, AGE_UNITS),
    Param("ip_address", True, max_length=128),
    Param("ip_mac", True, max_length=128),
    Param("req_type", True, REQ_TYPES, number=True),
    Param("observation_item", max_length=200),
)
EXAM_QUERY = (
    Param("obs_id"),
    Param("perform_org_code", True),
    Param("accession_number"),
    Param("patient_id"),
    Param("placer_order_no"),
    Param("exam_type", True, EXAM_TYPES),
)
H5_DETAIL = (
    Param("obs_id"),
    Param("perform_org_code", True),
    Param("accession_number", True),
    Param("patient_id", True),
    Param("placer_order_no"),
)
EXAM_LAYOUT = ("obs_id", "perform_org_code", "accession_number", "patient_id", "placer_order_no")
REPORT_LIST = (
    Param("identity_type", True, IDENTITY_TYPES),
    Param("identity_no", True),
    Param("card_type", choices=CARD_TYPES),
    Param("card_no"),
    Param("clinic_no"),
    Param("med_rec_no"),
    Param("perform_org_code", True),
    Param("exam_type", choices=EXAM_TYPES),
    Param("perform_depart_code", choices=DEPARTMENTS),
    *_p("req_time_start req_time_end perform_time_start perform_time_end", date=True),
    *_p("report_time_start report_time_end", date=True),
    Param("patient_class", choices=H5_PATIENT_CLASSES),
    Param("result_state_code"),
)
REMINDER = (
    Param("user_org_code", True, max_length=64),
    Param("user_org_name", True),
    Param("user_id", True),
    Param("user_name", True),
    Param("patient_name", True),
    Param("id_card_no", True),
    Param("mobile_phone"),
    Param("start_perform_date", date=True),
    Param("end_perform_date", date=True),
    Param("exam_body_part"),
    Param("exam_item"),
    Param("exam_type"),
)
SIGN = ("@token", "@sev", "@timestamp", "@sign")

PAGES: dict[str, Page] = {
    p.name: p
    for p in (
        Page(
            "clinic-view",
            "/clinicview/index.html",
            "signed",
            ("@source", "nosearch=true", "start_time", "end_time", *SIGN),
            query=_p("start_time end_time", date=True),
            token=DOCTOR_TOKEN,
            one_of=((*PATIENT_KEYS, "placer_order_no"),),
            title="临床调阅（PC端）4.1",
        ),
        Page(
            "health-record",
            "/clinicview/exam-report.html",
            "signed",
            (*EXAM_LAYOUT, "exam_type", "from=third", "clinic_type=0", *SIGN),
            query=EXAM_QUERY,
            token=DOCTOR_TOKEN,
            one_of=(("obs_id", "accession_number", "placer_order_no"),),
            keep_empty=True,
            title="健康档案（PC端）4.2",
        ),
        Page(
            "repeat-reminder",
            "/clinicview/repeat-reminder.html",
            "reminder",
            ("clinic_type", "@source", *(p.name for p in REMINDER), "@sev", "@timestamp", "@sign"),
            query=(Param("clinic_type", True, CLINIC_TYPES), *REMINDER),
            required_when=(
                ("clinic_type", "0", "exam_body_part"),
                ("clinic_type", "1", "exam_item"),
            ),
            title="重复检查检验提醒（PC端）4.3",
        ),
        Page(
            "recognition",
            "/clinicview/recognition.html",
            "signed",
            ("@source", *SIGN),
            token=RECOGNITION_TOKEN,
            required_when=(
                ("req_type", "3103", "observation_item"),
                ("req_type", "3104", "observation_item"),
            ),
            title="互认检查（或检验）记录WebView 6.3",
        ),
        Page(
            "h5-report-list",
            "/sharevisit/mobile/digitalimage/report-list",
            "h5",
            ("encrypt_type=1", "nosearch=true", *(p.name for p in REPORT_LIST), "@user_token"),
            query=REPORT_LIST,
            one_of=(("req_time_start", "perform_time_start", "report_time_start"),),
            keep_empty=True,
            title="检查列表（H5端）4.4",
        ),
        Page(
            "h5-exam-detail",
            "/sharevisit/mobile/digitalimage/exam-detail",
            "h5",
            (*EXAM_LAYOUT, "exam_type", "from=third", "encrypt_type=1", "@user_token"),
            query=(*H5_DETAIL, Param("exam_type", True, EXAM_TYPES)),
            keep_empty=True,
            title="检查详情（H5端）4.5",
        ),
        Page(
            "h5-lab-detail",
            "/sharevisit/mobile/digitalimage/lab-detail",
            "h5",
            (*EXAM_LAYOUT, "exam_type", "from=third", "encrypt_type=1", "@user_token"),
            query=(*H5_DETAIL, Param("exam_type", True)),  # 检验类型: free text (血常规…)
            keep_empty=True,
            title="检验详情（H5端）4.6",
        ),
        Page(
            "h5-health-record",
            "/sharevisit/mobile/digitalimage/exam-report",
            "h5plain",
            (*EXAM_LAYOUT, "exam_type", "from=third", "clinic_type=0", "@user_token"),
            query=EXAM_QUERY,
            one_of=(("obs_id", "accession_number", "placer_order_no"),),
            keep_empty=True,
            title="健康档案（H5端）4.7",
        ),
        Page(
            "quality-report",
            "/sharevisit/mobile/system/dataquality",
            "plain",
            (),
            title="质量报告（H5）5.1",
        ),
    )
}
