"""Named `sign` schemes: the seed says "计算方式见备注" and has no note, so the scheme is config."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated

from pydantic import AfterValidator

from agent.crypto.digest import hexdigest

Signer = Callable[[str, str, str, Mapping[str, str]], str]
"""(accessKey, accessSecret, timestamp, every other form field but sign) -> sign."""

DEFAULT_SCHEME = "md5_key_secret_timestamp"


def _md5(text: str) -> str:
    return hexdigest("md5", text)


def md5_key_secret_timestamp(key: str, secret: str, timestamp: str, _: Mapping[str, str]) -> str:
    """Default: lowercase hex MD5 of accessKey + accessSecret + timestamp (UTF-8, no separator)."""
    return _md5(key + secret + timestamp)


def md5_key_timestamp_secret(key: str, secret: str, timestamp: str, _: Mapping[str, str]) -> str:
    """Lowercase hex MD5 of accessKey + timestamp + accessSecret."""
    return _md5(key + timestamp + secret)


def md5_sorted_params(key: str, secret: str, timestamp: str, params: Mapping[str, str]) -> str:
    """Lowercase hex MD5 of `k=v&…` over the non-empty fields sorted by name, + `&key=<secret>`."""
    pairs = {**params, "accessKey": key, "timestamp": timestamp}
    pairs.pop("accessSecret", None)
    text = "&".join(f"{k}={v}" for k, v in sorted(pairs.items()) if v != "")
    return _md5(f"{text}&key={secret}")


SCHEMES: dict[str, Signer] = {
    "md5_key_secret_timestamp": md5_key_secret_timestamp,
    "md5_key_timestamp_secret": md5_key_timestamp_secret,
    "md5_sorted_params": md5_sorted_params,
}


def _known_scheme(value: str) -> str:
    if value not in SCHEMES:
        raise ValueError(f"must be one of: {', '.join(sorted(SCHEMES))}")
    return value


SchemeName = Annotated[str, AfterValidator(_known_scheme)]
"""A config value naming one of SCHEMES."""
