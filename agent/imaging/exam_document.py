"""The exam document RIS/PACS post (v1): seed 003 §3.2.3.1's names, lengths and required flags.

The national exam-push vocabulary most RIS already speak, plus three fields of the agent's own
(registerTime, cancelTime, an item's refundTime). The domain keeps it as posted and works from
the neutral record made of it (agent/imaging/exam_record.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator

from agent.inputs import BirthDate, Body, Moment


def _vc(n: int, required: bool = False) -> Any:
    """VC(n): text of at most n characters; required ones must not be empty."""
    return Field(min_length=1 if required else 0, max_length=n)


Text32 = Annotated[str, _vc(32)]
Text64 = Annotated[str, _vc(64)]
Text128 = Annotated[str, _vc(128)]
Text512 = Annotated[str, _vc(512)]
Required32 = Annotated[str, _vc(32, required=True)]
Amount = Annotated[str, Field(pattern=r"^\d{1,6}(\.\d{1,2})?$")]  # N(8,2)


class _Part(Body):
    model_config = ConfigDict(str_strip_whitespace=True, coerce_numbers_to_str=True)

    @field_validator("*", mode="before")
    @classmethod
    def _codes_as_text(cls, value: Any) -> Any:
        # The seed's codes are strings ("70"); senders often post them as JSON numbers.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class Identity(_Part):
    """One of the patient's ID documents."""

    # The seed marks none of an identity's fields required (§3.2.3.1): neither does the API.
    idType: Literal["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "99"] | None = None
    idName: Text32 | None = None
    idNumber: Text32 | None = None


class PatientInfo(_Part):
    """patientInfo: the patient as the hospital knows them."""

    multiline = frozenset({"patientMemo"})

    sickId: Required32
    cardNo: Text32 | None = None
    siCard: Text32 | None = None
    miCard: Text32 | None = None
    patientSource: Literal["门诊", "急诊", "住院", "体检", "其他"] | None = None
    inpatientNo: Text32 | None = None
    outPatientNo: Text32 | None = None
    bedno: Text32 | None = None
    name: Required32
    sex: Literal["男", "女", "其他"]
    age: Annotated[str, _vc(16)] | None = None
    birthDate: BirthDate | None = None
    height: Annotated[str, _vc(16)] | None = None
    weight: Annotated[str, _vc(16)] | None = None
    nativePlace: Text128 | None = None
    nationality: Text128 | None = None
    nation: Annotated[str, _vc(16)] | None = None
    address: Annotated[str, _vc(256)] | None = None
    zipCode: Annotated[str, _vc(16)] | None = None
    phoneNumber: Annotated[str, _vc(16)] | None = None
    maritalStatus: Literal["0", "1"] | None = None
    identity: list[Identity] | None = None
    degree: Text32 | None = None
    chargeType: Literal["0", "1", "2", "3", "4"] | None = None
    patientMemo: Text512 | None = None


class ExamItem(_Part):
    """One examined item (examItemList)."""

    itemCode: Text32 | None = None
    itemName: Annotated[str, _vc(128, required=True)]
    itemCost: Text32 | None = None
    itemCharge: Text32 | None = None
    orderNo: Text32 | None = None
    refundTime: Moment | None = None  # the agent's: when the item was refunded or cancelled


class ExamOrgan(_Part):
    """One examined body part (examOrganList), in the order of the items."""

    organName: Annotated[str, _vc(128, required=True)]


class ExamInfo(_Part):
    """examInfo: the order and how far it got (hospital codes default to the uplink's)."""

    multiline = frozenset({"physSign", "clinSymp", "clinDiag", "examMemo"})

    # Required by the push (基卫 finds the report by it); absent, the domain takes it from the
    # 基卫 apply forms looked up for the patient (agent/imaging/apply_forms.py).
    applyNo: Text32 | None = None
    patientID: Text32 | None = None  # 检查号; the uplink checks it against the images
    examStatus: Literal["50", "60", "65", "70"]  # images, preliminary, returned, final report
    examTime: Moment
    examClass: Required32
    examSubClass: Text32 | None = None
    commonName: Text32 | None = None
    # Only their entries' itemName / organName are required in the seed, not the lists.
    examItemList: list[ExamItem] | None = None
    examOrganList: list[ExamOrgan] | None = None
    device: Text128 | None = None
    performDeptCode: Text32 | None = None
    performDeptName: Text64 | None = None
    technicanCode: Text32 | None = None
    technicanName: Text32 | None = None
    reqHospitalCode: Text32 | None = None  # the requesting hospital (医共体); default hospitalCode
    reqHospitalName: Text64 | None = None
    reqWardCode: Text32 | None = None
    reqWardName: Text64 | None = None
    reqDeptCode: Text32 | None = None
    reqDeptName: Text64 | None = None
    reqPhysicianCode: Text32 | None = None
    reqPhysicianName: Text32 | None = None
    reqTime: Moment | None = None
    scheduledTime: Moment | None = None
    physSign: Text512 | None = None
    clinSymp: Text512 | None = None
    clinDiag: Text512 | None = None
    clinDiagTime: Moment | None = None
    cost: Amount | None = None
    charge: Amount | None = None
    chargeFlag: Literal["0", "1"] | None = None
    examMemo: Text512 | None = None
    specimenNumber: Text32 | None = None
    specimenCategory: Annotated[str, _vc(20)] | None = None
    sampleTime: Moment | None = None
    specimenReceiveTime: Moment | None = None
    sampleFixativeName: Annotated[str, _vc(50)] | None = None
    specimenStatus: Annotated[str, _vc(20)] | None = None
    registerTime: Moment | None = None  # the agent's: when the exam was registered
    cancelTime: Moment | None = None  # the agent's: when the whole exam was cancelled


class Category(_Part):
    """A disease of the report (ICD)."""

    caType: Text32 | None = None
    caCode: Text32 | None = None
    caName: Text128 | None = None


class ReportImage(_Part):
    """An image of the report."""

    rptImgType: Annotated[str, _vc(16)] | None = None  # BMP/JPG/DICOM (optional in the seed)
    rptImgPath: Annotated[str, _vc(128)] | None = None
    rptImgPos: Text32 | None = None
    rptImgDesc: Text32 | None = None
    sopInstanceUID: Annotated[str, _vc(256)] | None = None


class Report(_Part):
    """reportList (one report, despite the name)."""

    multiline = frozenset({"description", "impression", "recommendation"})

    reportNo: Text32 | None = None
    category: list[Category] | None = None
    description: Annotated[str, _vc(2000)] | None = None
    impression: Annotated[str, _vc(1000)] | None = None
    recommendation: Text512 | None = None
    abNormalFlag: Literal["0", "1"] | None = None
    reporter: Text32 | None = None
    reportTime: Moment | None = None
    affirmReporter: Text32 | None = None
    affirmTime: Moment | None = None
    printTime: Moment | None = None
    reportImage: list[ReportImage] | None = None


class Exam(_Part):
    """POST /api/v1/exams: an order or report, joined to a study by studyUID or accessionNo."""

    examNo: Required32
    hospitalCode: Text32 | None = None  # the exam's hospital where one front-end serves several
    patientInfo: PatientInfo
    examInfo: ExamInfo
    reportList: Report | None = None
    studyUID: Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)*$", max_length=64)] | None = None
    accessionNo: Text32 | None = None  # the images' AccessionNumber (0008,0050)


def exam_payload(exam: Exam) -> dict[str, Any]:
    """The `imaging.exam` event payload: the document as validated, absent fields left out."""
    return exam.model_dump(mode="json", exclude_none=True)
