"""``cookiematch edge render``: the nginx configuration, the Lua module and the key file.

The output directory holds

- ``nginx.conf`` (from ``nginx.conf.in``): the Lua module loaded from Debian's
  ``libnginx-mod-http-lua``, a ``/pixel`` that may be a pure cookie match (a ``map`` on the
  method and the query's parameter names) tried in Lua first, everything else proxied to the
  server's listener (kept-alive connections) with ``X-Forwarded-For`` and
  ``X-Forwarded-Proto``;
- ``cookiematch_edge.lua``, copied from this package;
- ``edge.keys`` (mode 0600, ``edge/snapshot.py``): the snapshot of the answered buyers, with
  their derived per-buyer keys and their redirects split at the gid, and the constants the
  Lua reads a match tag with; the server rewrites it when its buyers change (``[exchange]
  edge_dir``);
- ``logs/`` and ``tmp/`` for nginx (``nginx -p OUT -c OUT/nginx.conf -e OUT/logs/error.log``);
  ``logs/matches.log`` has one line per match tag the edge answered (``edge/matches.py``).

``user`` (``--user``) is the account nginx's workers run as (nginx's ``user`` directive, for a
master started as root): the snapshot is given to it, since the workers re-read it.
"""

from __future__ import annotations

import pwd
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from cookiematch.config.schema import Config, ExchangeConfig
from cookiematch.edge.buyers import edge_buyers
from cookiematch.edge.layout import CONF_FILE, KEYS_FILE, LOGS_DIR, LUA_MODULE, MATCHES_LOG
from cookiematch.edge.snapshot import snapshot_text, write_snapshot
from cookiematch.errors import ConfigError
from cookiematch.privacy.policy import PrivacyPolicy
from cookiematch.protocol.common_tag import OTHER_OPERATIONS
from cookiematch.protocol.privacy import PRIVACY_PARAMS
from cookiematch.protocol.userid import UserIdCipher

__all__ = ["Rendered", "render"]


@dataclass(frozen=True, slots=True)
class Rendered:
    """What ``render`` wrote: the files, and the buyers left to the server with why."""

    conf: Path
    keys: Path
    answered: list[str]
    left: dict[str, str]


def render(
    config: Config,
    out: Path,
    *,
    listen: str,
    workers: str = "auto",
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    user: str | None = None,
) -> Rendered:
    """Write the edge for ``config``'s exchange into ``out`` (created when missing)."""
    exchange = config.exchange
    if exchange is None:
        raise ConfigError("the edge fronts the exchange: the configuration has no [exchange]")
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("TLS at the edge needs both a certificate and its key")
    owner = None
    if user is not None:
        try:
            account = pwd.getpwnam(user)
        except KeyError:
            raise ConfigError(f"--user {user!r}: no such user") from None
        owner = (account.pw_uid, account.pw_gid)
    buyers, left = edge_buyers(
        exchange.buyers,
        cipher=UserIdCipher(exchange.key_secrets()),
        policy=PrivacyPolicy(config.privacy.settings()),
        extras_first=exchange.extras_first,
        enforcement=exchange.enforcement,
    )
    out = out.resolve()
    for sub in (LOGS_DIR, "tmp"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    keys = out / KEYS_FILE
    write_snapshot(keys, snapshot_text(exchange.cookie_name, buyers), owner=owner)
    (out / LUA_MODULE).write_bytes(files(__package__).joinpath(LUA_MODULE).read_bytes())
    conf = out / CONF_FILE
    conf.write_text(
        _conf_text(
            exchange, out, listen=listen, workers=workers, cert=tls_cert, key=tls_key, user=user
        )
    )
    return Rendered(conf, keys, [b.nid for b in buyers], left)


def _upstream(exchange: ExchangeConfig) -> str:
    host, port = exchange.listen.host, exchange.listen.port
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _conf_text(
    exchange: ExchangeConfig,
    out: Path,
    *,
    listen: str,
    workers: str,
    cert: Path | None,
    key: Path | None,
    user: str | None,
) -> str:
    tls = ""
    if cert is not None and key is not None:
        tls = (
            f"        ssl_certificate {cert.resolve()};\n"
            f"        ssl_certificate_key {key.resolve()};\n"
        )
    text = files(__package__).joinpath("nginx.conf.in").read_text()
    for name, value in (
        ("@WORKERS@", workers),
        ("@OUT@", str(out)),
        ("@UPSTREAM@", _upstream(exchange)),
        ("@LISTEN@", listen),
        ("@SSL@", " ssl" if tls else ""),
        ("@TLS@", tls),
        ("@USER@", f"user {user};\n" if user is not None else ""),
        ("@MATCHES_LOG@", str(out / MATCHES_LOG)),
        ("@OTHER_NAMES@", "|".join(map(re.escape, sorted({*OTHER_OPERATIONS, *PRIVACY_PARAMS})))),
    ):
        text = text.replace(name, value)
    return text
