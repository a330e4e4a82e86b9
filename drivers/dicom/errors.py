"""Errors of the capture conversion (sans-I/O parsers and the builder alike)."""

from __future__ import annotations

from agent.errors import InputError


class CaptureError(InputError):
    """A capture that cannot be converted; `reason` is a short bounded code, `detail` says more."""
