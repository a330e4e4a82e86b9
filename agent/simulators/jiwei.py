"""The 基卫 apply-form service of seed 003 §3.1, as the city platform's simulator serves it:
`param` (a JSON field) AES/ECB/PKCS5-encrypted, the answer encrypted and Base64-wrapped at 76
columns as Java's BASE64Encoder does (so clients must accept line breaks)."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any

from aiohttp import web

from agent.crypto.aes import decrypt_text, encrypt_text
from agent.errors import CryptoError
from agent.uplinks.remote_imaging.jiwei import QUERY_FIELDS

Forms = Callable[[], list[dict[str, str]]]


def add_jiwei_route(app: web.Application, path: str, key: str, forms: Forms) -> None:
    """POST `path`: the forms matching every business field given."""
    app.router.add_post(path, partial(_apply_forms, key, forms))


async def _apply_forms(key: str, forms: Forms, request: web.Request) -> web.Response:
    try:
        body = await request.json()
        query = json.loads(decrypt_text(str(body["param"]), key, mode="ECB", source="param"))
    except (ValueError, KeyError, TypeError, CryptoError):
        return _answer(key, {"errorCode": "98", "errorMsg": "参数解密失败", "success": "false"})
    if not isinstance(query, dict) or set(query) - set(QUERY_FIELDS):
        return _answer(key, {"errorCode": "98", "errorMsg": "参数不规范", "success": "false"})
    found = [f for f in forms() if all(f.get(k) == str(v) for k, v in query.items())]
    return _answer(key, {"content": found, "success": "true"})


def _answer(key: str, body: dict[str, Any]) -> web.Response:
    text = encrypt_text(json.dumps(body, ensure_ascii=False), key, mode="ECB", output="mime")
    return web.Response(text=text, content_type="text/plain")
