"""The buyer's win-notice URL (an OpenRTB 2.6 ``nurl``) and the signature that makes it its own.

    {base}/win?auction=<A>&bid=<B>&imp=<I>&t=<T>&price=${AUCTION_PRICE}&cur=${AUCTION_CURRENCY}
               &sig=<S>

    A, B, I  the bid request's id, the bid's id, the impression's id, as the buyer knew them
             when it bid, percent-encoded (UTF-8; unreserved characters and ``,`` literal)
    T        unix seconds when the bid was placed
    S        = base64url_nopad(HMAC-SHA256_K(utf8(field(A) field(B) field(I) field(T)))[:16])
             22 characters; field(x) = "<len(x)>:<x>," (a netstring, its length in characters)
    K        = HKDF-SHA256(secret, salt="cookiematch win notice", info=nid)

Only the price and its currency are left to the exchange's macros; everything else is written by
the buyer and signed, so a notice nobody was sent (another auction, another impression, a later
time) does not verify. The signature does not cover the price: the exchange sets it.
Verification compares in constant time. An id that cannot travel (longer than ``MAX_ID``
characters, or not encodable as UTF-8) gets no URL.
"""

from __future__ import annotations

import hmac
import math
import re
from collections.abc import Mapping

import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cookiematch.protocol.openrtb import CURRENCY
from cookiematch.protocol.query import encode_component, is_literal
from cookiematch.protocol.userid import HmacSha256, b64url_nopad

__all__ = [
    "HKDF_SALT",
    "MAX_ID",
    "MAX_PRICE",
    "SIG_LENGTH",
    "WIN_PATH",
    "WinNotice",
    "WinSigner",
    "parse_win",
    "win_url",
]

WIN_PATH = "/win"
MAX_ID = 128
MAX_PRICE = 1_000_000.0  # CPM, USD
HKDF_SALT = b"cookiematch win notice"
KEY_BYTES = 32
SIG_BYTES = 16
SIG_LENGTH = 22
_MACROS = "price=${AUCTION_PRICE}&cur=${AUCTION_CURRENCY}"
_SIG_SHAPE = re.compile(r"[A-Za-z0-9_-]{21}[AQgw]")  # 128 bits: the last character's low 4 bits 0
_TIME_SHAPE = re.compile(r"[0-9]{1,12}")


class WinNotice(msgspec.Struct, frozen=True):
    """One notice whose signature verifies: the bid that won, when it was placed (unix
    seconds), the price it cleared at (CPM, USD), and its signature (one per bid)."""

    auction: str
    bid: str
    imp: str
    issued: int
    price: float
    sig: str


class WinSigner:
    """Signs and verifies the ids of a win notice; the HMAC's pads are hashed once, reused."""

    __slots__ = ("_mac",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a win-notice key needs at least 16 bytes")
        self._mac = HmacSha256(key)

    def __repr__(self) -> str:  # never show the key
        return "WinSigner()"

    @classmethod
    def derive(cls, secret: bytes, nid: str) -> WinSigner:
        """The signer of buyer ``nid`` whose key is derived from ``secret`` (HKDF-SHA256)."""
        if not secret:
            raise ValueError("a win-notice secret must not be empty")
        hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=HKDF_SALT, info=nid.encode())
        return cls(hkdf.derive(secret))

    def sign(self, auction: str, bid: str, imp: str, issued: int) -> str:
        """``sig``: 22 characters of unpadded base64url. Raises UnicodeEncodeError for an id
        that is not encodable (a lone surrogate)."""
        time = str(issued)
        message = f"{len(auction)}:{auction},{len(bid)}:{bid},{len(imp)}:{imp},{len(time)}:{time},"
        return b64url_nopad(self._mac.digest(message.encode())[:SIG_BYTES])

    def verify(self, auction: str, bid: str, imp: str, issued: int, sig: str) -> bool:
        """Whether ``sig`` signs these ids, compared in constant time."""
        if _SIG_SHAPE.fullmatch(sig) is None:
            return False
        try:
            expected = self.sign(auction, bid, imp, issued)
        except UnicodeEncodeError:
            return False
        return hmac.compare_digest(sig, expected)


def win_url(
    base: str, signer: WinSigner, auction: str, bid: str, imp: str, issued: int
) -> str | None:
    """The ``nurl`` of one bid under ``base`` (no trailing ``/``), or None when an id cannot
    travel in it. Ids that need no percent-encoding (the usual case) are checked in one match
    and written as they are."""
    if not (0 < len(auction) <= MAX_ID and 0 < len(bid) <= MAX_ID and 0 < len(imp) <= MAX_ID):
        return None
    try:
        sig = signer.sign(auction, bid, imp, issued)  # what it encodes, the URL encodes
    except UnicodeEncodeError:
        return None
    if not is_literal(auction + bid + imp):
        auction, bid, imp = encode_component(auction), encode_component(bid), encode_component(imp)
    return f"{base}{WIN_PATH}?auction={auction}&bid={bid}&imp={imp}&t={issued}&{_MACROS}&sig={sig}"


def parse_win(params: Mapping[str, str | None], signer: WinSigner) -> WinNotice | None:
    """The notice in a ``/win`` query, or None when it is not one the buyer signed: the ids
    present and at most ``MAX_ID`` long, ``t`` a time, the signature theirs, the price a finite
    CPM above 0 and at most ``MAX_PRICE`` (an unsubstituted macro is not one), the currency USD
    when given. How old a notice may be is the caller's rule."""
    auction, bid, imp = params.get("auction"), params.get("bid"), params.get("imp")
    issued, sig = params.get("t"), params.get("sig")
    if not auction or not bid or not imp or max(len(auction), len(bid), len(imp)) > MAX_ID:
        return None
    if issued is None or _TIME_SHAPE.fullmatch(issued) is None or sig is None:
        return None
    if params.get("cur", CURRENCY) != CURRENCY:
        return None
    try:
        price = float(params.get("price") or "")
    except ValueError:
        return None
    if not math.isfinite(price) or not 0 < price <= MAX_PRICE:
        return None
    if not signer.verify(auction, bid, imp, int(issued), sig):
        return None
    return WinNotice(auction, bid, imp, int(issued), price, sig)
