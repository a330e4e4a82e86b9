"""An agent whose config names no DICOM plugin never loads the DICOM stack (issue 21: idle RSS)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DICOM_STACK = ("pydicom", "pynetdicom", "PIL", "numpy", "pylibjpeg")

# A fresh interpreter: other tests have imported everything in this one.
LOAD = """
import sys
from pathlib import Path
import agent.cli, agent.runtime
from agent.config import load_config
from agent.plugins import PLUGIN_KINDS, SOURCES, UPLINKS

config = load_config(Path(sys.argv[1]), PLUGIN_KINDS)
print(*sorted(config.uplinks), sep=",")
print(*sorted(m for m in {stack} if m in sys.modules), sep=",")
UPLINKS["remote_imaging"], SOURCES["dicom_scp"]  # looked up: now they are loaded
print(*sorted(m for m in {stack} if m in sys.modules), sep=",")
"""


def test_the_demo_config_loads_without_the_dicom_stack_until_a_dicom_type_is_looked_up():
    code = LOAD.format(stack=DICOM_STACK)
    done = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "config" / "demo.toml")],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    uplinks, before, after = done.stdout.splitlines()
    assert uplinks  # the demo's uplinks were validated
    assert before == ""
    assert set(after.split(",")) == set(DICOM_STACK)


def test_every_plugin_type_still_resolves():
    from agent.plugins import PLUGIN_KINDS

    for registry in PLUGIN_KINDS.values():
        for name, plugin in registry.items():
            assert plugin.model.model_fields["type"] is not None, name
