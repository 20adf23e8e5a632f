"""Sends each case's request and judges the answer with its checks: one runner for every
kind of case."""

from __future__ import annotations

import time
from collections.abc import Iterable
from http.cookies import SimpleCookie
from urllib.parse import urljoin, urlsplit

import httpx

from cookiematch.conformance.case import Answer, Case, Request, Result

MAX_SELF_REDIRECTS = 5


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def cookie_pairs(set_cookies: Iterable[str]) -> dict[str, str]:
    """name -> value of Set-Cookie headers (attributes such as Secure are not enforced: the
    kit talks to test servers over plain HTTP too)."""
    pairs: dict[str, str] = {}
    for header in set_cookies:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(header)
        except Exception:
            continue
        pairs.update({name: morsel.value for name, morsel in jar.items()})
    return pairs


async def send(client: httpx.AsyncClient, request: Request) -> Answer:
    """The answer to ``request`` (after same-origin redirects when asked); transport errors
    and timeouts become an ``Answer`` with ``error`` set."""
    url, cookies = request.url, dict[str, str]()
    try:
        if request.prime is not None:
            client.cookies.clear()  # each case is its own browser: only the cookies it sends
            primed = await client.get(request.prime)
            cookies.update(cookie_pairs(primed.headers.get_list("set-cookie")))
        started = time.perf_counter()
        for _ in range(MAX_SELF_REDIRECTS + 1):
            sent = list(request.headers)
            if cookies:
                sent.append(("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items())))
            client.cookies.clear()  # nothing from an earlier answer rides along unasked
            response = await client.request(request.method, url, headers=sent, content=request.body)
            raw = response.headers.raw
            headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw)
            seconds = time.perf_counter() - started
            answer = Answer(response.status_code, headers, response.content, seconds)
            location = answer.header("location")
            if not (request.follow_same_origin and response.is_redirect and location):
                return answer
            target = urljoin(url, location)
            if _origin(target) != _origin(url):
                return answer
            if request.return_cookies:
                cookies.update(cookie_pairs(answer.all("set-cookie")))
            url = target
        return answer
    except httpx.TimeoutException:
        return Answer(0, (), b"", client.timeout.read or 0.0, "no answer before the timeout")
    except httpx.HTTPError as exc:
        return Answer(0, (), b"", 0.0, f"{type(exc).__name__}: {exc}")


async def run_case(client: httpx.AsyncClient, case: Case) -> Result:
    if case.not_run is not None:
        return Result(case, None)
    answer = await send(client, case.request)
    if answer.error is not None:
        return Result(case, answer, (f"{answer.error}: is the endpoint up at this URL?",))
    failures = tuple(v for v in (check.judge(answer) for check in case.checks) if v is not None)
    return Result(case, answer, failures)


async def run(cases: Iterable[Case], *, timeout_seconds: float = 10.0) -> list[Result]:
    """Every case in order, one at a time (the kit measures each answer's time)."""
    async with httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=False) as client:
        return [await run_case(client, case) for case in cases]
