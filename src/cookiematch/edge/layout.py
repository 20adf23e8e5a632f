"""The files of an edge directory (``edge render --out``, ``[exchange] edge_dir``)."""

from __future__ import annotations

CONF_FILE = "nginx.conf"
LUA_MODULE = "cookiematch_edge.lua"
KEYS_FILE = "edge.keys"
"""The snapshot the Lua answers with (``edge/snapshot.py``)."""
LOGS_DIR = "logs"
MATCHES_LOG = "logs/matches.log"
"""One line per match tag the edge answered: ``<unix time> <nid> <cver> <gid>``."""
COLLECTOR_STATE = "logs/matches.offset"
"""Where the server's collector keeps its place in ``MATCHES_LOG`` (``edge/matches.py``)."""
COLLECTOR_LOCK = "logs/matches.lock"
"""Held by the one server worker that collects."""
