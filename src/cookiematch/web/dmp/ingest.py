"""The partners' batch API: ``POST /api/v1/partners/<partner>/records`` (docs/dmp-data.md).

    Authorization: Bearer <the partner's ingest_token>
    Idempotency-Key: <any 1-255 printable ASCII characters>     (optional)
    Content-Type: application/json      [record, ...] or {"records": [record, ...]}
                  application/x-ndjson  one record per line

Answer 200 ``{"records", "accepted", "pending", "rejected", "expired_events",
"rejects": [{"index", "reason"}]}``: a bad record is refused alone, the batch goes on. Errors
are ``application/problem+json``: 401 (token), 403 (no token configured for the partner), 404
(unknown partner), 400 (body is not JSON), 413 (over ``max_batch_bytes`` or
``max_batch_records``), 422 (an Idempotency-Key reused with another body), 503 (store down).
A replayed Idempotency-Key answers the first answer again (``Idempotent-Replayed: true``)
without applying anything. Written under the store's configured durability before answering.
The outcomes are counted in the worker's funnel by the ingestor (``GET /admin/v1/funnel``,
``/metrics``).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from typing import Generic, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cookiematch.config.dmp import DmpConfig, DmpIngestConfig
from cookiematch.config.values import Secret
from cookiematch.dmp.ingest import Ingestor
from cookiematch.dmp.ingest.idempotency import IdempotencyKeys, Remembered, body_digest
from cookiematch.dmp.ingest.readers import Batch, Payload
from cookiematch.protocol.json_errors import JSON_ERRORS, describe
from cookiematch.storage.base import Store
from cookiematch.web.admin import problem, read_body

PREFIX = "/api/v1"
PATH = f"{PREFIX}/partners/{{partner}}/records"
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
LINES_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines")
REPLAYED = "Idempotent-Replayed"

T = TypeVar("T")


class Envelope(msgspec.Struct, Generic[T], forbid_unknown_fields=True):
    """A batch as an object: ``{"records": [record, ...]}``."""

    records: list[T]


class Reject(msgspec.Struct, frozen=True):
    """A refused record: its 0-based index in the batch and why."""

    index: int
    reason: str


class BatchAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """What a batch did: its records counted by outcome, and each refused one."""

    records: int
    accepted: int
    pending: int
    rejected: int
    expired_events: int
    rejects: list[Reject]


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


_body_decoder = msgspec.json.Decoder(list[msgspec.Raw] | Envelope[msgspec.Raw])


def _split(body: bytes, content_type: str) -> list[tuple[int, Payload]]:
    """The body's records, each still raw JSON, by 0-based index."""
    if content_type.split(";")[0].strip().lower() in LINES_TYPES:
        lines = [line for line in body.split(b"\n") if line.strip()]
        return list(enumerate(lines))
    try:
        decoded = _body_decoder.decode(body)
    except JSON_ERRORS as exc:
        detail = f"the body is not a JSON array of records: {describe(exc)}"
        raise _Refused(problem(400, detail)) from None
    raws = decoded.records if isinstance(decoded, Envelope) else decoded
    return [(i, bytes(raw)) for i, raw in enumerate(raws)]


class IngestApi:
    def __init__(
        self,
        ingestor: Ingestor,
        tokens: Mapping[str, Secret | None],
        limits: DmpIngestConfig,
        idempotency: IdempotencyKeys,
    ) -> None:
        self.ingestor = ingestor
        self.tokens = tokens  # replaced whole when the admin API changes the partners
        self._limits = limits
        self._idempotency = idempotency

    def routes(self) -> list[Route]:
        return [Route(PATH, self.records, methods=["POST"])]

    async def records(self, request: Request) -> Response:
        partner: str = request.path_params["partner"]
        try:
            self._authorize(partner, request)
            body = await read_body(request, self._limits.max_batch_bytes)
            key = request.headers.get("idempotency-key")
            if key is not None and IDEMPOTENCY_KEY.fullmatch(key) is None:
                raise _Refused(problem(400, "Idempotency-Key: 1-255 printable ASCII characters"))
            digest = body_digest(body)
            if key is not None:
                seen = await self._idempotency.get(partner, key)
                if seen is not None:
                    return self._replay(seen, digest)
            lines = _split(body, request.headers.get("content-type", "application/json"))
            if len(lines) > self._limits.max_batch_records:
                limit = self._limits.max_batch_records
                raise _Refused(problem(413, f"a batch holds at most {limit} records"))
        except _Refused as refused:
            return refused.response
        report = await self.ingestor.batch(partner, Batch("request", lines), keep_rejects=True)
        answer = msgspec.json.encode(
            BatchAnswer(
                records=report.records,
                accepted=report.accepted,
                pending=report.pending,
                rejected=report.rejected,
                expired_events=report.expired_events,
                rejects=[Reject(r.line, r.reason) for r in report.rejects],
            )
        )
        if key is not None:
            await self._idempotency.put(partner, key, Remembered(digest, answer))
        return Response(answer, media_type="application/json")

    def _authorize(self, partner: str, request: Request) -> None:
        if partner not in self.tokens:
            raise _Refused(problem(404, f"no partner {partner!r}"))
        token = self.tokens[partner]
        if token is None:
            raise _Refused(problem(403, f"ingestion over HTTP is not enabled for {partner!r}"))
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        expected = token.reveal().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            presented.strip().encode(), expected
        ):
            detail = "a valid 'Authorization: Bearer <ingest token>' header is required"
            raise _Refused(problem(401, detail, headers={"WWW-Authenticate": "Bearer"}))

    def _replay(self, seen: Remembered, digest: str) -> Response:
        if not hmac.compare_digest(seen.body_digest, digest):
            detail = "this Idempotency-Key was used with another body"
            return problem(422, detail)
        headers = {REPLAYED: "true"}
        return Response(seen.answer, headers=headers, media_type="application/json")


def build_ingest_api(store: Store, dmp: DmpConfig, ingestor: Ingestor) -> IngestApi:
    ttl = dmp.ingest.idempotency_ttl_hours * 3600.0
    tokens = {p.id: p.ingest_token for p in dmp.partners}
    return IngestApi(ingestor, tokens, dmp.ingest, IdempotencyKeys(store, ttl))
