"""Request/Response values, header validation, routing and the error guard."""

from __future__ import annotations

import pytest

from cookiematch.protocol.pixel import TRANSPARENT_GIF
from cookiematch.web.http import Headers, Request, Response
from cookiematch.web.router import App


def make_request(path: str = "/p", headers: Headers | None = None) -> Request:
    return Request("GET", path, "a=1", headers or Headers(), "https", "10.0.0.1")


@pytest.mark.parametrize(
    "location",
    [
        "https://a.example/\r\nSet-Cookie: x=1",
        "https://a.example/\nx",
        "https://a.example/\rx",
        "https://a.example/\0",
        "https://a.example/\tx",
        "https://a.example/\x7f",
        "https://a.example/é",
    ],
)
def test_redirect_refuses_unsafe_location(location: str) -> None:
    with pytest.raises(ValueError):
        Response.redirect(location)


def test_set_cookie_values_are_checked() -> None:
    with pytest.raises(ValueError):
        Response.pixel(["a=1\r\nLocation: https://evil.example/"])


@pytest.mark.parametrize("name", ["", "X Y", "X:Y", "X\r\nY", "é"])
def test_header_names_must_be_tokens(name: str) -> None:
    with pytest.raises(ValueError):
        Response(200, ((name, "v"),))


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(ValueError):
        Response(302, (("Location", "x\r\ny"),))
    with pytest.raises(ValueError):
        Response(600)
    with pytest.raises(ValueError):
        Response(200).with_headers(("X-A", "b\nc"))


def test_constructors() -> None:
    r = Response.redirect("https://b.example/cm?x=1", ["a=1; Secure"])
    assert (r.status, r.body) == (302, b"")
    assert r.headers == (
        ("Location", "https://b.example/cm?x=1"),
        ("Cache-Control", "no-store"),
        ("Set-Cookie", "a=1; Secure"),
    )
    p = Response.pixel()
    assert (p.status, p.body, p.header("content-type")) == (200, TRANSPARENT_GIF, "image/gif")
    assert p.header("cache-control") == "no-store"
    assert Response.no_content().status == 204
    t = Response.text(400, "bad google_nid\n")
    assert t.body == b"bad google_nid\n"
    assert t.header("Content-Type") == "text/plain; charset=utf-8"
    j = Response.json(201, {"a": [1, 2]})
    assert (j.status, j.body, j.header("content-type")) == (201, b'{"a":[1,2]}', "application/json")
    h = Response.html(200, "<p>ok</p>")
    assert h.header("content-type") == "text/html; charset=utf-8"


def test_response_is_immutable() -> None:
    r = Response.no_content()
    with pytest.raises(AttributeError):
        r.status = 200  # type: ignore[misc]


def test_headers_first_value_and_all_values() -> None:
    h = Headers([("Cookie", "a=1"), ("X-A", "1"), ("cookie", "b=2")])
    assert h.get("COOKIE") == "a=1"
    assert h["x-a"] == "1"
    assert "X-A" in h and "x-b" not in h
    assert h.get_all("Cookie") == ["a=1", "b=2"]
    assert h.keys() == ["cookie", "x-a"]
    assert h.items() == [("cookie", "a=1"), ("x-a", "1"), ("cookie", "b=2")]
    assert Headers.from_asgi([(b"X-B", b"\xe9")]).get("x-b") == "é"


def test_request_helpers() -> None:
    req = make_request(headers=Headers([("Cookie", "a=1"), ("Cookie", "b=2"), ("X-T", "v")]))
    assert req.cookie_header == "a=1; b=2"
    assert req.header("x-t") == "v"
    assert req.header("missing") is None
    assert make_request().cookie_header == ""
    with pytest.raises(AttributeError):
        req.path = "/other"  # type: ignore[misc]


async def ok(request: Request) -> Response:
    return Response.no_content()


async def fails(request: Request) -> Response:
    raise KeyError("bug")


async def wrong_type(request: Request) -> Response:
    return "not a response"  # type: ignore[return-value]


def test_routes_and_methods() -> None:
    app = App()
    exact = app.route("/pixel", ok)
    short = app.route("/cb/", ok, prefix=True)
    longer = app.route("/cb/x/", ok, prefix=True, methods=("post",))
    assert exact.methods == {"GET", "HEAD"}
    assert longer.methods == {"POST"}
    assert app.match("/pixel") is exact
    assert app.match("/pixel/") is None
    assert app.match("/cb/y") is short
    assert app.match("/cb/x/1") is longer
    assert exact.not_allowed.status == 405
    assert exact.not_allowed.header("allow") == "GET, HEAD"
    with pytest.raises(ValueError):
        app.route("/pixel", ok)
    with pytest.raises(ValueError):
        app.route("nope", ok)


async def test_handler_errors_become_on_error() -> None:
    app = App()
    seen: list[str] = []
    app.on_handler_error = lambda route, exc: seen.append(f"{route.path}:{type(exc).__name__}")
    pixel = app.route("/pixel", fails)
    text = app.route("/text", wrong_type, on_error=Response.text(400, "bad request\n"))
    r = await app.call(pixel, make_request("/pixel"))
    assert (r.status, r.body) == (200, TRANSPARENT_GIF)
    r = await app.call(text, make_request("/text"))
    assert r.status == 400
    assert app.handler_errors == {"/pixel": 1, "/text": 1}
    assert seen == ["/pixel:KeyError", "/text:TypeError"]


async def test_shutdown_runs_every_hook_in_reverse() -> None:
    calls: list[str] = []

    async def first() -> None:
        calls.append("first")

    async def broken() -> None:
        calls.append("broken")
        raise OSError("disk")

    app = App(on_startup=[first], on_shutdown=[first, broken])
    await app.startup()
    with pytest.raises(OSError):
        await app.shutdown()
    assert calls == ["first", "broken", "first"]
