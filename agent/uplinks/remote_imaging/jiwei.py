"""Seed 003 §3.1: the 基卫 apply-form interface (AES/ECB/PKCS5, Base64), sans-I/O plus one call.

Request: `param` = AES(JSON {medicarecode, yyid00, businesstype, type}); answer: the AES of
`{"content": [forms], "success": "true"}` or `{"errorCode": "98", "errorMsg", "success":
"false"}`. The seed leaves the URL, where `param` goes and whether the answer is encrypted open:
each is configuration (JiweiSection)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import aiohttp
from pydantic import Field, HttpUrl, model_validator

from agent.config import Seconds, Secret, Section
from agent.crypto.aes import decrypt_text, encrypt_text, key_bytes
from agent.errors import AgentError, CryptoError

QUERY_FIELDS = ("medicarecode", "yyid00", "businesstype", "type")  # §3.1.3.1.1, all 可空 N
FORM_FIELDS = (  # §3.1.3.1.2
    "applycode", "fkey", "repcode", "medicarecode", "cliniccode", "patname", "gender",
    "birthday", "patage", "address", "tel", "idcard", "applydoccode", "applydocname",
    "applydepartmentcode", "applydepartment", "clincdiagnose", "checkprojectcode",
    "checkproject", "applydate", "checkdepartmentcode", "checkdepartment", "regstate",
    "exedate", "yyid00", "businesstype", "type",
)  # fmt: skip


class JiweiError(AgentError):
    """The 基卫 call failed: transport, decryption, or its own failure answer (errorCode)."""


class JiweiSection(Section):
    """[uplinks.<name>.jiwei]: the 基卫 apply-form lookup (seed 003 §3.1)."""

    enabled: bool = False
    url: HttpUrl | None = None  # the seed gives none: confirm at onboarding
    aes_key: Secret | None = None  # 16 characters (UTF-8), as the seed's Java insists
    param: Literal["json_field", "form_field", "raw_body"] = "json_field"  # where `param` goes
    param_name: str = "param"
    answer_encrypted: bool = True  # the seed: 入参及出参json字符串经过AES加密
    hospital_id: Annotated[str, Field(max_length=32)] = ""  # yyid00 when a query gives none
    timeout: Seconds = 10.0

    @model_validator(mode="after")
    def _complete(self) -> JiweiSection:
        if self.enabled and (self.url is None or self.aes_key is None):
            raise ValueError("url and aes_key are required when enabled")
        if self.aes_key is not None:
            try:
                key_bytes(self.aes_key.get_secret_value(), "aes_key")
            except CryptoError as err:
                raise ValueError(str(err)) from err
        return self


def query_of(given: Mapping[str, Any], section: JiweiSection) -> dict[str, str]:
    """The request's business fields: those given, as strings; yyid00 defaults from config."""
    query = {k: str(given[k]) for k in QUERY_FIELDS if given.get(k) not in (None, "")}
    if "yyid00" not in query and section.hospital_id:
        query["yyid00"] = section.hospital_id
    return query


def request_parts(query: Mapping[str, str], key: str, section: JiweiSection) -> dict[str, Any]:
    """aiohttp request keyword arguments carrying the encrypted `param`."""
    cipher = encrypt_text(json.dumps(dict(query), ensure_ascii=False), key, mode="ECB")
    if section.param == "raw_body":
        return {"data": cipher.encode(), "headers": {"Content-Type": "text/plain"}}
    if section.param == "form_field":
        return {"data": {section.param_name: cipher}}
    return {"json": {section.param_name: cipher}}


def parse_answer(text: str, key: str, encrypted: bool = True) -> list[dict[str, str]]:
    """The apply forms of an answer (Java MIME Base64 with line breaks accepted); JiweiError."""
    try:
        plain = decrypt_text(text.strip(), key, mode="ECB", source="answer") if encrypted else text
        body = json.loads(plain)
    except (CryptoError, ValueError) as err:
        raise JiweiError(f"基卫 answer unreadable: {err}") from err
    if not isinstance(body, dict):
        raise JiweiError("基卫 answer is not a JSON object")
    if str(body.get("success")).lower() != "true":
        code, message = body.get("errorCode", "?"), body.get("errorMsg", "")
        raise JiweiError(f"基卫 refused: errorCode {code}: {message}".rstrip(": "))
    content = body.get("content") or []
    if not isinstance(content, list):
        raise JiweiError("基卫 answer's content is not a list")
    return [
        {k: str(v) for k, v in form.items() if v is not None}
        for form in content
        if isinstance(form, dict) and form.get("applycode")
    ]


async def lookup(section: JiweiSection, given: Mapping[str, Any]) -> list[dict[str, str]]:
    """Ask 基卫 for the apply forms matching `given`; JiweiError when it cannot be had."""
    assert section.url is not None and section.aes_key is not None
    key = section.aes_key.get_secret_value()
    parts = request_parts(query_of(given, section), key, section)
    timeout = aiohttp.ClientTimeout(total=section.timeout)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(str(section.url), **parts) as resp,
        ):
            text = await resp.text(errors="replace")
            if resp.status != 200:
                raise JiweiError(f"基卫 answered HTTP {resp.status}")
    except (TimeoutError, aiohttp.ClientError, OSError) as err:
        raise JiweiError(f"基卫 unreachable: {type(err).__name__}") from err
    return parse_answer(text, key, section.answer_encrypted)
