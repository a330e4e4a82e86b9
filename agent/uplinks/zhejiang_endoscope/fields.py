"""The seed's request tables as data: one FieldSpec per field, checked by uplink and simulator."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

AUTH_FIELDS = ("sign", "timestamp", "accessToken")  # set by the uplink, never by the domain
INSTITUTION_FIELDS = ("uniqueCode", "creditCode")  # filled from the uplink's config
DEFAULT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_SEED_TYPE = re.compile(r"^(S|N)(\.{0,2})(\d+)$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One request parameter as the seed's table states it."""

    name: str
    seed_type: str  # verbatim: S..64, S.100, S9, N.1, N..32, DT, date
    required: bool
    description: str
    choices: tuple[str, ...] = ()  # allowed values, where the description enumerates them

    @property
    def base(self) -> str:
        """S (string), N (number) or T (date-time: the seed's DT and date)."""
        match = _SEED_TYPE.match(self.seed_type)
        return match.group(1) if match else "T"

    @property
    def max_length(self) -> int | None:
        """Maximum characters (S) or digits (N); None for date-times."""
        match = _SEED_TYPE.match(self.seed_type)
        return int(match.group(3)) if match else None

    @property
    def exact(self) -> bool:
        """True for `S9`-style types (no dots): exactly that many characters."""
        match = _SEED_TYPE.match(self.seed_type)
        return bool(match and not match.group(2) and match.group(1) == "S")

    def check(
        self,
        value: object,
        time_format: str = DEFAULT_TIME_FORMAT,
        date_format: str = DEFAULT_TIME_FORMAT,
    ) -> str | None:
        """Return why `value` (present, not empty) breaks this field's rule, or None.

        `time_format` applies to the seed's DT fields, `date_format` to its `date` fields.
        """
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return f"{self.name}: bad type {type(value).__name__} (expected {self.seed_type})"
        text = render(value)
        limit = self.max_length
        if self.base == "N":
            if isinstance(value, float) and not math.isfinite(value):
                return f"{self.name}: not a number (expected {self.seed_type})"
            if not _NUMBER.match(text):
                return f"{self.name}: not a number (expected {self.seed_type})"
            digits = sum(c.isdigit() for c in text)
            if limit is not None and digits > limit:
                return f"{self.name}: {digits} digits, at most {limit} allowed ({self.seed_type})"
        elif self.base == "S":
            if isinstance(value, float):
                return f"{self.name}: bad type float (expected {self.seed_type})"
            if limit is not None and self.exact and len(text) != limit:
                return f"{self.name}: {len(text)} characters, exactly {limit} required"
            if limit is not None and len(text) > limit:
                return f"{self.name}: {len(text)} characters, at most {limit} allowed"
        else:
            wanted = time_format if self.seed_type == "DT" else date_format
            try:
                datetime.strptime(text, wanted)  # a local wall-clock time, no zone
            except ValueError:
                return f"{self.name}: not a date-time in the format {wanted!r}"
        if self.choices and text not in self.choices:
            return f"{self.name}: must be one of {', '.join(self.choices)}"
        return None


def render(value: str | int | float) -> str:
    """How a payload value is written into the form."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def is_empty(value: object) -> bool:
    """None and blank strings count as absent."""
    return value is None or (isinstance(value, str) and not value.strip())


def validate(
    endpoint: str,
    form: Mapping[str, object],
    time_format: str = DEFAULT_TIME_FORMAT,
    date_format: str = DEFAULT_TIME_FORMAT,
) -> list[str]:
    """Every violation of `endpoint`'s table in `form` (auth fields excepted), one line each."""
    table = ENDPOINTS.get(endpoint)
    if table is None:
        return [f"unknown endpoint {endpoint!r}"]
    problems: list[str] = []
    for spec in table:
        if spec.name in AUTH_FIELDS:
            continue
        value = form.get(spec.name)
        if is_empty(value):
            if spec.required:
                problems.append(f"{spec.name}: required field is missing")
            continue
        problem = spec.check(value, time_format, date_format)
        if problem is not None:
            problems.append(problem)
    return problems


def unknown_fields(endpoint: str, form: Mapping[str, object]) -> list[str]:
    """Keys of `form` the endpoint's table does not list (typos, wrong endpoint)."""
    known = {spec.name for spec in ENDPOINTS.get(endpoint, ())}
    return sorted(k for k in form if k not in known)


def lists(endpoint: str, name: str) -> bool:
    """Whether the endpoint's table has the field."""
    return any(spec.name == name for spec in ENDPOINTS.get(endpoint, ()))


