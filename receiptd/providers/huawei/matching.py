"""Pure matching of KooMessage send details to claimed sends: exact or nothing.

A Huawei send is registered as ``biz_id`` = the task id and ``phone_number`` = the cust_flag it
was sent with (``out_id``, when set, is the detail's ``msg_id``). A detail answers for a send
only when its task id and its cust_flag (its send_account when it has no cust_flag) equal the
send's, and, when the send knows its msg_id, that too. Details for the same key that disagree
(e.g. one message of a task still ``sending`` and another ``success``) settle nothing: the send
stays pending and is asked again later.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from receiptd import domain, ports

_STATUS = {
    "success": domain.SendStatus.DELIVERED,
    "fail": domain.SendStatus.FAILED,
    "sending": domain.SendStatus.PENDING,
}


@dataclass(frozen=True, slots=True)
class Detail:
    """One ``AIMSendDetail``, reduced to what matching needs."""

    msg_id: str
    task_id: str
    cust_flag: str
    send_account: str = ""
    send_status: str = "sending"
    result_code: str | None = None

    @property
    def recipient(self) -> str:
        """The value a send's ``phone_number`` must equal."""
        return self.cust_flag or self.send_account


def status_of(send_status: str) -> domain.SendStatus:
    """``success`` → delivered, ``fail`` → failed; ``sending`` (or anything new) → pending."""
    return _STATUS.get(send_status, domain.SendStatus.PENDING)


def index(details: Iterable[Detail]) -> dict[tuple[str, str], dict[str, Detail]]:
    """(task_id, recipient) → {msg_id: detail}; a detail seen twice (windows, pages) counts once."""
    found: dict[tuple[str, str], dict[str, Detail]] = {}
    for detail in details:
        found.setdefault((detail.task_id, detail.recipient), {})[detail.msg_id] = detail
    return found


def match(sends: Sequence[ports.PendingSend], details: Iterable[Detail]) -> list[ports.Settlement]:
    """A settlement (final or pending) for every send the details answer for exactly."""
    found = index(details)
    settlements: list[ports.Settlement] = []
    for send in sends:
        candidates = list(found.get((send.biz_id, send.phone_number), {}).values())
        if send.out_id:
            candidates = [d for d in candidates if d.msg_id == send.out_id]
        outcomes = {(d.send_status, d.result_code) for d in candidates}
        if len(outcomes) == 1:
            settlements.append(settlement(send, candidates[0]))
    return settlements


def settlement(send: ports.PendingSend, detail: Detail) -> ports.Settlement:
    status = status_of(detail.send_status)
    return ports.Settlement(
        send_id=send.id,
        status=status,
        settled_by=domain.SettledBy.QUERY,
        err_code=(detail.result_code or None) and detail.result_code[:64]
        if status is domain.SendStatus.FAILED
        else None,
    )
