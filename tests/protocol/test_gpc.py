"""Sec-GPC: "1" is an opt-out of sale and sharing; anything else is no signal."""

from __future__ import annotations

import pytest

from cookiematch.protocol.gpc import gpc_opt_out


@pytest.mark.parametrize(
    ("header", "opted_out"),
    [
        ("1", True),
        (" 1\t", True),  # HTTP's optional whitespace around a value
        (None, False),  # no header: no preference stated
        ("", False),
        ("0", False),  # not a value the spec defines: no signal, not a consent
        ("true", False),
        ("1, 1", False),
        ("01", False),
    ],
)
def test_gpc_opt_out(header: str | None, opted_out: bool) -> None:
    assert gpc_opt_out(header) is opted_out
