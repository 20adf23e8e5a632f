"""Run an ``App`` under granian, RSGI (default) or ASGI, with one or more worker processes.

The app is named by an *app factory*: a zero-argument callable returning an ``App``, given as
``"package.module:function"`` (or the function itself, if it is importable by that name).
Each worker process imports and calls it, so every worker builds its own App (own store
connections, own encryptors); do I/O in ``App.on_startup`` hooks, not in the factory.

Configuration reaches the factory through the environment, which the workers inherit:

- ``COOKIEMATCH_CONFIG``: the config file path given to ``serve(config=...)``; read it with
  ``config_path()``.
- ``COOKIEMATCH_APP_FACTORY``: the factory path; set by ``serve``, read by ``rsgi_app`` and
  ``asgi_app`` (the granian targets). Internal.
- ``COOKIEMATCH_DRAIN_SECONDS``: the longest drain; set by ``serve``. Internal.
- ``COOKIEMATCH_METRICS_DIR``: a directory ``serve`` creates for the run and removes at the
  end, where each worker keeps its metric values for the others to add up
  (``web/slots.py`` ``workers_directory``). Internal.

Logging: every worker logs as ``cookiematch.logs`` says, granian's own loggers included, at
the level and in the format the command chose (inherited through the environment).

Connections (``web/connections.py``): HTTP/1 only (no TLS here, so browsers never speak
HTTP/2 to it), at most ``max_connections`` open per worker, and a connection that waits
``idle_timeout_ms`` for a request head (new, idle between requests, or half through a head) is
closed.

Shutdown: on SIGTERM each worker drains first (``web/drain.py``: answers close their
connections and ``/readyz`` answers 503 until no request came for a moment, at most
``drain_seconds``), then granian stops accepting, lets in-flight requests finish, and the
worker runs the App's ``on_shutdown`` hooks (RSGI: ``__rsgi_del__``; ASGI: lifespan) before
exiting; a worker still alive after ``kill_timeout`` seconds is killed. SIGINT skips the
drain.

Command line (used by the test suite; the product CLI calls ``serve``)::

    python -m cookiematch.web.server --factory pkg.mod:make_app --port 8080 [--interface asgi]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from cookiematch.errors import AddressInUse
from cookiematch.logs import log_config, settings_from_env
from cookiematch.web.asgi import ASGIAdapter
from cookiematch.web.connections import IDLE_TIMEOUT_MS, MAX_CONNECTIONS, connection_limit
from cookiematch.web.drain import DRAIN_LONGEST_SECONDS
from cookiematch.web.heap import settle_heap
from cookiematch.web.router import App
from cookiematch.web.rsgi import RSGIAdapter
from cookiematch.web.slots import workers_directory

__all__ = [
    "CONFIG_ENV",
    "DRAIN_ENV",
    "FACTORY_ENV",
    "AppFactory",
    "asgi_app",
    "check_app",
    "config_path",
    "load_app",
    "rsgi_app",
    "serve",
]

CONFIG_ENV = "COOKIEMATCH_CONFIG"
FACTORY_ENV = "COOKIEMATCH_APP_FACTORY"
DRAIN_ENV = "COOKIEMATCH_DRAIN_SECONDS"

AppFactory = Callable[[], App]
Interface = Literal["rsgi", "asgi"]


def config_path() -> str | None:
    """The config file path the server was started with, or None."""
    return os.environ.get(CONFIG_ENV) or None


def factory_path(factory: str | AppFactory) -> str:
    """``"module:qualname"`` for a factory, checked to be importable by that name."""
    if isinstance(factory, str):
        path = factory
    else:
        module, qualname = factory.__module__, factory.__qualname__
        if module == "__main__" or "<locals>" in qualname:
            raise ValueError(
                f"app factory {factory!r} is not importable by name; pass 'module:name'"
            )
        path = f"{module}:{qualname}"
    module, _, attr = path.partition(":")
    if not module or not attr:
        raise ValueError(f"app factory must look like 'package.module:function', not {path!r}")
    return path


def load_app(path: str) -> App:
    """Import ``"module:attr"`` and call it; the result must be an ``App``."""
    module_name, _, attr = factory_path(path).partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    app = obj()
    if not isinstance(app, App):
        raise TypeError(f"app factory {path} returned {type(app).__name__}, not App")
    return app


def ensure_address_free(host: str, port: int) -> None:
    """Raise ``AddressInUse`` if a process already listens on ``host:port``.

    granian's workers bind with ``SO_REUSEPORT``, so a second server on a taken port would
    start and silently take part of the traffic; a plain bind (which no listener on the port
    allows, whatever its options) tells first.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise AddressInUse(f"{host}:{port} is already in use ({exc.strerror})") from None


