"""One buyer's cookie-match redirect, prepared: the Location of a gid in one join.

A match tag's common case (``protocol/common_tag.py``) is answered with the buyer's redirect
URL carrying ``google_gid`` and ``google_cver`` (appended or placed by macros) and the extras
(and, for a hosted match whose write failed, its ``google_hm`` status; for a hosted match
without a cookie match, no gid).
``GidRedirect`` derives, once per buyer, the pieces of that URL from
``RedirectTemplate.render`` itself (rendered with a marker in place of the gid, with and
without a stand-in extra), so the prepared pieces and the general renderer write the same
bytes; per request only the gid and the already-encoded extras are joined in. The template's
literals were checked when it was compiled, the extras are percent-encoded and the gid is
base64url: the Location is printable ASCII by construction.
"""

from __future__ import annotations

from collections.abc import Sequence

from cookiematch.errors import RedirectURLError
from cookiematch.protocol.query import QueryParam
from cookiematch.protocol.redirect import RedirectTemplate, ResponseParams

__all__ = ["GidRedirect"]

# Stand-ins for the gid and for the extras while the template is rendered: alphanumeric, so
# never percent-encoded, and found nowhere else in a rendering (checked).
_GID = "GidMarkQ7Zr2Kp9Wn4Vb8Tc1Yd6Hf"
_EXTRAS = "ExtrasMarkJ3Lm5Ns8Pq2Rt6Uv9Wx"


class _Shape:
    """The URL for one scheme, split at the gid: without extras (``bare``), and the parts
    before and after the extras."""

    __slots__ = ("after", "bare", "before")

    def __init__(self, bare: list[str], before: list[str], after: list[str]) -> None:
        self.bare = bare
        self.before = before
        self.after = after


class GidRedirect:
    """A buyer's redirect for a gid of key version ``cver``; use :meth:`prepare`."""

    __slots__ = ("_http", "_https")

    def __init__(self, http: _Shape, https: _Shape) -> None:
        self._http = http
        self._https = https

    @classmethod
    def prepare(
        cls,
        template: RedirectTemplate,
        cver: int,
        *,
        extras_first: bool,
        hosted_match: int | None = None,
        gid: bool = True,
    ) -> GidRedirect | None:
        """None when the template's rendering cannot be split around the gid (then the
        general renderer answers). ``hosted_match``: the redirect also carries that
        ``google_hm`` status (a hosted match write that failed). ``gid`` False: the redirect
        of a hosted match without a cookie match, no gid and no ``google_cver`` (the gid
        given to ``location`` is not used)."""
        if _GID in template.url or _EXTRAS in template.url:
            return None
        response = ResponseParams(
            gid=_GID if gid else None, cver=cver if gid else None, hosted_match=hosted_match
        )
        http = _shape(template, "http", response, extras_first)
        https = _shape(template, "https", response, extras_first)
        if http is None or https is None:
            return None
        return cls(http, https)

    def location(self, scheme: str, gid: str, extras: Sequence[str]) -> str | None:
        """The redirect URL for ``gid`` with the encoded ``extras``; None for a scheme that
        is neither ``http`` nor ``https``."""
        if scheme == "https":
            shape = self._https
        elif scheme == "http":
            shape = self._http
        else:
            return None
        if not extras:
            return gid.join(shape.bare)
        return gid.join(shape.before) + "&".join(extras) + gid.join(shape.after)

    def pieces(self, scheme: str) -> tuple[list[str], list[str], list[str]]:
        """The URL for ``scheme`` ("http" or "https") split at the gid: without extras, and
        the parts before and after the extras (what :meth:`location` joins; the edge's
        renderer writes them out so that nginx joins the same pieces)."""
        shape = self._https if scheme == "https" else self._http
        return list(shape.bare), list(shape.before), list(shape.after)


def _shape(
    template: RedirectTemplate, scheme: str, response: ResponseParams, extras_first: bool
) -> _Shape | None:
    try:
        bare = template.render(scheme, response, (), extras_first=extras_first)
        marked = template.render(
            scheme, response, (QueryParam(_EXTRAS, None),), extras_first=extras_first
        )
    except RedirectURLError:
        return None
    if marked.count(_EXTRAS) != 1:
        return None
    before, _, after = marked.partition(_EXTRAS)
    return _Shape(bare.split(_GID), before.split(_GID), after.split(_GID))
