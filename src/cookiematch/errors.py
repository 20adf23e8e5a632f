"""Every exception cookiematch raises on purpose, in one hierarchy.

CookiematchError
├── ConfigError            a configuration file or value is invalid (names file and key)
│   └── RuleError          a segment rule that does not validate (names the rule's key path)
├── ProtocolError          input on the wire that the protocol rejects
│   ├── QueryError         malformed query string: bad percent-encoding, not UTF-8, too long
│   ├── MatchTagError      a match tag that cannot be served at all (google_nid missing,
│   │                      duplicated or unknown): answered with a 400, never a redirect
│   ├── InvalidURL         a string that is not an acceptable http(s) URL (carries the reason)
│   ├── RedirectURLError   a buyer redirect URL that is not acceptable (scheme, fragment,
│   │                      length, unknown macro)
│   ├── HostedMatchError   a google_hm value that cannot be stored (carries its status)
│   ├── InvalidUserId      a google_gid that does not decrypt for that buyer and version
│   ├── InvalidPushToken   a google_push value that is forged, expired or for another buyer
│   ├── BidRequestError    a body that is not an OpenRTB bid request (answered 400)
│   ├── InvalidBidResponse a buyer's bid response that is not OpenRTB or bids on something
│   │                      the exchange did not offer (the buyer's answer counts as invalid)
│   ├── RecordError        an ingested partner record that is refused (goes to the rejects)
│   └── InvalidSubject     a browser or user identifier not in the role's format (access and
│                          erasure requests)
├── PullError              a partner's data endpoint failed or answered something unusable
├── StorageError           a store backend failed; backends wrap their own errors in it
│   └── StoreUnavailable   the backend cannot be reached at all
├── LeaseLost              a lease in the store lapsed or could not be renewed: its job stops
├── AddressInUse           a listen address another process already serves (serve refuses)
└── AdminError             an admin API request that is refused (rendered as problem+json)
    ├── NotFound
    ├── Forbidden          the request's credential does not allow it (403)
    ├── Conflict           the change would break another entity that refers to it (409)
    │   └── Busy           a job already running, here or in another worker
    ├── ValidationFailed
    ├── BodyTooLarge       a request body over its limit (413)
    └── TryLater           what the request needs is busy a while (503, with Retry-After)
"""

from __future__ import annotations

from http import HTTPStatus


class CookiematchError(Exception):
    """Base of every error cookiematch raises on purpose."""


class ConfigError(CookiematchError):
    """An invalid configuration; the message names the file and the key."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        where = ": ".join(part for part in (file, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class RuleError(ConfigError):
    """A segment rule that does not validate: ``path`` names the key, ``reason`` says why."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(reason, key=path)


class ProtocolError(CookiematchError):
    """Input on the wire that the protocol rejects."""


class QueryError(ProtocolError):
    """A malformed query string."""


class MatchTagError(ProtocolError):
    """A match tag that cannot be served at all (answered 400, no redirect)."""


class InvalidURL(ProtocolError):
    """Not an acceptable http(s) URL; ``reason`` says what is wrong ("must not have a fragment")."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"URL {reason}")


class RedirectURLError(ProtocolError):
    """A buyer redirect URL that cannot be used."""


class HostedMatchError(ProtocolError):
    """A google_hm value that cannot be stored; ``status`` is the redirect status code."""

    def __init__(self, message: str, status: int) -> None:
        self.status = status
        super().__init__(message)


class InvalidUserId(ProtocolError):
    """A google_gid that does not decrypt for the given buyer and version."""


class InvalidPushToken(ProtocolError):
    """A google_push value that is forged, expired or issued to another buyer."""


class BidRequestError(ProtocolError):
    """A bid request body that is not JSON or not shaped like an OpenRTB bid request."""


class InvalidBidResponse(ProtocolError):
    """A bid response that is not JSON, not OpenRTB, or bids on something we did not offer."""


class RecordError(ProtocolError):
    """An ingested partner record that is refused; the message is the reject reason."""


class InvalidSubject(ProtocolError):
    """A browser or user identifier that is not in the role's format."""


class PullError(CookiematchError):
    """A partner's data endpoint failed or answered something that is not a page of records."""


class StorageError(CookiematchError):
    """A store backend failed."""


class StoreUnavailable(StorageError):
    """A store backend cannot be reached."""


class LeaseLost(CookiematchError):
    """A lease in the store lapsed or could not be renewed; the job it guarded was stopped."""


class AddressInUse(CookiematchError):
    """A listen address that another process already serves: ``serve`` refuses to share it."""


class AdminError(CookiematchError):
    """An admin API request that is refused; rendered as application/problem+json."""

    status = 400
    title = "Bad Request"

    def __init__(self, detail: str, *, errors: list[dict[str, str]] | None = None) -> None:
        self.detail = detail
        self.errors = errors or []
        self.headers: dict[str, str] = {}
        super().__init__(detail)


class NotFound(AdminError):
    status = 404
    title = "Not Found"


class Forbidden(AdminError):
    status = 403
    title = "Forbidden"


class Conflict(AdminError):
    status = 409
    title = "Conflict"


class Busy(Conflict):
    """A job that is running already (here or in another worker)."""


class TryLater(AdminError):
    """What the request needs is busy (the analytics engine running a job): 503, with
    ``Retry-After: retry_after`` seconds."""

    status = 503
    title = HTTPStatus(503).phrase

    def __init__(self, detail: str, *, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.headers = {"Retry-After": str(retry_after)}


class ValidationFailed(AdminError):
    status = 422
    title = "Unprocessable Content"


class BodyTooLarge(AdminError):
    """A request body over its limit; nothing of it was used."""

    status = 413
    title = HTTPStatus(413).phrase

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is over {limit} bytes")
        self.limit = limit
