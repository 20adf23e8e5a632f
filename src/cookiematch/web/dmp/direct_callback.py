"""``/callback/<partner>``'s common case straight from the RSGI scope (the route's ``direct``).

A partner's sync callback as browsers bring it: a known partner, a query of ``uid`` and
optionally ``c`` (the client), each once, plain characters only (nothing to percent-decode,
so no privacy parameter), no ``Sec-GPC`` header, and the DMP cookie holding a valid DMP ID,
for a policy that lets the DMP keep its cookie and sync this partner when a request says
nothing about privacy, and a partner ID that opens (not empty, not the unreplaced macro, not
forged or stale). It is read into locals and stored through the domain
(``DmpService.callback_common``: the policy's answers without a signal counted as the general
path counts its decisions, the same write, hooks and funnel counts), and answered with the
pixel built once. The match's one store call also reads the records that wait for the
partner ID (``MatchTable.record``'s ``read_after``).
Everything else returns None before anything is done and ``DmpRoutes.callback`` answers it;
both answer the same bytes, count the same and store the same
(tests/web/test_direct_callback.py).
"""

from __future__ import annotations

import re
from typing import Any

from cookiematch.dmp.model import CLIENT_PARAM, UID_PARAM, Partner
from cookiematch.dmp.service import DmpService
from cookiematch.formats import ID_PATTERN
from cookiematch.privacy.policy import Decision, Operation, Reason
from cookiematch.privacy.request import NO_PRIVACY
from cookiematch.protocol.cookies import CookieSpec, parse_browser_id, read_id_cookie
from cookiematch.protocol.gpc import GPC_HEADER
from cookiematch.protocol.query import MAX_QUERY_BYTES
from cookiematch.web.dmp.routes import STORED_PIXEL
from cookiematch.web.router import Answer, DirectHeaders, Pending

__all__ = ["DirectCallback", "read_callback_query"]

PREFIX = "/callback/"
_READY_KEPT = 4096  # partners whose readiness is remembered (a partner list replaced often)
_PARTNER_ID = re.compile(ID_PATTERN)
_VALUE = "([A-Za-z0-9._~-]*)"  # plain: nothing to percent-decode, no "=" or "&"
_UID, _CLIENT = f"{re.escape(UID_PARAM)}=", f"{re.escape(CLIENT_PARAM)}="
_QUERY = re.compile(  # uid=U, uid=U&c=C or c=C&uid=U
    f"{_UID}{_VALUE}(?:&{_CLIENT}{_VALUE})?|{_CLIENT}{_VALUE}&{_UID}{_VALUE}"
)


def read_callback_query(query: str) -> tuple[str, str | None] | None:
    """The uid and client of a query that is ``uid=U`` or ``uid=U&c=C`` (either order), all
    plain, else None (the general path's)."""
    if len(query) > MAX_QUERY_BYTES:
        return None
    read = _QUERY.fullmatch(query)
    if read is None:
        return None
    uid, client, client_first, uid_second = read.groups()
    return (uid, client) if uid is not None else (uid_second, client_first)


class DirectCallback:
    """``Route.direct`` for ``/callback/<partner>``."""

    def __init__(self, service: DmpService, cookie: CookieSpec) -> None:
        self._service = service
        self._name = cookie.name
        self._stored: Answer = (STORED_PIXEL.status, STORED_PIXEL.headers, STORED_PIXEL.body)
        # per partner (the object served: the admin API replaces them whole), the policy's
        # answers without a signal when they let the flat path take its callbacks, else None
        self._ready: dict[str, tuple[Partner, tuple[Decision, Decision] | None]] = {}

    def __call__(self, scope: Any) -> DirectHeaders | Pending | None:
        """A ``Pending`` of the whole answer, or None."""
        headers = scope.headers
        if GPC_HEADER in headers:
            return None
        service = self._service
        name = scope.path[len(PREFIX) :]
        partner = service.partners.get(name)
        if partner is None:
            return None
        held = self._ready.get(name)
        silent = held[1] if held is not None and held[0] is partner else self._judge(partner)
        if silent is None:
            return None
        read = read_callback_query(scope.query_string)
        if read is None:
            return None
        cookies = headers.get_all("cookie")
        if not cookies:
            return None
        value = read_id_cookie(cookies[0] if len(cookies) == 1 else "; ".join(cookies), self._name)
        if not isinstance(value, str) or parse_browser_id(value) is None:
            return None
        raw_uid, client = read
        if not raw_uid or raw_uid == partner.uid_macro:
            return None  # refused: the general path counts why
        uid = service.open_id(partner, raw_uid)
        if uid is None:
            return None  # malformed, forged or stale: likewise
        return self._answer(partner, value, uid, client, silent)

    def _judge(self, partner: Partner) -> tuple[Decision, Decision] | None:
        """The policy's answers for keeping the DMP cookie and syncing ``partner`` when a
        request says nothing about privacy, if the flat path may take its callbacks: a
        partner ID that is a valid ID, both answers allowed and neither ``CONSENTED``
        (refused without signals, or consented: the general path's); remembered."""
        policy, signals = self._service.policy, NO_PRIVACY.signals
        store_id = policy.answer(Operation.STORE_ID, signals)
        sync = policy.answer(Operation.SYNC, signals, partner.gvl_vendor_id)
        silent: tuple[Decision, Decision] | None = (store_id, sync)
        if (
            _PARTNER_ID.fullmatch(partner.id) is None
            or not (store_id.allowed and sync.allowed)
            or Reason.CONSENTED in (store_id.reason, sync.reason)
        ):
            silent = None
        if len(self._ready) >= _READY_KEPT:
            self._ready.clear()
        self._ready[partner.id] = (partner, silent)
        return silent

    async def _answer(
        self,
        partner: Partner,
        dmp_uid: str,
        uid: str,
        client: str | None,
        silent: tuple[Decision, Decision],
    ) -> Answer:
        await self._service.callback_common(partner, dmp_uid, uid, client, silent)
        return self._stored
