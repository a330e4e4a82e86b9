"""edge-agent: durable bridge from hospital devices to regional supervision and imaging clouds."""

from __future__ import annotations

__version__ = "0.1.0"
