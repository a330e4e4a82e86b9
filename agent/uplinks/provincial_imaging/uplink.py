"""The uplink: each HIS order (INSERT/UPDATE/DELETE) to the provincial platform's SynApplyInfo
over SOAP, its answer code mapped to an outcome (§3.4.1.1 响应码定义)."""

from __future__ import annotations

from typing import Any

from agent.dispatch.outcomes import Delivered, Outcome, Reject, Retry
from agent.journal.outbox import OutboxMessage
from agent.uplinks.kit.answers import TRANSIENT_STATUSES
from agent.uplinks.kit.request import Answer, Request
from agent.uplinks.kit.uplink import HttpPlatformUplink
from agent.uplinks.provincial_imaging import elements, soap
from agent.uplinks.provincial_imaging.config import ProvincialImagingConfig

APPLY_KIND = "apply.sync"  # one order action; order key `apply:<ApplyNo>`
RETRY_CODES = frozenset({"-1", "-2"})  # 写入/删除申请单出错: the platform's own failure
GONE_CODE = "-99"  # 该申请单不存在或已删除: a DELETE's goal already holds


class ProvincialImagingUplink(HttpPlatformUplink):
    """apply.sync messages as SynApplyInfo calls; no token (the License is in every request)."""

    def __init__(self, name: str, config: ProvincialImagingConfig) -> None:
        license_ = config.license.get_secret_value()
        super().__init__(name, config, hide=(license_,))
        self.config = config
        self._license = license_
        self._rules = config.rules()
        self._client = config.apply_client()

    async def healthcheck(self) -> bool:
        """True: the service has no call that sends no order."""
        return True

    async def send(self, message: OutboxMessage) -> Outcome:
        """One SynApplyInfo call; the answer's code decides (see the module's mapping)."""
        if message.kind != APPLY_KIND:
            return Reject(f"{message.kind}: not a message this uplink sends")
        order: dict[str, Any] = message.payload.get("order") or {}
        problems = elements.check(order, self._rules)
        if problems:  # checked when posted; the config may have changed since
            return Reject(f"SynApplyInfo not sent: {'; '.join(problems)}")
        text = elements.to_xml(order, self._rules, self.config.application, self._license)
        body, headers = self._client.request(text)
        url = str(self.config.service_url)

        async def prepare() -> Request:
            return Request("POST", url, headers, body)

        answer = await self._exchange(prepare)
        if isinstance(answer, Retry):
            return answer
        return self._judge(str(order.get("Action")), answer)

    def _judge(self, action: str, answer: Answer) -> Outcome:
        if answer.status in TRANSIENT_STATUSES or (
            answer.status >= 500 and "Fault" not in answer.text
        ):
            return Retry(f"HTTP {answer.status}", after=answer.retry_after, response=answer.text)
        try:
            returned = self._client.answer(answer.status, answer.text.encode(), "text/xml")
            code, desc = soap.read_result(returned)
        except soap.SoapError as err:
            if err.fault:  # the service failed (or the WSDL is not the platform's): wait for it
                return Retry(f"HTTP {answer.status}: {err}", response=answer.text)
            if answer.status >= 300:
                return Retry(f"HTTP {answer.status}", response=answer.text)
            reason = f"unexpected answer: HTTP {answer.status}: {err}"
            return Retry(reason, response=answer.text, unreadable=True)
        said = f"code {code}: {desc}"
        if code == "0":
            return Delivered(returned)
        if code in RETRY_CODES:
            return Retry(f"SynApplyInfo {said}", response=returned)
        if code == GONE_CODE and action == "DELETE":
            return Delivered(returned)
        return Reject(f"SynApplyInfo {action} refused: {said}", response=returned)


def build(name: str, config: Any) -> ProvincialImagingUplink:
    """The uplink of one [uplinks.<name>] section."""
    assert isinstance(config, ProvincialImagingConfig)
    return ProvincialImagingUplink(name, config)
