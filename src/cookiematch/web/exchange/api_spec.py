"""The exchange's admin API contract: the answers' types (the handlers build their answers
with them) and the registry of its operations, from which ``web/openapi.py`` writes the
OpenAPI document."""

from __future__ import annotations

from typing import Any

import msgspec

from cookiematch.exchange.enforcement import EnforcementOverride
from cookiematch.exchange.list_changes import Change
from cookiematch.exchange.model import Action, Buyer, Credential, ListId, Scopes, UserList
from cookiematch.exchange.monitoring import Count
from cookiematch.exchange.user_list_bulk import MembersRequest, MemberStatus
from cookiematch.formats import Nid
from cookiematch.privacy.subjects import ErasureReport, SubjectReport
from cookiematch.web.admin import PREFIX
from cookiematch.web.openapi import COMMON, NO_BODY, Operation, links, path_types

__all__ = [
    "OPERATIONS",
    "BulkAnswer",
    "BuyerStatsAnswer",
    "CredentialAnswer",
    "EnforcementAnswer",
    "NewCredential",
    "RedirectURL",
    "RedirectURLBody",
    "UserListStats",
]

CREDENTIAL = (
    "a buyer's API credential (POST /admin/v1/buyers/{nid}/credentials): only the "
    "operations of its scopes, on its own buyer and user lists"
)


class Buyers(msgspec.Struct, frozen=True):
    buyers: list[Buyer]


class UserLists(msgspec.Struct, frozen=True):
    user_lists: list[UserList]


class RedirectURLBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The body of ``PUT /admin/v1/buyers/{nid}/redirect_url``."""

    redirect_url: str


class RedirectURL(msgspec.Struct, frozen=True):
    nid: str
    redirect_url: str


class UserListStats(msgspec.Struct, frozen=True, kw_only=True):
    """A list's members as last counted (null before a count) and its changes over the last
    ``window_days`` days."""

    id: int
    owner: str
    members: int | None
    measured_at: float | None
    window_days: int
    added: int
    removed: int
    expired: int


class MemberResult(msgspec.Struct, frozen=True):
    gid: str
    status: str


class BulkAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """What ``POST /admin/v1/user_lists/{id}/members`` did, gid by gid, with counts."""

    user_list: int
    added: int
    removed: int
    expired: int
    invalid: int
    results: list[MemberResult]


class EnforcementAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """A buyer's active enforcement actions, since when, why, and the match-tag limit."""

    actions: list[Action]
    since: float | None
    reasons: list[str]
    override: bool
    max_match_tags_per_second: float | None


BuyerStatsAnswer: Any = msgspec.defstruct(
    "BuyerStats",
    [
        ("nid", str),
        ("window_seconds", int),
        *((count.value, int) for count in Count),
        ("pixel_match_response_rate", float | None),
        ("hosted_match_rate", float | None),
        ("bid_requests_per_second", float),
        ("max_qps", float | None),
        ("enforcement", EnforcementAnswer),
    ],
    frozen=True,
    kw_only=True,
)
"""A buyer's counts over the monitoring window (one field per ``Count``) and enforcement."""


class BuyersStats(msgspec.Struct, frozen=True):
    buyers: list[BuyerStatsAnswer]


