"""Which buyers the edge answers (``edge/buyers.py``), and with what: the pieces it joins are
the flat path's own (the same keys, the same redirect split at the gid)."""

from __future__ import annotations

from pathlib import Path

from cookiematch.config import ExchangeConfig, load_config
from cookiematch.edge.buyers import EdgeBuyer, edge_buyers
from cookiematch.exchange.model import ExchangeSettings
from cookiematch.privacy.policy import PrivacyPolicy
from cookiematch.protocol.gid_redirect import GidRedirect
from cookiematch.protocol.userid import UserIdCipher

from support.configs import write_exchange_config

BUYERS = """
[[exchange.buyers]]
nid = "plain"
redirect_url = "http://plain.example/cm?a=1"

[[exchange.buyers]]
nid = "rated"
redirect_url = "http://rated.example/"
max_match_tags_per_second = 100

[[exchange.buyers]]
nid = "throttled"
redirect_url = "http://throttled.example/"
[exchange.buyers.enforcement]
on_frequency_cap_violations = ["alert", "throttle"]

[[exchange.buyers]]
nid = "macros"
redirect_url = "https://m.example/%%GOOGLE_GID%%?v=%%GOOGLE_CVER%%"
"""


def of_config(
    exchange: ExchangeConfig, policy: PrivacyPolicy
) -> tuple[list[EdgeBuyer], dict[str, str]]:
    return edge_buyers(
        exchange.buyers,
        cipher=UserIdCipher(exchange.key_secrets()),
        policy=policy,
        extras_first=exchange.extras_first,
        enforcement=exchange.enforcement,
    )


def answered(tmp_path: Path, extra: str = "") -> tuple[list[str], dict[str, str]]:
    config = load_config(
        write_exchange_config(tmp_path, 9, buyers=BUYERS, user_lists="", extra_exchange=extra)
    )
    assert config.exchange is not None
    buyers, left = of_config(config.exchange, PrivacyPolicy(config.privacy.settings()))
    return [b.nid for b in buyers], left


def test_buyers_under_a_rate_or_a_possible_throttle_are_left_to_the_server(
    tmp_path: Path,
) -> None:
    nids, left = answered(tmp_path)
    assert nids == ["plain", "macros"]
    assert set(left) == {"rated", "throttled"}
    assert "rate" in left["rated"] and "throttle" in left["throttled"]


def test_a_policy_that_refuses_without_a_signal_leaves_every_buyer_to_the_server(
    tmp_path: Path,
) -> None:
    nids, left = answered(tmp_path, "[privacy]\ngdpr_default = true\n")
    assert nids == []
    assert "privacy policy" in left["plain"]


def test_the_pieces_are_the_flat_paths(tmp_path: Path) -> None:
    config = load_config(write_exchange_config(tmp_path, 9, buyers=BUYERS, user_lists=""))
    exchange = config.exchange
    assert exchange is not None
    buyers, _ = of_config(exchange, PrivacyPolicy())
    cipher = UserIdCipher(exchange.key_secrets())
    settings = ExchangeSettings()
    for buyer in buyers:
        assert buyer.enc_key == cipher.derive_key(1, "enc", buyer.nid)
        assert buyer.mac_key == cipher.derive_key(1, "mac", buyer.nid)
        assert buyer.enc_key.hex() not in repr(buyer)  # never shown
        entry = next(b for b in exchange.buyers if b.nid == buyer.nid)
        redirect = GidRedirect.prepare(entry.redirect_url, 1, extras_first=settings.extras_first)
        assert redirect is not None
        gid = cipher.encrypt(bytes(16), buyer.nid)
        for scheme, (bare, before, after) in (("http", buyer.http), ("https", buyer.https)):
            assert gid.join(bare) == redirect.location(scheme, gid, [])
            joined = gid.join(before) + "x=1&y" + gid.join(after)
            assert joined == redirect.location(scheme, gid, ["x=1", "y"])
