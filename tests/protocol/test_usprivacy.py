"""US Privacy strings: the spec's four examples and everything else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cookiematch.protocol.undecodable import Undecodable
from cookiematch.protocol.usprivacy import UsPrivacy, decode_us_privacy


@pytest.mark.parametrize(
    ("text", "expected", "applies", "sale_opted_out"),
    [
        ("1YNN", UsPrivacy(notice=True, opt_out_sale=False, lspa_covered=False), True, False),
        ("1NYN", UsPrivacy(notice=False, opt_out_sale=True, lspa_covered=False), True, True),
        ("1-Y-", UsPrivacy(notice=None, opt_out_sale=True, lspa_covered=None), True, True),
        ("1---", UsPrivacy(notice=None, opt_out_sale=None, lspa_covered=None), False, False),
        ("1YYY", UsPrivacy(notice=True, opt_out_sale=True, lspa_covered=True), True, True),
    ],
)
def test_spec_examples(text: str, expected: UsPrivacy, applies: bool, sale_opted_out: bool) -> None:
    decoded = decode_us_privacy(text)
    assert decoded == expected
    assert isinstance(decoded, UsPrivacy)
    assert decoded.version == 1
    assert decoded.applies is applies
    assert decoded.sale_opted_out is sale_opted_out


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "1YN",
        "1YNNN",
        "2YNN",  # only version 1 exists
        "1ynn",  # the spec's letters are upper case
        "1YXN",
        " 1YNN",
        "1Y-N",  # CCPA applies (a notice is given), so the opt-out cannot be unknown
        "1--Y",
    ],
)
def test_not_us_privacy_strings(text: str) -> None:
    result = decode_us_privacy(text)
    assert isinstance(result, Undecodable)
    assert result.reason


def test_every_decodable_string() -> None:
    strings = [f"1{a}{b}{c}" for a in "YN-" for b in "YN-" for c in "YN-"]
    decodable = [text for text in strings if isinstance(decode_us_privacy(text), UsPrivacy)]
    # every opt-out of Y or N, with any notice and LSPA, and "1---"
    assert len(decodable) == 2 * 9 + 1


@given(st.text(max_size=8))
def test_any_text_decodes_or_is_undecodable(text: str) -> None:
    assert isinstance(decode_us_privacy(text), UsPrivacy | Undecodable)
