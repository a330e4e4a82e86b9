"""Every alert the agent can raise reads in Chinese first on the dashboard."""

from __future__ import annotations

import re
from pathlib import Path

from agent.reprocessing.rules.catalogue import RULES
from agent.web.dashboard.alert_titles import RULE_TITLES, TITLES, title

AGENT = Path(__file__).parents[2] / "agent"
# Where a code is written: code="x" / code = "x" / X_ALERT = "x" / ALERT_CODE = "x" (and the
# other branch of a conditional on those lines), or alert("error", "x", ...) in quality.py.
CODE_LINE = re.compile(r"\bcode\s*=|_ALERT\s*=|ALERT_CODE\s*=")
QUOTED = re.compile(r'(?<!\[)"([a-z][a-z0-9_]+)"')  # not a key: group["code"]
QUALITY_CALL = re.compile(r'alert\(\s*"(?:critical|error|warning)",\s*"([a-z0-9_]+)"')


def raised_codes() -> set[str]:
    found: set[str] = set()
    for path in AGENT.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        found.update(QUALITY_CALL.findall(text))
        for line in text.splitlines():
            if CODE_LINE.search(line) and "def " not in line:
                found.update(QUOTED.findall(line))
    return found


def test_every_code_the_agent_raises_has_a_chinese_and_an_english_title():
    codes = raised_codes()
    assert len(codes) >= 15, sorted(codes)  # the scan still finds them
    assert sorted(code for code in codes if code not in TITLES) == []
    assert sorted(set(RULES) - set(RULE_TITLES)) == []


def test_a_rule_violation_reads_as_ws_507_first():
    assert title("ws507.contact_time") == ("WS 507 消毒/灭菌时间不足", "Contact time too short")
    assert title("something_new") == ("something_new", "something_new")
