"""The agent's one exception tree."""

from __future__ import annotations


class AgentError(Exception):
    """Root of every error the agent raises on purpose."""


class InputError(AgentError):
    """Input that cannot be used; `reason` is a short bounded code, `detail` says more."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ConfigError(AgentError):
    """The configuration is invalid; `problems` holds one `FILE: key.path: reason` line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class JournalError(AgentError):
    """The local journal (SQLite) cannot be opened, migrated or written."""


class JournalCorruptError(JournalError):
    """The journal fails SQLite's integrity check: the agent refuses to start on it."""


class UnstorableEventError(JournalError):
    """An event the journal cannot store as it is: a value JSON cannot hold, a time out of range."""


class JournalClosedError(JournalError):
    """A write was submitted after the journal stopped accepting work."""


class StateDirLockedError(AgentError):
    """Another agent process already owns the state directory."""


class CryptoError(AgentError):
    """A key, IV or ciphertext that cannot be used; names the `setting`, never its value."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting = setting
        self.reason = reason
