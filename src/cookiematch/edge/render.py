"""``cookiematch edge render``: the nginx configuration, the Lua module and the key file.

The output directory holds

- ``nginx.conf`` (from ``nginx.conf.in``): the Lua module loaded from Debian's
  ``libnginx-mod-http-lua``, a ``/pixel`` that may be a pure cookie match (a ``map`` on the
  method and the query's parameter names) tried in Lua first, everything else proxied to the
  server's listener (kept-alive connections) with ``X-Forwarded-For`` and
  ``X-Forwarded-Proto``;
- ``cookiematch_edge.lua``, copied from this package;
- ``edge.keys`` (mode 0600): one line per answered buyer with its derived per-buyer keys and
  its redirect split at the gid, and the constants the Lua reads a match tag with. Lines are
  tab-separated; text fields are hex (lists of them joined by ``,``), so nothing in the file
  needs quoting;
- ``logs/`` and ``tmp/`` for nginx (``nginx -p OUT -c OUT/nginx.conf -e OUT/logs/error.log``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from cookiematch.config.schema import Config, ExchangeConfig
from cookiematch.edge.buyers import EdgeBuyer, edge_buyers
from cookiematch.errors import ConfigError
from cookiematch.privacy.policy import PrivacyPolicy
from cookiematch.protocol.common_tag import OTHER_OPERATIONS
from cookiematch.protocol.cookies import MAX_COOKIE_HEADER_BYTES
from cookiematch.protocol.matchtag import MAX_EXTRAS_BYTES
from cookiematch.protocol.privacy import PRIVACY_PARAMS
from cookiematch.protocol.query import MAX_QUERY_BYTES

__all__ = ["LUA_MODULE", "Rendered", "render"]

LUA_MODULE = "cookiematch_edge.lua"
KEYS_FILE = "edge.keys"
CONF_FILE = "nginx.conf"


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
) -> Rendered:
    """Write the edge for ``config``'s exchange into ``out`` (created when missing)."""
    exchange = config.exchange
    if exchange is None:
        raise ConfigError("the edge fronts the exchange: the configuration has no [exchange]")
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("TLS at the edge needs both a certificate and its key")
    buyers, left = edge_buyers(exchange, PrivacyPolicy(config.privacy.settings()))
    out = out.resolve()
    for sub in ("logs", "tmp"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    keys = out / KEYS_FILE
    _write_private(keys, _keys_text(exchange, buyers))
    (out / LUA_MODULE).write_bytes(files(__package__).joinpath(LUA_MODULE).read_bytes())
    conf = out / CONF_FILE
    conf.write_text(
        _conf_text(exchange, out, listen=listen, workers=workers, cert=tls_cert, key=tls_key)
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
        ("@OTHER_NAMES@", "|".join(map(re.escape, sorted({*OTHER_OPERATIONS, *PRIVACY_PARAMS})))),
    ):
        text = text.replace(name, value)
    return text


def _hex(text: str) -> str:
    return text.encode().hex()


def _hex_list(texts: list[str] | tuple[str, ...]) -> str:
    return ",".join(_hex(t) for t in texts)


def _keys_text(exchange: ExchangeConfig, buyers: list[EdgeBuyer]) -> str:
    lines = [
        "# cookiematch edge: derived per-buyer keys (no master secret); readable by nginx only",
        f"limits\t{MAX_QUERY_BYTES}\t{MAX_EXTRAS_BYTES}\t{MAX_COOKIE_HEADER_BYTES}",
        f"cookie\t{_hex(exchange.cookie_name)}",
        f"privacy\t{_hex_list(PRIVACY_PARAMS)}",
        f"operations\t{_hex_list(sorted(OTHER_OPERATIONS))}",
    ]
    for buyer in buyers:
        fields = ["buyer", _hex(buyer.nid), buyer.enc_key.hex(), buyer.mac_key.hex()]
        fields += [_hex_list(p) for p in buyer.http]
        fields += [_hex_list(p) for p in buyer.https]
        lines.append("\t".join(fields))
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` created 0600 (never readable by others, even for a moment)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