class NewCredential(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The body of ``POST /admin/v1/buyers/{nid}/credentials``: the new credential's scopes."""

    scopes: Scopes = ("user_lists",)


class CredentialAnswer(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A credential as people see it; ``token`` only in the answer that creates it."""

    id: str
    nid: str
    token_sha256: str
    scopes: Scopes
    created_at: float | None
    token: str | None = None

    @classmethod
    def of(cls, credential: Credential, token: str | None = None) -> CredentialAnswer:
        return cls(
            id=credential.id,
            nid=credential.nid,
            token_sha256=credential.token_sha256,
            scopes=credential.scopes,
            created_at=credential.created_at,
            token=token,
        )


class Credentials(msgspec.Struct, frozen=True):
    credentials: list[CredentialAnswer]


assert {c.value for c in Change} == {"added", "removed", "expired"}  # UserListStats' keys
assert {s.value for s in MemberStatus} == {"added", "removed", "expired", "invalid"}

BUYER = f"{PREFIX}/buyers/{{nid}}"
LIST = f"{PREFIX}/user_lists/{{list_id}}"
CREDENTIALS = f"{BUYER}/credentials"
SUBJECT = f"{PREFIX}/subjects/{{subject}}"
USER_LISTS_SCOPE = "user_lists"
REDIRECT_URL_SCOPE = "redirect_url"


OPERATIONS: tuple[Operation, ...] = path_types(
    {"nid": Nid, "list_id": ListId},
    *COMMON,
    Operation(
        "GET",
        f"{PREFIX}/buyers",
        "Every buyer",
        {200: Buyers},
        links=links(
            200,
            {"nid": "$response.body#/buyers/0/nid"},
            f"GET {BUYER}",
            f"DELETE {BUYER}",
            f"GET {BUYER}/redirect_url",
            f"GET {BUYER}/stats",
            f"GET {BUYER}/enforcement",
            f"PUT {BUYER}/enforcement",
            f"GET {CREDENTIALS}",
            f"POST {CREDENTIALS}",
        ),
    ),
    Operation("GET", BUYER, "One buyer", {200: Buyer}, problems=(404,)),
    Operation(
        "PUT",
        BUYER,
        "Create or replace a buyer",
        {200: Buyer, 201: Buyer},
        body=Buyer,
        problems=(404,),
        description="The keys of an [[exchange.buyers]] entry; nid may be left out (the "
        "path's). An optout_webhook_secret sent back as the mask keeps the stored one.",
    ),
    Operation(
        "DELETE",
        BUYER,
        "Delete a buyer, revoking its credentials",
        {204: NO_BODY},
        problems=(404,),
    ),
    Operation(
        "GET",
        f"{BUYER}/redirect_url",
        "A buyer's redirect URL",
        {200: RedirectURL},
        problems=(404,),
        scope=REDIRECT_URL_SCOPE,
    ),
    Operation(
        "PUT",
        f"{BUYER}/redirect_url",
        "Replace a buyer's redirect URL",
        {200: RedirectURL},
        body=RedirectURLBody,
        problems=(404,),
        scope=REDIRECT_URL_SCOPE,
    ),
    Operation(
        "GET",
        f"{PREFIX}/user_lists",
        "The user lists (a credential: its own)",
        {200: UserLists},
        scope=USER_LISTS_SCOPE,
        links=links(
            200,
            {"list_id": "$response.body#/user_lists/0/id"},
            f"GET {LIST}",
            f"DELETE {LIST}",
            f"POST {LIST}/members",
            f"GET {LIST}/stats",
        ),
    ),
    Operation(
        "GET", LIST, "One user list", {200: UserList}, problems=(404,), scope=USER_LISTS_SCOPE
    ),
    Operation(
        "PUT",
        LIST,
        "Create or replace a user list",
        {200: UserList, 201: UserList},
        body=UserList,
        problems=(409,),
        scope=USER_LISTS_SCOPE,
        description="The keys of an [[exchange.user_lists]] entry; id may be left out (the "
        "path's), owner too with a credential. An ID never changes owner (409), and a buyer "
        "holds at most max_user_lists_per_buyer IDs (409).",
    ),
    Operation(
        "DELETE",
        LIST,
        "Delete a user list",
        {204: NO_BODY},
        problems=(404, 409),
        scope=USER_LISTS_SCOPE,
    ),
    Operation(
        "POST",
        f"{LIST}/members",
        "Add and remove browsers by gid, in bulk",
        {200: BulkAnswer},
        body=MembersRequest,
        problems=(404,),
        scope=USER_LISTS_SCOPE,
    ),
    Operation(
        "GET",
        f"{LIST}/stats",
        "A user list's size and changes",
        {200: UserListStats},
        problems=(404,),
        scope=USER_LISTS_SCOPE,
    ),
    Operation("GET", f"{PREFIX}/stats", "Every buyer's monitoring", {200: BuyersStats}),
    Operation(
        "GET", f"{BUYER}/stats", "A buyer's monitoring", {200: BuyerStatsAnswer}, problems=(404,)
    ),
    Operation(
        "GET",
        f"{BUYER}/enforcement",
        "A buyer's enforcement",
        {200: EnforcementAnswer},
        problems=(404,),
    ),
    Operation(
        "PUT",
        f"{BUYER}/enforcement",
        "Override a buyer's enforcement actions",
        {200: EnforcementAnswer},
        body=EnforcementOverride,
        problems=(404,),
    ),
    Operation(
        "DELETE",
        f"{BUYER}/enforcement",
        "Return a buyer's enforcement to the rules",
        {200: EnforcementAnswer},
        problems=(404,),
    ),
    Operation(
        "GET",
        CREDENTIALS,
        "A buyer's credentials (no tokens)",
        {200: Credentials},
        problems=(404,),
    ),
    Operation(
        "POST",
        CREDENTIALS,
        "Create a credential: its token is in this answer only",
        {201: CredentialAnswer},
        body=NewCredential,
        problems=(404,),
        links=links(
            201,
            {"nid": "$request.path.nid", "credential_id": "$response.body#/id"},
            f"DELETE {CREDENTIALS}/{{credential_id}}",
        ),
    ),
    Operation(
        "DELETE",
        f"{CREDENTIALS}/{{credential_id}}",
        "Revoke a credential",
        {204: NO_BODY},
        problems=(404,),
    ),
    Operation(
        "GET",
        SUBJECT,
        "Everything stored about a browser (GDPR art. 15)",
        {200: SubjectReport},
        problems=(400,),
    ),
    Operation(
        "DELETE",
        SUBJECT,
        "Erase a browser (GDPR art. 17)",
        {200: ErasureReport},
        problems=(400,),
    ),
)
