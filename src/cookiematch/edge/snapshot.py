"""The edge's snapshot (``edge.keys``): what the Lua answers match tags with, versioned.

One text file, tab-separated, text fields hex (lists of them joined by ``,``) so that nothing
needs quoting::

    # comment
    version  <v>
    limits   <max query bytes> <max extras bytes> <max cookie header bytes>
    cookie   <cookie name>
    privacy  <privacy parameters>
    operations <other operations>
    buyer    <nid> <cver> <enc key> <mac key> <http pieces x3> <https pieces x3>
    end      <v>

``v`` is a digest of the lines between (the same buyers give the same version, whichever
server worker writes them). The Lua reads the ``version`` line at most once a second and
reloads the file when it changed, and only a file whose ``end`` line repeats its version.
``write_snapshot`` replaces the file atomically (written beside it, fsynced, renamed): a
reader sees the old file or the new one, never a part. The file holds derived per-buyer keys
only, never a master secret, and is created 0600 and given to the owner of the file it
replaces (the nginx user ``edge render --user`` names; changing the owner needs root).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from cookiematch.edge.buyers import EdgeBuyer
from cookiematch.errors import ConfigError
from cookiematch.protocol.common_tag import OTHER_OPERATIONS
from cookiematch.protocol.cookies import MAX_COOKIE_HEADER_BYTES
from cookiematch.protocol.matchtag import MAX_EXTRAS_BYTES
from cookiematch.protocol.privacy import PRIVACY_PARAMS
from cookiematch.protocol.query import MAX_QUERY_BYTES

__all__ = ["snapshot_text", "snapshot_version", "text_version", "write_snapshot"]

_HEADER = "# cookiematch edge: derived per-buyer keys (no master secret); readable by nginx only"


def _hex(text: str) -> str:
    return text.encode().hex()


def _hex_list(texts: Sequence[str]) -> str:
    return ",".join(_hex(t) for t in texts)


def snapshot_text(cookie_name: str, buyers: Sequence[EdgeBuyer]) -> str:
    """The snapshot for ``buyers`` (in their order) and the exchange cookie ``cookie_name``."""
    body = [
        f"limits\t{MAX_QUERY_BYTES}\t{MAX_EXTRAS_BYTES}\t{MAX_COOKIE_HEADER_BYTES}",
        f"cookie\t{_hex(cookie_name)}",
        f"privacy\t{_hex_list(PRIVACY_PARAMS)}",
        f"operations\t{_hex_list(sorted(OTHER_OPERATIONS))}",
    ]
    for buyer in buyers:
        fields = ["buyer", _hex(buyer.nid), str(buyer.cver), buyer.enc_key.hex()]
        fields += [buyer.mac_key.hex()]
        fields += [_hex_list(p) for p in buyer.http]
        fields += [_hex_list(p) for p in buyer.https]
        body.append("\t".join(fields))
    version = hashlib.sha256("\n".join(body).encode()).hexdigest()[:16]
    return "\n".join([_HEADER, f"version\t{version}", *body, f"end\t{version}"]) + "\n"


def _version(lines: Iterable[str]) -> str | None:
    for line in lines:
        kind, _, value = line.rstrip("\n").partition("\t")
        if kind == "version":
            return value
        if not kind.startswith("#"):
            return None
    return None


def text_version(text: str) -> str:
    """The version of a snapshot ``snapshot_text`` wrote."""
    version = _version(text.split("\n", 2))
    assert version is not None
    return version


def snapshot_version(path: Path) -> str | None:
    """The version of the snapshot at ``path``; None when there is none (or no version)."""
    try:
        with path.open() as f:
            return _version(f)
    except FileNotFoundError:
        return None


def write_snapshot(path: Path, text: str, *, owner: tuple[int, int] | None = None) -> None:
    """Replace ``path`` with ``text``, atomically, mode 0600, owned by ``owner`` (uid, gid;
    by default the owner of the file replaced, when there is one)."""
    if owner is None:
        try:
            st = path.stat()
        except FileNotFoundError:
            pass
        else:
            owner = (st.st_uid, st.st_gid)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            if owner is not None and owner != (os.geteuid(), os.getegid()):
                try:
                    os.fchown(f.fileno(), *owner)
                except PermissionError as exc:
                    raise ConfigError(
                        f"cannot give {path} to uid {owner[0]} (nginx's user): run the server"
                        " as that user or as root"
                    ) from exc
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
