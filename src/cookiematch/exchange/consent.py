"""The exchange's questions to the privacy policy, and what it does to a refused bid request.

``may_store_and_sync`` asks the match tag's two questions (``store_id``, then ``sync`` for the
buyer's vendor), ``store_and_sync_allowed`` their answer without counting it; ``truncate_ip``
coarsens the address a bid request carries for a buyer that may not personalise. Reading the
request's signals is ``privacy/request.py``'s.
"""

from __future__ import annotations

import ipaddress

from cookiematch.privacy.policy import Operation, PrivacyPolicy
from cookiematch.privacy.signals import ConsentSignals

__all__ = ["may_store_and_sync", "store_and_sync_allowed", "truncate_ip"]


_STORE_ID, _SYNC = Operation.STORE_ID, Operation.SYNC  # looked up once: the match tag's path


def may_store_and_sync(
    policy: PrivacyPolicy, signals: ConsentSignals, vendor_id: int | None
) -> bool:
    """``store_id``, then (when that allows it) ``sync`` for ``vendor_id``: whether both allow."""
    return policy.decide(_STORE_ID, signals).allowed and (
        policy.decide(_SYNC, signals, vendor_id).allowed
    )


def store_and_sync_allowed(
    policy: PrivacyPolicy, signals: ConsentSignals, vendor_id: int | None
) -> bool:
    """``may_store_and_sync``'s answer, not counted (asked ahead of the requests it judges)."""
    return policy.answer(_STORE_ID, signals).allowed and (
        policy.answer(_SYNC, signals, vendor_id).allowed
    )


def truncate_ip(ip: str | None) -> str | None:
    """An address with its host part zeroed: IPv4 to its /24, IPv6 to its /48 (an IPv4 address
    mapped into IPv6 as IPv4); None for anything that is not an IP address."""
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    return str(network.network_address)
