"""``[privacy]``: the privacy policy every role of the file asks (docs/privacy.md).

    [privacy]
    host_vendor_id = 755          # the operator's GVL vendor ID (checked for its own cookie)
    gdpr_default = true           # GDPR applies when a request does not say (EU traffic)
    honour_gpc = true             # Sec-GPC: 1 is an opt-out of sale and sharing
    store_id_purposes = [1]       # TCF purposes each operation needs
    sync_purposes = [1]
    personalise_purposes = [2, 3, 4]

Each party has its own GVL vendor ID where it is defined: ``gvl_vendor_id`` of a buyer
(``[[exchange.buyers]]``) and of a DMP partner (``[[dmp.partners]]``).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from cookiematch.config.fields import Table
from cookiematch.config.values import Problems
from cookiematch.formats import VendorId
from cookiematch.privacy.policy import Operation, PrivacySettings

Purposes = tuple[Annotated[int, msgspec.Meta(ge=1, le=24)], ...]


class PrivacyConfig(Table, frozen=True):
    """``[privacy]``; without the table, the defaults of :class:`PrivacySettings`."""

    host_vendor_id: VendorId | None = None
    gdpr_default: bool = False
    honour_gpc: bool = True
    store_id_purposes: Purposes = (1,)
    sync_purposes: Purposes = (1,)
    personalise_purposes: Purposes = (2, 3, 4)

    def problems(self) -> Problems:
        return [
            (f"{name}_purposes", "must name at least one purpose")
            for name, purposes in (
                ("store_id", self.store_id_purposes),
                ("sync", self.sync_purposes),
                ("personalise", self.personalise_purposes),
            )
            if not purposes
        ]

    def settings(self) -> PrivacySettings:
        return PrivacySettings(
            host_vendor_id=self.host_vendor_id,
            gdpr_default=self.gdpr_default,
            honour_gpc=self.honour_gpc,
            purposes={
                Operation.STORE_ID: frozenset(self.store_id_purposes),
                Operation.SYNC: frozenset(self.sync_purposes),
                Operation.PERSONALISE: frozenset(self.personalise_purposes),
            },
        )
