"""The delivery report of one export."""

from __future__ import annotations

import msgspec


class DeliveryReport(msgspec.Struct, kw_only=True):
    """Counts of destination IDs. ``sent`` = ``accepted`` + ``rejected`` + ``failed``.

    - ``unmatched``: members with no ID for the destination's partner (not sent)
    - ``no_consent``: members whose stored GDPR consent does not allow the destination's
      vendor (not sent; removed where they had been)
    - ``rejected``: refused by the destination (per ID, or a whole batch answered 4xx)
    - ``failed``: in batches that never got a final answer (retried next export)
    - ``erased``: removes of erased browsers' IDs (the removal list), within ``removed``
      or ``rejected``
    """

    segment: str
    destination: str
    mode: str
    started_at: float
    members: int = 0
    sent: int = 0
    added: int = 0
    removed: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    unmatched: int = 0
    no_consent: int = 0
    unchanged: int = 0
    batches: int = 0
    retries: int = 0
    erased: int = 0
    seconds: float = 0.0
    errors: list[str] = msgspec.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0
