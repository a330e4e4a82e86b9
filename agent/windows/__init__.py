"""Windows service: thin pywin32 glue (`service`) around plain logic tested on every platform.

Nothing here imports a win32 module at import time; `agent.windows.service.EdgeAgentService`
is built on first access, which only pythonservice.exe (or a test with fake modules) does.
"""

from __future__ import annotations

SERVICE_NAME = "EdgeAgent"
DISPLAY_NAME = "edge-agent: hospital front-end agent"
DESCRIPTION = (
    "Sends endoscope reprocessing and imaging data to regional supervision clouds, durably."
)
# What pythonservice.exe imports (registry key Services\EdgeAgent\PythonClass).
SERVICE_CLASS = "agent.windows.service.EdgeAgentService"
CONFIG_OPTION = "config"  # value name under Services\EdgeAgent\Parameters
