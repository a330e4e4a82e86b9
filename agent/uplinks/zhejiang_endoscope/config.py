"""[uplinks.<name>] type = "zhejiang_endoscope": every key, with the defaults the docs state."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from agent.config import Seconds, Secret
from agent.uplinks.kit.config import TokenPlatformSection
from agent.uplinks.zhejiang_endoscope.fields import DEFAULT_TIME_FORMAT
from agent.uplinks.zhejiang_endoscope.sign import DEFAULT_SCHEME, SchemeName

TEST_BASE_URL = "http://test.zhihuiweijian.com/openapi"
ScopeRef = Literal["domain", "rfid", "number", "steel_number"]
# What each rfidNumber field carries, after its description in the seed: 本次酶洗内镜编号 (3.3.6),
# 内镜编号 (3.3.8), 内镜编号或内镜钢印编号 (3.4.0, 3.4.1): the scope's number everywhere.
SCOPE_REF_DEFAULTS: dict[str, ScopeRef] = {
    "uploadEnzymeWashData": "number",
    "sterProcess": "number",
    "endoscopeSave": "number",
    "cleaningEffectTesting": "number",
}


class ZhejiangEndoscopeConfig(TokenPlatformSection):
    """[uplinks.<name>] type = "zhejiang_endoscope" """

    # base_url: the seed's 接口前缀, e.g. TEST_BASE_URL (with TLS and timeout keys, from the kit)
    access_key: Annotated[str, Field(min_length=1, max_length=64)]
    access_secret: Secret
    unique_code: Annotated[str, Field(min_length=9, max_length=9)]  # 全国唯一码 (S9)
    credit_code: Annotated[str, Field(pattern=r"^[0-9A-Z]{18}$")]  # 统一社会信用代码 (S18)
    sign_scheme: SchemeName = DEFAULT_SCHEME
    time_format: str = DEFAULT_TIME_FORMAT  # strftime format of the seed's DT fields (checked)
    date_format: str = DEFAULT_TIME_FORMAT  # strftime format of the seed's `date` fields
    auth_where_unlisted: Literal["field", "header", "omit"] = "field"
    timestamp_everywhere: bool = True  # also where a table lacks `timestamp` (the sign uses it)
    token_error_codes: list[int] = [401]
    token_error_keywords: list[str] = ["token"]
    busy_codes: list[int] = [429, 500, 502, 503, 504]
    busy_keywords: list[str] = ["繁忙", "稍后", "busy"]
    sign_error_codes: list[int] = [403]
    answer_format: Literal["auto", "json", "xml"] = "auto"  # upload answers (seed: XML; JSON seen)
    # Per endpoint with a scope in `rfidNumber`: "number", "rfid", "steel_number" (钢印), or
    # "domain" (what [domains.*] scope_ref says); endpoints not named keep SCOPE_REF_DEFAULTS.
    scope_refs: dict[str, ScopeRef] = {}

    @field_validator("scope_refs")
    @classmethod
    def _scope_endpoints(cls, value: dict[str, ScopeRef]) -> dict[str, ScopeRef]:
        unknown = sorted(set(value) - set(SCOPE_REF_DEFAULTS))
        if unknown:
            known = ", ".join(SCOPE_REF_DEFAULTS)
            raise ValueError(f"no scope to choose in {', '.join(unknown)} (only {known})")
        return {**SCOPE_REF_DEFAULTS, **value}

    def scope_ref(self, endpoint: str) -> ScopeRef:
        """What `endpoint`'s rfidNumber carries."""
        return {**SCOPE_REF_DEFAULTS, **self.scope_refs}.get(endpoint, "domain")

    uncleaned_retry_window: Seconds = 1800.0
    uncleaned_retry_interval: Seconds = 60.0
