"""pyserial on Windows keeps the OS error only in its message: the errno is found again, so a
missing or busy COM port is said with its fix as on Linux."""

from __future__ import annotations

import errno

import pytest
import serial

from drivers.serial_thread import with_errno

# As pyserial's serialwin32.Serial.open words them (the repr of ctypes.WinError()).
MISSING = "could not open port 'COM7': FileNotFoundError(2, 'The system cannot find the file specified.', None, 2)"  # noqa: E501
BUSY = "could not open port 'COM7': PermissionError(13, 'Access is denied.', None, 5)"


@pytest.mark.parametrize(("message", "code"), [(MISSING, errno.ENOENT), (BUSY, errno.EACCES)])
def test_the_windows_open_error_gets_its_errno(message: str, code: int):
    found = with_errno(serial.SerialException(message))
    assert found.errno == code and str(found).endswith(message)


def test_an_error_with_an_errno_is_kept_and_others_pass_unchanged():
    posix = serial.SerialException(errno.ENOENT, "could not open port /dev/ttyUSB9: ...")
    assert with_errno(posix) is posix
    other = serial.SerialException("could not open port 'COM7': OSError(22, 'bad', None, 87)")
    assert with_errno(other) is other