def _f(name: str, seed_type: str, required: str, description: str, *choices: str) -> FieldSpec:
    return FieldSpec(name, seed_type, required == "Y", description, choices)


_SIGN = _f("sign", "S..100", "Y", "加签(计算方式见备注)")
_TOKEN = _f("accessToken", "S..100", "Y", "token")
_UNIQUE = _f("uniqueCode", "S9", "Y", "全国唯一码")
_UNIQUE_LONG = _f(
    "uniqueCode",
    "S9",
    "Y",
    "全国唯一识别码印在《医疗机构执业许可证》上，在卫生监督管理系统上也可查",
)
_CREDIT_N = _f("creditCode", "S18", "N", "统一社会信用代码")
_CREDIT_Y = _f("creditCode", "S18", "Y", "统一社会信用代码")
_STATUS_01 = ("0", "1")

TOKEN_REQUEST: tuple[FieldSpec, ...] = (
    _SIGN,
    _f("timestamp", "S13", "Y", "时间戳"),
    _f("accessKey", "S64", "Y", "分配"),
    _f("accessSecret", "S64", "Y", "分配"),
)

ENDPOINTS: dict[str, tuple[FieldSpec, ...]] = {
    "uploadReadData": (
        _SIGN,
        _f("timestamp", "S13", "Y", "时间戳"),
        _f("cleanId", "S.100", "Y", "内镜洗消记录编号（清洗批次）"),
        _f("collectionTime", "DT", "Y", "采集时间,使用步骤不传"),
        _f(
            "deviceRfidNumber",
            "S..64",
            "Y",
            "内镜rfid码（唯一）(内镜要跟内镜对应上rfidNumber，不然也不展示)",
        ),
        _f(
            "readerId",
            "S..64",
            "Y",
            "所刷读卡器编号（ip等唯一标识均可）（读卡器rfid码跟读卡器要对应上，不然不展示rfidNumber）",
        ),
        _f("uploadUser", "S..50", "Y", "上传用户姓名或编号"),
        _UNIQUE,
        _CREDIT_N,
    ),
    "uploadUseStepData": (
        _SIGN,
        _f("timestamp", "S13", "Y", "时间戳"),
        _f("cleanId", "S.100", "Y", "内镜使用前的清洗记录id（清洗批次）"),
        _f("identityId", "S..32", "Y", "病人编号（HIS系统编号）"),
        _f("name", "S..100", "N", "病人姓名"),
        _f("number", "S..64", "Y", "内镜编号与内镜信息里面的内镜编号number对应"),
        _f("uploadUser", "S..32", "Y", "上传者姓名或编号"),
        _UNIQUE,
        _CREDIT_Y,
    ),
    "addEndoSocopeInfo": (
        _SIGN,
        _TOKEN,
        _f("timestamp", "S.13", "Y", "时间戳"),
        _f("number", "S..64", "Y", "内镜编号（唯一编号，可以与内镜钢印号相同）"),
        _f("rfidNumber", "S..64", "Y", "内镜rfid码"),
        _f("typeName", "S..64", "N", "内镜类别名称"),
        _f("model", "S..64", "N", "内镜品牌"),
        _f("steelNumber", "S..64", "N", "内镜钢印号"),
        _f("aliasName", "S..64", "N", "内镜别名（eg：检查镜、治疗镜）"),
        _f("status", "N.1", "Y", "状态 0 正常 1缺损", *_STATUS_01),
        _f("buyDate", "DT", "N", "购买时间"),
        _f("durableYears", "N.2", "N", "使用年限（单位 年）"),
        _UNIQUE,
        _CREDIT_N,
    ),
    "addCardReaderInfo": (
        _SIGN,
        _TOKEN,
        _f("timestamp", "S..13", "Y", "时间戳"),
        _f("rfidNumber", "S..64", "Y", "读卡器设备rfid码"),
        _f("stepId", "S..11", "Y", "读卡器所在步骤id"),
        _f("stepName", "S..64", "Y", "步骤名称"),
        _f("status", "N.1", "N", "状态 0 正常 1缺损", *_STATUS_01),
        _UNIQUE,
        _CREDIT_N,
    ),
    "addCleanStepInfo": (
        _SIGN,
        _TOKEN,
        _f("timestamp", "S..13", "Y", "时间戳"),
        _f("stepId", "N..32", "Y", "清洗步骤ID"),
        _f("stepName", "S..64", "Y", "清洗步骤名称"),
        _f("orderId", "N..11", "Y", "清洗步骤顺序ID"),
        _f("orderTime", "N..11", "N", "距离上一个步骤的最短间隔时长（单位 秒）"),
        _f("parentId", "S..64", "N", "此步骤父ID"),
        _UNIQUE,
        _CREDIT_N,
    ),
    "uploadEnzymeWashData": (
        _SIGN,
        _TOKEN,
        _f("rfidNumber", "S.100", "Y", "本次酶洗内镜编号"),
        _f("userName", "S..64", "Y", "清洗人员姓名或编号"),
        _f("cleanId", "S..64", "Y", "本次内镜清洗流程编号"),
        _f("temp", "S..20", "N", "清洗温度"),
        _f("startTime", "DT", "Y", "清洗开始时间"),
        _f("endTime", "DT", "Y", "清洗结束时间"),
        _f("washTime", "DT", "N", "酶液刷洗时间"),
        _f("ratio", "S..20", "N", "实际酶洗配比浓度"),
        _UNIQUE_LONG,
        _CREDIT_Y,
    ),
    "uploadDisinfectData": (
        _SIGN,
        _TOKEN,
        _f("ratioNumber", "S.100", "Y", "配置消毒/灭菌剂批次编号"),
        _f("disinfectDuration", "N.20", "Y", "消毒或灭菌剂的消毒灭菌时长（分钟为单位）"),
        _f(
            "disinfectantConc",
            "N.1",
            "Y",
            "消毒剂/灭菌剂浓度 1-邻苯二甲醛:0.5-0.6% 2-戊二醛:2% 3-过氧乙酸:0.2-0.35%"
            " 4-二氧化氯:100-500mg/L 5-酸性氧化电位水:50-70mg/L;氧化还原点位≥1100Mv;"
            "残留氯离子＜1000mg/L; 6-自定义:说明书",
            *"123456",
        ),
        _f("imageUrl", "S..200", "N", "试纸照片:检测后试纸的照片存储地址"),
        _f("uploadTime", "date", "Y", "检测结果上传时间"),
        _f("frequency", "S..200", "Y", "频次（次/日）"),
        _f("result", "N.1", "Y", "结果（0-不合格，1-合格）", *_STATUS_01),
        _UNIQUE_LONG,
        _CREDIT_Y,
    ),
    "sterProcess": (
        _SIGN,
        _TOKEN,
        _f("cleanId", "S..64", "Y", "内镜清洗流程编号"),
        _f("rfidNumber", "S..100", "Y", "内镜编号"),
        _f("userName", "S..64", "Y", "清洗人员姓名或编号"),
        _f("startTime", "date", "Y", "消毒/灭菌开始时间"),
        _f("endTime", "date", "Y", "消毒/灭菌结束时间"),
        _f("type", "N.1", "Y", "消毒剂种类 0 消毒剂、1 灭菌剂", *_STATUS_01),
        _f("ratioNumber", "S..64", "N", "消毒/灭菌剂配比批次编号"),
        _UNIQUE,
        _CREDIT_N,
    ),
    "rinseWater": (
        _SIGN,
        _TOKEN,
        _f("wteNumber", "S..13", "Y", "制水设备编号"),
        _f("status", "N.1", "Y", "设备状态：1-正常，2-故障", "1", "2"),
        _f("dfcwStatus", "N.1", "N", "消毒滤芯用水量（1-正常，2-需更换）", "1", "2"),
        _UNIQUE,
        _CREDIT_Y,
    ),
    "endoscopeSave": (
        _SIGN,
        _TOKEN,
        _f("storagetNumber", "S..13", "Y", "内镜存储柜编号"),
        _f("rfidNumber", "S..100", "Y", "内镜编号或内镜钢印编号"),
        _f("storeTime", "date", "Y", "内镜存入日期"),
        _f("takeoutTime", "date", "Y", "内镜取出日期"),
        _UNIQUE,
        _CREDIT_Y,
    ),
    "cleaningEffectTesting": (
        _SIGN,
        _TOKEN,
        _f("rfidNumber", "S..100", "Y", "内镜编号或内镜钢印编号"),
        _f("testingTime", "date", "Y", "检测时间"),
        _f("inspector", "S..64", "Y", "检测人姓名或编号"),
        _f("pic1", "S..200", "Y", "照片1:AI自动辅助识别污渍、水渍的照片地址"),
        _f("pic2", "S..200", "N", "照片2:AI自动辅助识别污渍、水渍的照片地址"),
        _f("pic3", "S..200", "N", "照片3:AI自动辅助识别污渍、水渍的照片地址"),
        _f("result", "N.1", "Y", "检测结果:0-不合格，1-合格", *_STATUS_01),
        _UNIQUE,
        _CREDIT_N,
    ),
}
