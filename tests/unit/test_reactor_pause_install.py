"""The safe reactor pause comes with `use_wakeups`, not with the DICOM SCP (issue 21)."""

from __future__ import annotations

import subprocess
import sys

# A fresh interpreter: the patch is process-wide, and other tests install it.
SCU_ONLY = """
import sys
from pynetdicom import AE
from pynetdicom.association import Association
from agent.dicom_wakeups import use_wakeups
from agent.reactor_pause import ReactorCheckpoint

before = Association(AE(), "requestor")._reactor_checkpoint
use_wakeups()
after = Association(AE(), "requestor")._reactor_checkpoint
assert "drivers.dicom.scp" not in sys.modules, "the SCP was imported"
print(type(before).__name__, type(after).__name__, isinstance(after, ReactorCheckpoint))
"""


def test_an_scu_without_the_scp_gets_the_safe_reactor_pause():
    done = subprocess.run(
        [sys.executable, "-c", SCU_ONLY], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["Event", "ReactorCheckpoint", "True"]
