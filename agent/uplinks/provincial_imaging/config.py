"""[uplinks.<name>] type = "provincial_imaging": seed 003 §3.4 (scenario 3: the hospital's own HIS
and the new provincial imaging platform), every key with the defaults the docs state."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, HttpUrl, model_validator

from agent.config import ConfigPath, Secret
from agent.listener_config import PlatformListener
from agent.uplinks.kit.config import HttpConnectionSection
from agent.uplinks.kit.fields import LengthUnit
from agent.uplinks.provincial_imaging import soap
from agent.uplinks.provincial_imaging.elements import Rules

HospitalId = Annotated[str, Field(pattern=r"^[0-9A-Za-z-]{0,16}$")]


class ProvincialImagingConfig(HttpConnectionSection):
    """[uplinks.<name>] type = "provincial_imaging" """

    # §3.4.1.1 接口地址 http://IP:端口/YlzSynInfoService/services/service (without ?wsdl)
    service_url: HttpUrl
    license: Secret  # Header.License, 由本系统提供 (the seed says VARCHAR(10), shows 32)
    application: Annotated[str, Field(min_length=1, max_length=10)] = "HIS"
    # 医院ID: the "<医院ID>_" prefix of SickNo and ApplyNo (§3.4.1.1, §3.4.2.1); "" for none.
    hospital_id: HospitalId
    prefixed_lengths: bool = False  # True: SickNo VARCHAR(10) / ApplyNo (16) include the prefix
    patient_class_rules: bool = True  # 门诊 (OU) / 住院 (IN) conditional required elements
    length_unit: LengthUnit = "chars"
    # The services' XML namespace (the seed gives no WSDL); or the platform's WSDL, saved.
    namespace: str = "http://service.ylz.com"
    wsdl_file: ConfigPath | None = None
    # The order of one apply form's INSERT / UPDATE / DELETE matters: a refused one holds the rest.
    dead_letter_blocks_key: bool = True
    # §3.4.2.1: where the platform calls SynStatusInfo (its own port, allow-listed).
    listener: PlatformListener = PlatformListener()
    status_path: Annotated[str, Field(pattern=r"^/[^?#]*$")] = "/services/SynStatusInfo"

    @model_validator(mode="after")
    def _wsdl_readable(self) -> ProvincialImagingConfig:
        if self.wsdl_file is not None:
            try:
                soap.SoapClient(soap.APPLY[0], None, self.wsdl_file)
            except Exception as err:  # zeep raises many kinds: all mean "unusable"
                raise ValueError(f"wsdl_file: no {soap.APPLY[0]} operation: {err}") from err
        return self

    def rules(self) -> Rules:
        """How orders are checked and written."""
        return Rules(
            hospital_id=self.hospital_id,
            length_unit=self.length_unit,
            prefixed_lengths=self.prefixed_lengths,
            patient_class_rules=self.patient_class_rules,
        )

    def apply_client(self) -> soap.SoapClient:
        """The SynApplyInfo client: the platform's WSDL if saved, else one built from config."""
        built = soap.wsdl(*soap.APPLY, self.namespace, str(self.service_url))
        return soap.SoapClient(soap.APPLY[0], None if self.wsdl_file else built, self.wsdl_file)
