"""Logging in to a role's console over HTTP, as its login form does."""

from __future__ import annotations

import re

import httpx

from support.configs import ADMIN_TOKEN

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}
CSRF = re.compile(r'name=csrf value=["\']([^"\']+)["\']')


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a console page."""
    found = CSRF.search(html)
    assert found is not None, html
    return found.group(1)


def log_in(http: httpx.Client, token: str = ADMIN_TOKEN) -> httpx.Response:
    """The login form, then its POST with ``token``."""
    form = http.get("/console/login")
    assert form.status_code == 200
    return http.post(
        "/console/login", data={"csrf": csrf_of(form.text), "token": token}, headers=SAME_ORIGIN
    )
