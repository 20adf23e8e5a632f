"""The values the kit is made of: a request, the answer it got, a check, a case, a result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request as the kit sends it. ``follow_same_origin``: follow redirects that stay
    on the request's origin (an exchange's cookie self-redirect), sending back the cookies it
    set when ``return_cookies``; a redirect elsewhere is the answer. ``prime``: a URL fetched
    first, whose cookies the request then carries (a returning browser)."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    follow_same_origin: bool = False
    return_cookies: bool = True
    prime: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """What came back: ``error`` is set (and ``status`` is 0) when nothing usable did."""

    status: int
    headers: tuple[tuple[str, str], ...]  # names lower-cased, in order
    body: bytes
    seconds: float
    error: str | None = None

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]


Verdict = str | None
"""A check's verdict: None when the rule holds, else what is wrong and what to fix."""


@dataclass(frozen=True, slots=True)
class Check:
    """One rule: ``what`` it checks, in a few words, and the function that judges an answer."""

    what: str
    judge: Callable[[Answer], Verdict]


@dataclass(frozen=True, slots=True)
class Case:
    """One case: a name, the seed's words it checks, the request and the checks.
    ``required``: a failure fails the run (else it is reported as a warning).
    ``not_run``: why the case cannot be played black-box (reported, never a failure)."""

    name: str
    seed: str
    request: Request
    checks: tuple[Check, ...]
    required: bool = True
    not_run: str | None = None
    group: str = "match"


@dataclass(frozen=True, slots=True)
class Result:
    case: Case
    answer: Answer | None
    failures: tuple[str, ...] = field(default=())

    @property
    def status(self) -> str:
        """``pass``, ``fail`` (a required case failed), ``warn`` (an optional one) or
        ``not run``."""
        if self.answer is None:
            return "not run"
        if not self.failures:
            return "pass"
        return "fail" if self.case.required else "warn"
