"""Partner sync URL templates: compiled once, rendered per request with ``${MACRO}`` values.

    ${CALLBACK_URL}         this DMP's callback URL for the partner (a whole URL, nested)
    ${DMP_UID}              the DMP's own ID for the browser
    ${GDPR}                 "0", "1" or empty
    ${GDPR_CONSENT_<id>}    the TCF consent string; <id> is the partner's GVL vendor ID
    ${US_PRIVACY}           the CCPA string
    ${GPP_STRING}           the GPP string
    ${GPP_SID}              the GPP section IDs, e.g. "2,6"

A template is an absolute ``http``/``https`` URL with a host and no user info or fragment;
macros may stand in the path or the query, not in the scheme or the host. Every value is
percent-encoded as one URI component wherever it stands (only RFC 3986 unreserved characters
and ``,`` stay literal), which is right for a path segment and for a query value alike. A
nested URL such as ``${CALLBACK_URL}`` is therefore encoded exactly once: the partner decodes
the parameter once and gets the callback URL back verbatim. Absent privacy values render
empty. Literal text is checked at compile time, so a rendered URL never holds a space, a
control or a non-ASCII character.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cookiematch.errors import InvalidURL, RedirectURLError
from cookiematch.protocol.privacy import NO_SIGNALS, PrivacySignals
from cookiematch.protocol.query import encode_component
from cookiematch.protocol.url import MAX_URL_LENGTH, parse_absolute_url

MAX_TEMPLATE_LENGTH = MAX_URL_LENGTH
MAX_RENDERED_LENGTH = 8192


class Macro(enum.Enum):
    CALLBACK_URL = "CALLBACK_URL"
    DMP_UID = "DMP_UID"
    GDPR = "GDPR"
    GDPR_CONSENT = "GDPR_CONSENT"
    US_PRIVACY = "US_PRIVACY"
    GPP_STRING = "GPP_STRING"
    GPP_SID = "GPP_SID"


class Position(enum.Enum):
    PATH = "path"
    QUERY = "query"


@dataclass(frozen=True, slots=True)
class Slot:
    """One macro in a compiled template."""

    macro: Macro
    position: Position
    vendor_id: int | None = None  # GDPR_CONSENT_<vendor id>


@dataclass(frozen=True, slots=True)
class MacroValues:
    """What a render fills in (raw, not yet encoded)."""

    callback_url: str
    dmp_uid: str
    privacy: PrivacySignals = NO_SIGNALS

    def raw(self, macro: Macro) -> str:
        privacy = self.privacy
        match macro:
            case Macro.CALLBACK_URL:
                return self.callback_url
            case Macro.DMP_UID:
                return self.dmp_uid
            case Macro.GDPR:
                return privacy.gdpr
            case Macro.GDPR_CONSENT:
                return privacy.gdpr_consent
            case Macro.US_PRIVACY:
                return privacy.us_privacy
            case Macro.GPP_STRING:
                return privacy.gpp
            case Macro.GPP_SID:
                return privacy.gpp_sid


_MACRO = re.compile(r"\$\{([A-Za-z0-9_]*)\}")
_CONSENT_MACRO = re.compile(r"GDPR_CONSENT_([0-9]{1,6})")

_Part = str | Slot


def _slot(name: str, position: Position) -> Slot:
    consent = _CONSENT_MACRO.fullmatch(name)
    if consent is not None:
        return Slot(Macro.GDPR_CONSENT, position, int(consent.group(1)))
    if name == "GDPR_CONSENT":
        raise RedirectURLError("${GDPR_CONSENT} needs the vendor ID: ${GDPR_CONSENT_<id>}")
    try:
        macro = Macro(name)
    except ValueError:
        raise RedirectURLError(f"unknown macro ${{{name}}}") from None
    return Slot(macro, position)


def _literal(text: str) -> str:
    if "{" in text or "}" in text:
        raise RedirectURLError(f"malformed macro in {text!r} (expected ${{NAME}})")
    return text


@dataclass(frozen=True, slots=True)
class SyncTemplate:
    """A compiled sync URL: literal parts and macro slots. Build with :meth:`compile`."""

    url: str
    parts: tuple[_Part, ...]

    @classmethod
    def compile(cls, url: str) -> SyncTemplate:
        """Validate and split ``url``; raises RedirectURLError saying what is wrong."""
        if not isinstance(url, str):
            raise RedirectURLError("a sync URL must be a string")
        parts: list[_Part] = []
        position, cursor = Position.PATH, 0
        for match in _MACRO.finditer(url):
            text = url[cursor : match.start()]
            if "?" in text:
                position = Position.QUERY
            parts.append(_literal(text))
            parts.append(_slot(match.group(1), position))
            cursor = match.end()
        parts.append(_literal(url[cursor:]))
        try:
            parse_absolute_url(url, macros=_MACRO)
        except InvalidURL as exc:
            raise RedirectURLError(f"sync URL {exc.reason}") from None
        return cls(url, tuple(part for part in parts if part != ""))

    @property
    def slots(self) -> tuple[Slot, ...]:
        return tuple(part for part in self.parts if isinstance(part, Slot))

    @property
    def macros(self) -> frozenset[Macro]:
        return frozenset(slot.macro for slot in self.slots)

    @property
    def vendor_ids(self) -> frozenset[int]:
        """The GVL vendor IDs named by ``${GDPR_CONSENT_<id>}`` macros."""
        return frozenset(slot.vendor_id for slot in self.slots if slot.vendor_id is not None)

    def render(self, values: MacroValues) -> str:
        """The URL with every macro replaced by its value, encoded once."""
        cache: dict[Macro, str] = {}
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            encoded = cache.get(part.macro)
            if encoded is None:
                encoded = cache[part.macro] = encode_component(values.raw(part.macro))
            out.append(encoded)
        return "".join(out)

    def test_render(self, samples: Mapping[str, MacroValues]) -> None:
        """Render with each sample; raise RedirectURLError naming the sample that fails."""
        for name, values in samples.items():
            rendered = self.render(values)
            if len(rendered) > MAX_RENDERED_LENGTH:
                raise RedirectURLError(
                    f"rendered with {name} values the URL is longer than "
                    f"{MAX_RENDERED_LENGTH} characters"
                )
            if not (rendered.isascii() and rendered.isprintable()) or " " in rendered:
                raise RedirectURLError(f"rendered with {name} values the URL is not clean")
