"""parse_buyer / parse_user_list (shared with the admin API): every bad field is reported."""

from __future__ import annotations

import msgspec
import pytest

from cookiematch.config import parse_buyer, parse_user_list
from cookiematch.errors import ValidationFailed
from cookiematch.exchange import codec
from cookiematch.exchange.model import UserList

URL = "http://ad.network.com/pixel?id="


def fields(exc: pytest.ExceptionInfo[ValidationFailed]) -> dict[str, str]:
    return {e["field"]: e["message"] for e in exc.value.errors}


def test_parse_buyer() -> None:
    buyer = parse_buyer({"redirect_url": URL, "hosted_match": True}, nid="ad_network_xyz")
    assert buyer.nid == "ad_network_xyz"
    assert buyer.redirect_url.url == URL
    assert buyer.hosted_match is True
    assert msgspec.json.decode(codec.encode(buyer)) == {
        "nid": "ad_network_xyz",
        "redirect_url": URL,
        "hosted_match": True,
        "hosted_match_writes_per_second": None,
        "bidder_url": None,
        "push_url": None,
        "pixel_matching": False,
        "require_hosted_match": False,
        "require_user_lists": [],
        "max_qps": None,
        "max_match_tags_per_second": None,
        "enforcement": None,
        "gvl_vendor_id": None,
        "optout_webhook_url": None,
        "optout_webhook_secret": None,
        "key_version": None,
    }
    same = parse_buyer({"nid": "ad_network_xyz", "redirect_url": URL}, nid="ad_network_xyz")
    assert same.nid == "ad_network_xyz"
    assert parse_buyer({"nid": "x", "redirect_url": URL}).nid == "x"
    rated = parse_buyer({"nid": "x", "redirect_url": URL, "hosted_match_writes_per_second": 5})
    assert rated.hosted_match_writes_per_second == 5.0


def test_parse_buyer_reports_every_bad_field() -> None:
    body = {
        "nid": "other",
        "redirect_url": "http://a.example/?%%GOOGLE_NOPE%%",
        "hosted_match": "yes",
        "hosted_match_writes_per_second": -1,
        "colour": "blue",
    }
    with pytest.raises(ValidationFailed) as caught:
        parse_buyer(body, nid="ad_network_xyz")
    assert set(fields(caught)) == {
        "nid",
        "redirect_url",
        "hosted_match",
        "hosted_match_writes_per_second",
        "colour",
    }
    assert "URL path" in fields(caught)["nid"]
    assert fields(caught)["colour"] == "unknown key"
    assert "macro" in fields(caught)["redirect_url"]


@pytest.mark.parametrize(
    ("body", "nid", "field"),
    [
        ({}, "x", "redirect_url"),
        ({"redirect_url": URL}, None, "nid"),
        ({"redirect_url": URL}, "bad nid", "nid"),
        ({"redirect_url": "ftp://a.example/"}, "x", "redirect_url"),
        ({"redirect_url": "http://a.example/" + "a" * 2100}, "x", "redirect_url"),
        ({"redirect_url": 5}, "x", "redirect_url"),
        (
            {"redirect_url": URL, "optout_webhook_url": "ftp://a.example/"},
            "x",
            "optout_webhook_url",
        ),
        (
            {"redirect_url": URL, "optout_webhook_url": "https://a.example/o"},
            "x",
            "optout_webhook_secret",
        ),
        ({"redirect_url": URL, "optout_webhook_secret": "s" * 16}, "x", "optout_webhook_url"),
        (
            {
                "redirect_url": URL,
                "optout_webhook_url": "https://a.example/o",
                "optout_webhook_secret": "too short",
            },
            "x",
            "optout_webhook_secret",
        ),
        (
            {
                "redirect_url": URL,
                "optout_webhook_url": "https://a.example/o",
                "optout_webhook_secret": 12345678901234567,
            },
            "x",
            "optout_webhook_secret",
        ),
        ([], "x", ""),
        (None, "x", ""),
    ],
)
def test_parse_buyer_errors(body: object, nid: str | None, field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_buyer(body, nid=nid)
    assert field in fields(caught)


def test_parse_user_list() -> None:
    parsed = parse_user_list({"owner": "a", "closed": True}, list_id=7, buyers={"a"})
    assert parsed == UserList(id=7, owner="a", closed=True, membership_days=30)
    assert parse_user_list({"id": 7, "owner": "z"}).owner == "z"  # no buyers: not checked


@pytest.mark.parametrize(
    ("body", "list_id", "field"),
    [
        ({"owner": "nobody"}, 7, "owner"),
        ({"id": 8, "owner": "a"}, 7, "id"),
        ({"owner": "a", "membership_days": 0}, 7, "membership_days"),
        ({"owner": "a", "membership_days": 541}, 7, "membership_days"),
        ({"owner": "a", "closed": 1}, 7, "closed"),
        ({"id": 0, "owner": "a"}, None, "id"),
        ({"id": True, "owner": "a"}, None, "id"),
        ({}, 7, "owner"),
    ],
)
def test_parse_user_list_errors(body: object, list_id: int | None, field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_user_list(body, list_id=list_id, buyers={"a"})
    assert field in fields(caught)
    assert caught.value.status == 422
