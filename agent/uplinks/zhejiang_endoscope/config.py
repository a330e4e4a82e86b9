"""[uplinks.<name>] type = "zhejiang_endoscope": every key, with the defaults the docs state."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from agent.config import Seconds, Secret
from agent.uplinks.kit.config import TokenPlatformSection
from agent.uplinks.zhejiang_endoscope.fields import DEFAULT_TIME_FORMAT
from agent.uplinks.zhejiang_endoscope.sign import DEFAULT_SCHEME, SchemeName

TEST_BASE_URL = "http://test.zhihuiweijian.com/openapi"


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
    uncleaned_retry_window: Seconds = 1800.0
    uncleaned_retry_interval: Seconds = 60.0
