"""The seed's request tables as data (kit Fields), checked alike by uplink and simulator."""

from __future__ import annotations

from collections.abc import Mapping

from agent.uplinks.kit.fields import Checks, Field, TimeFormat, unknown
from agent.uplinks.kit.fields import validate as validate_table

FieldSpec = Field  # the seed's tables predate the kit's name
AUTH_FIELDS = ("sign", "timestamp", "accessToken")  # set by the uplink, never by the domain
INSTITUTION_FIELDS = ("uniqueCode", "creditCode")  # filled from the uplink's config
DEFAULT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def checks(
    time_format: str = DEFAULT_TIME_FORMAT, date_format: str = DEFAULT_TIME_FORMAT
) -> Checks:
    """The seed's DT fields in `time_format`, its `date` fields in `date_format`; a form's text."""
    return Checks(
        formats={"DT": TimeFormat(time_format), "date": TimeFormat(date_format)},
        integers_as_text=True,
        skip=frozenset(AUTH_FIELDS),
    )


def validate(
    endpoint: str,
    form: Mapping[str, object],
    time_format: str = DEFAULT_TIME_FORMAT,
    date_format: str = DEFAULT_TIME_FORMAT,
) -> list[str]:
    """Every violation of `endpoint`'s table in `form` (auth fields excepted), one line each."""
    fields = ENDPOINTS.get(endpoint)
    if fields is None:
        return [f"unknown endpoint {endpoint!r}"]
    return validate_table({s.name: s for s in fields}, form, checks(time_format, date_format))


def unknown_fields(endpoint: str, form: Mapping[str, object]) -> list[str]:
    """Keys of `form` the endpoint's table does not list (typos, wrong endpoint)."""
    return sorted(unknown({s.name: s for s in ENDPOINTS.get(endpoint, ())}, form))


def lists(endpoint: str, name: str) -> bool:
    """Whether the endpoint's table has the field."""
    return any(spec.name == name for spec in ENDPOINTS.get(endpoint, ()))


def _f(name: str, seed_type: str, required: str, description: str, *choices: str) -> Field:
    return Field(name, seed_type, required == "Y", description, choices)


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

TOKEN_REQUEST: tuple[Field, ...] = (
    _SIGN,
    _f("timestamp", "S13", "Y", "时间戳"),
    _f("accessKey", "S64", "Y", "分配"),
    _f("accessSecret", "S64", "Y", "分配"),
)

ENDPOINTS: dict[str, tuple[Field, ...]] = {
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
