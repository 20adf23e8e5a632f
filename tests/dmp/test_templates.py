"""Sync URL templates against golden vectors: values encoded once, privacy macros filled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cookiematch.errors import RedirectURLError
from cookiematch.protocol.privacy import PrivacySignals
from cookiematch.protocol.templates import Macro, MacroValues, Position, SyncTemplate

GOLDEN = json.loads((Path(__file__).parent / "golden" / "sync_templates.json").read_text())


def _values(case: dict[str, Any]) -> MacroValues:
    return MacroValues(case["callback_url"], case["dmp_uid"], PrivacySignals(**case["privacy"]))


@pytest.mark.parametrize("case", GOLDEN["render"], ids=[c["name"] for c in GOLDEN["render"]])
def test_render_golden(case: dict[str, Any]) -> None:
    rendered = SyncTemplate.compile(case["template"]).render(_values(case))
    assert rendered == case["expected"]


@pytest.mark.parametrize("case", GOLDEN["invalid"], ids=[c["template"] for c in GOLDEN["invalid"]])
def test_invalid_templates(case: dict[str, str]) -> None:
    with pytest.raises(RedirectURLError, match=case["error"].replace("$", r"\$")):
        SyncTemplate.compile(case["template"])


def test_the_partner_decodes_the_callback_once_and_gets_it_verbatim() -> None:
    callback = "http://dmp.example/callback/a?c=shop&uid=$UID"
    template = SyncTemplate.compile("https://a.example/sync?x=1&redir=${CALLBACK_URL}&y=2")
    rendered = template.render(MacroValues(callback, "AAAAAAAAAAAAAAAAAAAAAA"))
    params = dict(parse_qsl(urlsplit(rendered).query))
    assert params == {"x": "1", "redir": callback, "y": "2"}
    assert "%25" not in rendered  # nothing encoded twice


def test_slots_know_their_position_and_vendor() -> None:
    template = SyncTemplate.compile("https://p.example/u/${DMP_UID}?c=${GDPR_CONSENT_755}")
    assert [(s.macro, s.position, s.vendor_id) for s in template.slots] == [
        (Macro.DMP_UID, Position.PATH, None),
        (Macro.GDPR_CONSENT, Position.QUERY, 755),
    ]
    assert template.vendor_ids == {755}
    assert template.macros == {Macro.DMP_UID, Macro.GDPR_CONSENT}


def test_a_template_without_macros_renders_as_written() -> None:
    url = "https://p.example/static.gif?a=1"
    assert SyncTemplate.compile(url).render(MacroValues("x", "y")) == url


def test_test_render_refuses_an_overlong_result() -> None:
    template = SyncTemplate.compile("https://p.example/s?a=${CALLBACK_URL}")
    with pytest.raises(RedirectURLError, match="huge"):
        template.test_render({"huge": MacroValues("é" * 3000, "u")})


@given(callback=st.text(min_size=1, max_size=200), uid=st.text(max_size=40))
def test_any_value_comes_back_after_one_decode(callback: str, uid: str) -> None:
    template = SyncTemplate.compile("https://p.example/s/${DMP_UID}?r=${CALLBACK_URL}")
    try:
        callback.encode("utf-8")
        uid.encode("utf-8")
    except UnicodeEncodeError:
        return  # lone surrogates are not text a request can carry
    rendered = template.render(MacroValues(callback, uid))
    assert rendered.isascii() and rendered.isprintable() and " " not in rendered
    path, _, query = rendered.partition("?")
    assert unquote(path.rpartition("/")[2]) == uid
    assert unquote(query.removeprefix("r=")) == callback