def check_app(app_factory: str | AppFactory, config: str | os.PathLike[str] | None) -> None:
    """Build the factory's App once over ``config``, as each worker will (its configuration
    read and checked, keys and templates compiled; the startup hooks, which open the store,
    are not run): what fails here would fail every worker."""
    previous = os.environ.get(CONFIG_ENV)
    if config is not None:
        os.environ[CONFIG_ENV] = str(Path(config).resolve())
    try:
        load_app(factory_path(app_factory))
    finally:
        if previous is None:
            os.environ.pop(CONFIG_ENV, None)
        else:
            os.environ[CONFIG_ENV] = previous


def _factory_from_env() -> str:
    try:
        return os.environ[FACTORY_ENV]
    except KeyError:
        raise RuntimeError(f"{FACTORY_ENV} is not set; start the server with serve()") from None


def _served_app() -> App:
    """The App named by ``COOKIEMATCH_APP_FACTORY``, marked ``served``, draining on SIGTERM
    once started, its heap settled after start-up (``web/heap.py``)."""
    app = load_app(_factory_from_env())
    app.served = True
    app.drain.longest = float(os.environ.get(DRAIN_ENV, DRAIN_LONGEST_SECONDS))
    app.on_startup.append(app.drain.listen)
    app.on_startup.append(settle_heap)  # last: what start-up built is frozen
    return app


def rsgi_app() -> RSGIAdapter:
    """granian RSGI target (factory): the App named by ``COOKIEMATCH_APP_FACTORY``."""
    return RSGIAdapter(_served_app())


def asgi_app() -> ASGIAdapter:
    """granian ASGI target (factory): the App named by ``COOKIEMATCH_APP_FACTORY``."""
    return ASGIAdapter(_served_app())


def serve(
    app_factory: str | AppFactory,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    interface: Interface = "rsgi",
    workers: int = 1,
    config: str | os.PathLike[str] | None = None,
    log_access: bool = False,
    backlog: int = 1024,
    kill_timeout: int = 30,
    check: bool = True,
    idle_timeout_ms: int = IDLE_TIMEOUT_MS,
    max_connections: int = MAX_CONNECTIONS,
    drain_seconds: float = DRAIN_LONGEST_SECONDS,
) -> None:
    """Serve the factory's App until SIGTERM/SIGINT; blocks. ``AddressInUse`` if another
    process already listens on ``host:port``. ``max_connections`` is per worker, lowered to
    what the open-files limit allows (``web/connections.py``).

    ``check`` builds the App once in this process first, so a bad factory or config fails
    here with a clear traceback instead of in every worker.
    """
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server import Server

    if interface not in ("rsgi", "asgi"):
        raise ValueError(f"interface must be 'rsgi' or 'asgi', not {interface!r}")
    if not 0 <= drain_seconds < kill_timeout:
        raise ValueError("drain_seconds must be at least 0 and below kill_timeout")
    level, log_format = settings_from_env()  # the command's choice (``cookiematch.logs``)
    ensure_address_free(host, port)
    if check:
        check_app(app_factory, config)
    os.environ[FACTORY_ENV] = factory_path(app_factory)
    if config is not None:
        os.environ[CONFIG_ENV] = str(Path(config).resolve())
    os.environ[DRAIN_ENV] = str(drain_seconds)
    server = Server(
        f"cookiematch.web.server:{interface}_app",
        address=host,
        port=port,
        interface=Interfaces.RSGI if interface == "rsgi" else Interfaces.ASGI,
        workers=workers,
        # uvloop, not granian's "auto" (which takes rloop when it is importable: slower here)
        loop=Loops.uvloop if importlib.util.find_spec("uvloop") else Loops.asyncio,
        factory=True,
        websockets=False,
        backlog=backlog,
        backpressure=connection_limit(max_connections),
        http=HTTPModes.http1,
        http1_settings=HTTP1Settings(header_read_timeout=idle_timeout_ms),
        log_access=log_access,
        log_level=LogLevels(level),
        log_dictconfig=log_config(level, log_format),
        workers_kill_timeout=kill_timeout,
    )
    with workers_directory():
        server.serve()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cookiematch.web.server")
    parser.add_argument("--factory", required=True, help="package.module:function returning App")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--interface", choices=("rsgi", "asgi"), default="rsgi")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--config", default=None)
    parser.add_argument("--log-access", action="store_true")
    parser.add_argument("--idle-timeout-ms", type=int, default=IDLE_TIMEOUT_MS)
    parser.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS)
    parser.add_argument("--drain-seconds", type=float, default=DRAIN_LONGEST_SECONDS)
    args = parser.parse_args(argv)
    serve(
        args.factory,
        args.host,
        args.port,
        interface=args.interface,
        workers=args.workers,
        config=args.config,
        log_access=args.log_access,
        idle_timeout_ms=args.idle_timeout_ms,
        max_connections=args.max_connections,
        drain_seconds=args.drain_seconds,
    )


if __name__ == "__main__":
    main()
