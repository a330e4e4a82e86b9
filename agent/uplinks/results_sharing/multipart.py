"""A multipart/form-data body from mapped fields and one file (pure)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping


def encode_multipart(
    fields: Mapping[str, object], file_part: str, file_name: str, data: bytes
) -> tuple[bytes, str]:
    """(body, content type): each field a part (objects and arrays as JSON), then the file."""
    boundary = f"edge-agent-{secrets.token_hex(12)}"
    out = bytearray()
    for name, value in fields.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += f"{text}\r\n".encode()
    if file_name:
        out += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{file_part}";'
            f' filename="{file_name}"\r\nContent-Type: application/pdf\r\n\r\n'
        ).encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"
